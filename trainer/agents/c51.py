"""C51 (categorical DQN) with a categorical Q-network of dense layers, as in TF-Agents' C51 example."""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.networks import categorical_q_network
from tf_agents.specs import tensor_spec

from trainer.agents import q_learning
from trainer.agents.checks import check_action_kind, check_layers, check_positive
from trainer.errors import ConfigError


@gin.configurable
def create_c51_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    conv_layer_params: Sequence[tuple[int, int, int]] = (),
    fc_layer_params: Sequence[int] = (100,),
    observation_scale: float | None = None,
    num_atoms: int = 51,
    min_q_value: float = -20.0,
    max_q_value: float = 20.0,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    rmsprop_rho: float = 0.9,
    rmsprop_momentum: float = 0.0,
    rmsprop_epsilon: float = 1e-7,
    rmsprop_centered: bool = False,
    loss: str = "squared",
    epsilon_greedy: float = 0.1,
    epsilon_final: float | None = None,
    epsilon_decay_steps: int = 0,
    n_step_update: int = 2,
    gamma: float = 0.99,
    target_update_tau: float = 0.05,
    target_update_period: int = 5,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """C51: `num_atoms` returns between min and max_q_value per action; other knobs: DQN's."""
  builder = "create_c51_agent"
  conv = q_learning.check_conv_layers(builder, conv_layer_params)
  layers = check_layers("create_c51_agent.fc_layer_params", fc_layer_params)
  check_positive("create_c51_agent.n_step_update", n_step_update, int)
  check_positive("create_c51_agent.target_update_period", target_update_period, int)
  _check_support(num_atoms, min_q_value, max_q_value)
  action_tensor_spec = check_action_kind("create_c51_agent", action_spec, discrete=True)
  time_step_tensor_spec = tensor_spec.from_spec(time_step_spec)
  scale = q_learning.observation_scale(builder, time_step_tensor_spec.observation,
                                       observation_scale)
  return categorical_dqn_agent.CategoricalDqnAgent(
      time_step_tensor_spec,
      action_tensor_spec,
      categorical_q_network=categorical_q_network.CategoricalQNetwork(
          time_step_tensor_spec.observation, action_tensor_spec, num_atoms=num_atoms,
          preprocessing_layers=None if scale is None else q_learning.ScaleObservation(scale),
          conv_layer_params=conv or None, fc_layer_params=layers),
      min_q_value=min_q_value,
      max_q_value=max_q_value,
      n_step_update=n_step_update,
      target_update_tau=target_update_tau,
      target_update_period=target_update_period,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      train_step_counter=train_step,
      **q_learning.agent_arguments(
          builder, train_step, optimizer=optimizer, learning_rate=learning_rate,
          rmsprop_rho=rmsprop_rho, rmsprop_momentum=rmsprop_momentum,
          rmsprop_epsilon=rmsprop_epsilon, rmsprop_centered=rmsprop_centered, loss=loss,
          epsilon_greedy=epsilon_greedy, epsilon_final=epsilon_final,
          epsilon_decay_steps=epsilon_decay_steps),
  )


def _check_support(num_atoms: int, min_q_value: float, max_q_value: float) -> None:
  if isinstance(num_atoms, bool) or not isinstance(num_atoms, int) or num_atoms < 2:
    raise ConfigError(f"create_c51_agent.num_atoms must be an int >= 2, got {num_atoms!r}")
  if not min_q_value < max_q_value:
    raise ConfigError(f"create_c51_agent.min_q_value ({min_q_value}) must be below max_q_value "
                      f"({max_q_value})")
