"""SAC with a tanh-normal actor and a joint critic."""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.sac import sac_agent, tanh_normal_projection_network
from tf_agents.networks import actor_distribution_network
from tf_agents.specs import tensor_spec

from trainer.agents.checks import check_action_kind, check_layers, check_positive
from trainer.agents.networks import joint_critic


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
  actor_layers = check_layers("create_sac_agent.actor_fc_layers", actor_fc_layers)
  critic_layers = check_layers("create_sac_agent.critic_joint_fc_layers", critic_joint_fc_layers)
  for name, value in [("actor_learning_rate", actor_learning_rate),
                      ("critic_learning_rate", critic_learning_rate),
                      ("alpha_learning_rate", alpha_learning_rate)]:
    check_positive(f"create_sac_agent.{name}", value)
  action_tensor_spec = check_action_kind("create_sac_agent", action_spec, discrete=False)
  observation_spec = tensor_spec.from_spec(time_step_spec).observation
  actor_net = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_tensor_spec, fc_layer_params=actor_layers,
      continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork)
  critic_net = joint_critic(observation_spec, action_tensor_spec, critic_layers)
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
