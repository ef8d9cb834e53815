"""Agent builders: `fn(time_step_spec, action_spec, train_step) -> TFAgent`.

The pipeline never inspects which agent it got: anything that trains from
replayed `Trajectory`s of length `agent.train_sequence_length` works, discrete
or continuous.
"""

import math
from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.ddpg import critic_network
from tf_agents.agents.dqn import dqn_agent
from tf_agents.agents.sac import sac_agent, tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network, sequential
from tf_agents.specs import tensor_spec
from tf_agents.utils import common

from trainer.errors import ConfigError


def _check_positive(name: str, value, kind=(int, float)) -> None:
  if (isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value)
      or value <= 0):
    raise ConfigError(f"{name} must be a positive finite number, got {value!r}")


def _check_layers(name: str, layers: Sequence[int]) -> tuple[int, ...]:
  if not isinstance(layers, (list, tuple)) or not all(
      isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in layers):
    raise ConfigError(f"{name} must be a tuple of positive ints, e.g. (256, 256); got {layers!r}")
  return tuple(layers)


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
  layers = _check_layers("create_dqn_agent.fc_layer_params", fc_layer_params)
  _check_positive("create_dqn_agent.learning_rate", learning_rate)
  _check_positive("create_dqn_agent.n_step_update", n_step_update, int)
  _check_positive("create_dqn_agent.target_update_period", target_update_period, int)
  action_tensor_spec = tensor_spec.from_spec(action_spec)
  if not action_tensor_spec.dtype.is_integer:
    raise ConfigError("create_dqn_agent needs a discrete action space; use create_sac_agent "
                      "for continuous actions")
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


@gin.configurable
def create_sac_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    actor_fc_layers: Sequence[int] = (256, 256),
    critic_joint_fc_layers: Sequence[int] = (256, 256),
    actor_learning_rate: float = 3e-4,
    critic_learning_rate: float = 3e-4,
    alpha_learning_rate: float = 3e-4,
    target_update_tau: float = 0.005,
    target_update_period: int = 1,
    gamma: float = 0.99,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """SAC with a tanh-normal actor and a joint critic, as in TF-Agents' SAC tutorial."""
  actor_layers = _check_layers("create_sac_agent.actor_fc_layers", actor_fc_layers)
  critic_layers = _check_layers("create_sac_agent.critic_joint_fc_layers", critic_joint_fc_layers)
  for name, value in [("actor_learning_rate", actor_learning_rate),
                      ("critic_learning_rate", critic_learning_rate),
                      ("alpha_learning_rate", alpha_learning_rate)]:
    _check_positive(f"create_sac_agent.{name}", value)
  action_tensor_spec = tensor_spec.from_spec(action_spec)
  if not action_tensor_spec.dtype.is_floating:
    raise ConfigError("create_sac_agent needs a continuous action space; use create_dqn_agent "
                      "for discrete actions")
  observation_spec = tensor_spec.from_spec(time_step_spec).observation
  actor_net = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_tensor_spec, fc_layer_params=actor_layers,
      continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork)
  critic_net = critic_network.CriticNetwork(
      (observation_spec, action_tensor_spec), joint_fc_layer_params=critic_layers,
      kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform")
  return sac_agent.SacAgent(
      tensor_spec.from_spec(time_step_spec),
      action_tensor_spec,
      actor_network=actor_net,
      critic_network=critic_net,
      actor_optimizer=tf.keras.optimizers.Adam(learning_rate=actor_learning_rate),
      critic_optimizer=tf.keras.optimizers.Adam(learning_rate=critic_learning_rate),
      alpha_optimizer=tf.keras.optimizers.Adam(learning_rate=alpha_learning_rate),
      target_update_tau=target_update_tau,
      target_update_period=target_update_period,
      td_errors_loss_fn=tf.math.squared_difference,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      train_step_counter=train_step,
  )
