"""TD3 with dense actor and critic networks, as in TF-Agents' TD3 example."""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.ddpg import actor_network
from tf_agents.agents.td3 import td3_agent
from tf_agents.specs import tensor_spec

from trainer.agents.checks import check_action_kind, check_layers, check_positive
from trainer.agents.networks import joint_critic


@gin.configurable
def create_td3_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    actor_fc_layers: Sequence[int] = (256, 256),
    critic_joint_fc_layers: Sequence[int] = (256, 256),
    actor_learning_rate: float = 3e-4,
    critic_learning_rate: float = 3e-4,
    exploration_noise_std: float = 0.1,
    target_policy_noise: float = 0.2,
    target_policy_noise_clip: float = 0.5,
    actor_update_period: int = 2,
    target_update_tau: float = 0.005,
    target_update_period: int = 2,
    gamma: float = 0.99,
    reward_scale_factor: float = 1.0,
) -> tf_agent.TFAgent:
  """TD3: twin critics, a delayed deterministic actor, smoothed target actions."""
  actor_layers = check_layers("create_td3_agent.actor_fc_layers", actor_fc_layers)
  critic_layers = check_layers("create_td3_agent.critic_joint_fc_layers", critic_joint_fc_layers)
  for name, value in [("actor_learning_rate", actor_learning_rate),
                      ("critic_learning_rate", critic_learning_rate)]:
    check_positive(f"create_td3_agent.{name}", value)
  for name, value in [("actor_update_period", actor_update_period),
                      ("target_update_period", target_update_period)]:
    check_positive(f"create_td3_agent.{name}", value, int)
  action_tensor_spec = check_action_kind("create_td3_agent", action_spec, discrete=False)
  observation_spec = tensor_spec.from_spec(time_step_spec).observation
  actor = actor_network.ActorNetwork(observation_spec, action_tensor_spec,
                                     fc_layer_params=actor_layers)
  critic = joint_critic(observation_spec, action_tensor_spec, critic_layers)
  return Td3Agent(
      tensor_spec.from_spec(time_step_spec),
      action_tensor_spec,
      actor_network=actor,
      critic_network=critic,
      # Keras' legacy Adam, whose slots are tracked per variable: with the current
      # Adam a restored TD3 agent's critic slots did not match the saved ones (a
      # (1,) slot for a (256, 1) kernel; tests/test_restore.py), with this one they
      # restore bit-exact.
      actor_optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=actor_learning_rate),
      critic_optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=critic_learning_rate),
      exploration_noise_std=exploration_noise_std,
      target_policy_noise=target_policy_noise,
      target_policy_noise_clip=target_policy_noise_clip,
      actor_update_period=actor_update_period,
      target_update_tau=target_update_tau,
      target_update_period=target_update_period,
      td_errors_loss_fn=tf.math.squared_difference,
      gamma=gamma,
      reward_scale_factor=reward_scale_factor,
      train_step_counter=train_step,
  )


class Td3Agent(td3_agent.Td3Agent):
  """TF-Agents' `Td3Agent` whose critic loss is averaged over the global batch.

  Its critic loss is a plain mean over the replica's batch, where its actor
  loss and the other agents' losses are divided by the global batch
  (`common.aggregate_losses`); the gradients are then summed over replicas, so
  under a strategy of N replicas the critic's would be N times too large.
  Dividing by N makes them the mean over the global batch (nothing changes
  with one replica).
  """

  def critic_loss(self, *args, **kwargs):
    loss = super().critic_loss(*args, **kwargs)
    replica = tf.distribute.get_replica_context()  # None outside `strategy.run`: one batch
    return loss / replica.num_replicas_in_sync if replica is not None else loss
