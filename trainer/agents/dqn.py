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
from tf_agents.utils import common

from trainer.agents.checks import check_action_kind, check_layers, check_positive


@gin.configurable
def create_dqn_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    fc_layer_params: Sequence[int] = (100,),
    learning_rate: float = 1e-3,
    epsilon_greedy: float = 0.1,
    n_step_update: int = 1,
    gamma: float = 0.99,
    target_update_tau: float = 0.05,
    target_update_period: int = 5,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """DQN with a Q-network of dense layers, as in TF-Agents' dqn_train_eval."""
  layers = check_layers("create_dqn_agent.fc_layer_params", fc_layer_params)
  check_positive("create_dqn_agent.learning_rate", learning_rate)
  check_positive("create_dqn_agent.n_step_update", n_step_update, int)
  check_positive("create_dqn_agent.target_update_period", target_update_period, int)
  action_tensor_spec = check_action_kind("create_dqn_agent", action_spec, discrete=True)
  num_actions = int(action_tensor_spec.maximum - action_tensor_spec.minimum + 1)
  dense_layers = [
      tf.keras.layers.Dense(
          units, activation=tf.keras.activations.relu,
          kernel_initializer=tf.keras.initializers.VarianceScaling(
              scale=2.0, mode="fan_in", distribution="truncated_normal"))
      for units in layers
  ]
  q_values = tf.keras.layers.Dense(
      num_actions, activation=None,
      kernel_initializer=tf.keras.initializers.RandomUniform(minval=-0.03, maxval=0.03),
      bias_initializer=tf.keras.initializers.Constant(-0.2))
  return dqn_agent.DqnAgent(
      tensor_spec.from_spec(time_step_spec),
      action_tensor_spec,
      q_network=sequential.Sequential(dense_layers + [q_values]),
      optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
      epsilon_greedy=epsilon_greedy,
      n_step_update=n_step_update,
      target_update_tau=target_update_tau,
      target_update_period=target_update_period,
      td_errors_loss_fn=common.element_wise_squared_loss,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      train_step_counter=train_step,
  )
