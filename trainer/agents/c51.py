"""C51 (categorical DQN) with a categorical Q-network of dense layers, as in TF-Agents' C51 example."""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.categorical_dqn import categorical_dqn_agent
from tf_agents.networks import categorical_q_network
from tf_agents.specs import tensor_spec
from tf_agents.utils import common

from trainer.agents.checks import check_action_kind, check_layers, check_positive
from trainer.errors import ConfigError


@gin.configurable
def create_c51_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    fc_layer_params: Sequence[int] = (100,),
    num_atoms: int = 51,
    min_q_value: float = -20.0,
    max_q_value: float = 20.0,
    learning_rate: float = 1e-3,
    epsilon_greedy: float = 0.1,
    n_step_update: int = 2,
    gamma: float = 0.99,
    target_update_tau: float = 0.05,
    target_update_period: int = 5,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """C51: a distribution of `num_atoms` returns between min and max_q_value per action."""
  layers = check_layers("create_c51_agent.fc_layer_params", fc_layer_params)
  check_positive("create_c51_agent.learning_rate", learning_rate)
  check_positive("create_c51_agent.n_step_update", n_step_update, int)
  check_positive("create_c51_agent.target_update_period", target_update_period, int)
  if isinstance(num_atoms, bool) or not isinstance(num_atoms, int) or num_atoms < 2:
    raise ConfigError(f"create_c51_agent.num_atoms must be an int >= 2, got {num_atoms!r}")
  if not min_q_value < max_q_value:
    raise ConfigError(f"create_c51_agent.min_q_value ({min_q_value}) must be below max_q_value "
                      f"({max_q_value})")
  action_tensor_spec = check_action_kind("create_c51_agent", action_spec, discrete=True)
  time_step_tensor_spec = tensor_spec.from_spec(time_step_spec)
  network = categorical_q_network.CategoricalQNetwork(
      time_step_tensor_spec.observation, action_tensor_spec, num_atoms=num_atoms,
      fc_layer_params=layers)
  return categorical_dqn_agent.CategoricalDqnAgent(
      time_step_tensor_spec,
      action_tensor_spec,
      categorical_q_network=network,
      optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
      min_q_value=min_q_value,
      max_q_value=max_q_value,
      epsilon_greedy=epsilon_greedy,
      n_step_update=n_step_update,
      target_update_tau=target_update_tau,
      target_update_period=target_update_period,
      td_errors_loss_fn=common.element_wise_squared_loss,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      train_step_counter=train_step,
  )
