"""Agent builders: `fn(time_step_spec, action_spec, train_step) -> TFAgent`.

The job never inspects which agent it got: anything that trains from
replayed `Trajectory`s of length `agent.train_sequence_length` works, discrete
or continuous.
"""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.dqn import dqn_agent
from tf_agents.networks import sequential
from tf_agents.specs import tensor_spec

from trainer.agents import q_learning
from trainer.agents.checks import check_action_kind, check_layers, check_positive


@gin.configurable
def create_dqn_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    conv_layer_params: Sequence[tuple[int, int, int]] = (),
    fc_layer_params: Sequence[int] = (100,),
    observation_scale: float | None = None,
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
    n_step_update: int = 1,
    gamma: float = 0.99,
    target_update_tau: float = 0.05,
    target_update_period: int = 5,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """DQN with a Q-network of conv layers (none by default) and dense layers, as in
  TF-Agents' dqn_train_eval, or the Nature DQN (`configs/dqn_atari.gin`). The
  knobs (observation scale, optimizer, loss, epsilon schedule): docs/configuration.md.
  """
  builder = "create_dqn_agent"
  conv = q_learning.check_conv_layers(builder, conv_layer_params)
  layers = check_layers(f"{builder}.fc_layer_params", fc_layer_params)
  check_positive(f"{builder}.n_step_update", n_step_update, int)
  check_positive(f"{builder}.target_update_period", target_update_period, int)
  action_tensor_spec = check_action_kind(builder, action_spec, discrete=True)
  time_step_tensor_spec = tensor_spec.from_spec(time_step_spec)
  scale = q_learning.observation_scale(builder, time_step_tensor_spec.observation,
                                       observation_scale)
  return dqn_agent.DqnAgent(
      time_step_tensor_spec,
      action_tensor_spec,
      q_network=_q_network(action_tensor_spec, scale, conv, layers),
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


def _q_network(action_spec, scale: float | None, conv, layers) -> sequential.Sequential:
  """The encoder's layers, then one linear Q-value per action."""
  q_values = tf.keras.layers.Dense(
      int(action_spec.maximum - action_spec.minimum + 1), activation=None,
      kernel_initializer=tf.keras.initializers.RandomUniform(minval=-0.03, maxval=0.03),
      bias_initializer=tf.keras.initializers.Constant(-0.2))
  return sequential.Sequential(q_learning.encoder_layers(scale, conv, layers) + [q_values])
