"""PPO (TF-Agents' `PPOClipAgent`) with dense actor and value networks, as in TF-Agents' PPO example.

Observations and rewards are normalized by the agent (its normalizers are
variables of the agent, so a bundle holds their statistics). One `train` call
runs `num_epochs` passes over a collected batch and advances the train step by
`num_epochs`: the on-policy loop (`train.loop = @on_policy_loop`) calls it once
per iteration, with `train.train_steps_per_iteration = num_epochs`.
"""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.ppo import ppo_clip_agent
from tf_agents.networks import actor_distribution_network, value_network
from tf_agents.specs import tensor_spec

from trainer.agents.checks import check_layers, check_positive


@gin.configurable
def create_ppo_agent(
    time_step_spec,
    action_spec,
    train_step: tf.Variable,
    *,
    actor_fc_layers: Sequence[int] = (64, 64),
    value_fc_layers: Sequence[int] = (64, 64),
    learning_rate: float = 3e-4,
    num_epochs: int = 10,
    importance_ratio_clipping: float = 0.2,
    lambda_value: float = 0.95,
    discount_factor: float = 0.99,
    entropy_regularization: float = 0.0,
    value_pred_loss_coef: float = 0.5,
    use_gae: bool = True,
    normalize_observations: bool = True,
    normalize_rewards: bool = True,
    gradient_clipping: float | None = 0.5,
) -> tf_agent.TFAgent:
  """PPO-clip; discrete or continuous actions (a categorical or a normal policy)."""
  actor_layers = check_layers("create_ppo_agent.actor_fc_layers", actor_fc_layers)
  value_layers = check_layers("create_ppo_agent.value_fc_layers", value_fc_layers)
  check_positive("create_ppo_agent.learning_rate", learning_rate)
  check_positive("create_ppo_agent.num_epochs", num_epochs, int)
  time_step_tensor_spec = tensor_spec.from_spec(time_step_spec)
  action_tensor_spec = tensor_spec.from_spec(action_spec)
  observation_spec = time_step_tensor_spec.observation
  actor_net = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_tensor_spec, fc_layer_params=actor_layers,
      activation_fn=tf.keras.activations.tanh)
  value_net = value_network.ValueNetwork(observation_spec, fc_layer_params=value_layers,
                                         activation_fn=tf.keras.activations.tanh)
  agent = ppo_clip_agent.PPOClipAgent(
      time_step_tensor_spec,
      action_tensor_spec,
      optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=learning_rate, epsilon=1e-5),
      actor_net=actor_net,
      value_net=value_net,
      importance_ratio_clipping=importance_ratio_clipping,
      lambda_value=lambda_value,
      discount_factor=discount_factor,
      entropy_regularization=entropy_regularization,
      value_pred_loss_coef=value_pred_loss_coef,
      num_epochs=num_epochs,
      use_gae=use_gae,
      normalize_observations=normalize_observations,
      normalize_rewards=normalize_rewards,
      gradient_clipping=gradient_clipping,
      train_step_counter=train_step,
  )
  agent.initialize()
  return agent
