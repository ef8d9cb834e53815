"""PPO (TF-Agents' `PPOClipAgent`) with dense actor and value networks, as in TF-Agents' PPO example.

Observations and rewards are normalized by the agent (its normalizers are
variables of the agent, so a bundle holds their statistics). The on-policy
loop (`train.loop = @on_policy_loop`) trains it on each collected batch in one
of two ways, as TF-Agents does:

- `minibatch_size` set (as TF-Agents' `PPOLearner` and most PPO
  implementations do): the loop updates the normalizers, computes the batch's
  advantages and returns once, then runs `num_epochs` passes over the batch's
  steps in shuffled minibatches of `minibatch_size` steps; each minibatch is
  one gradient step and one train step, so a batch of B env steps is
  `num_epochs * (B // minibatch_size)` train steps.
- `minibatch_size=None` (the agent's own `train`, TF-Agents' PPO example):
  each pass is one gradient step on the whole batch, so a batch is
  `num_epochs` train steps. Far fewer gradient steps per env step: PPO then
  needs several times the env steps (docs/learning_targets.md).
"""

from collections.abc import Sequence

import gin
import tensorflow as tf
from tf_agents.agents import tf_agent
from tf_agents.agents.ppo import ppo_clip_agent
from tf_agents.networks import actor_distribution_network, normal_projection_network, value_network
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
    use_td_lambda_return: bool = True,
    normalize_observations: bool = True,
    normalize_rewards: bool = True,
    gradient_clipping: float | None = 0.5,
    minibatch_size: int | None = None,
    state_dependent_std: bool = False,
) -> tf_agent.TFAgent:
  """PPO-clip; discrete or continuous actions (a categorical or a normal policy).

  Args (beyond PPOClipAgent's own):
    num_epochs: passes over each collected batch.
    minibatch_size: env steps per gradient step, or None for one gradient step
      per pass on the whole batch (see the module's docstring).
    use_td_lambda_return: the value target is the TD(lambda) return (the
      advantage plus the value prediction), as in TF-Agents' PPO example, not
      the Monte Carlo return.
    state_dependent_std: continuous actions only: the normal's scale is an
      output of the actor network (for each state), not one variable per
      action dimension. On Pendulum-v1 PPO reached -281 within 200k env steps
      with it and stayed near -1,000 for 500k without it (docs/learning_targets.md).
  """
  actor_layers, value_layers = _checked(actor_fc_layers, value_fc_layers, learning_rate,
                                       num_epochs, minibatch_size)
  time_step_tensor_spec = tensor_spec.from_spec(time_step_spec)
  action_tensor_spec = tensor_spec.from_spec(action_spec)
  actor_net, value_net = _networks(time_step_tensor_spec.observation, action_tensor_spec,
                                   actor_layers, value_layers, state_dependent_std)
  agent = PPOClipAgent(
      time_step_tensor_spec,
      action_tensor_spec,
      optimizer=tf.keras.optimizers.legacy.Adam(learning_rate=learning_rate, epsilon=1e-5),
      actor_net=actor_net, value_net=value_net,
      importance_ratio_clipping=importance_ratio_clipping, lambda_value=lambda_value,
      discount_factor=discount_factor, entropy_regularization=entropy_regularization,
      value_pred_loss_coef=value_pred_loss_coef,
      passes=num_epochs, minibatch_size=minibatch_size,
      use_gae=use_gae, use_td_lambda_return=use_td_lambda_return,
      normalize_observations=normalize_observations, normalize_rewards=normalize_rewards,
      gradient_clipping=gradient_clipping, train_step_counter=train_step,
  )
  agent.initialize()
  return agent


def _checked(actor_fc_layers, value_fc_layers, learning_rate: float, num_epochs: int,
             minibatch_size: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Checks the arguments that a typo makes meaningless; returns the layers."""
  actor_layers = check_layers("create_ppo_agent.actor_fc_layers", actor_fc_layers)
  value_layers = check_layers("create_ppo_agent.value_fc_layers", value_fc_layers)
  check_positive("create_ppo_agent.learning_rate", learning_rate)
  check_positive("create_ppo_agent.num_epochs", num_epochs, int)
  if minibatch_size is not None:
    check_positive("create_ppo_agent.minibatch_size", minibatch_size, int)
  return actor_layers, value_layers


def _networks(observation_spec, action_spec, actor_layers: tuple[int, ...],
              value_layers: tuple[int, ...], state_dependent_std: bool):
  """The actor (a categorical or a normal policy) and the value network, tanh
  layers both, as in TF-Agents' PPO example."""
  actor_net = actor_distribution_network.ActorDistributionNetwork(
      observation_spec, action_spec, fc_layer_params=actor_layers,
      activation_fn=tf.keras.activations.tanh,
      **({"continuous_projection_net": _state_dependent_normal} if state_dependent_std else {}))
  value_net = value_network.ValueNetwork(observation_spec, fc_layer_params=value_layers,
                                         activation_fn=tf.keras.activations.tanh)
  return actor_net, value_net


def _state_dependent_normal(sample_spec):
  """The actor's head for continuous actions with the scale an output of the
  network per state (`NormalProjectionNetwork`'s own initialization: a scale of
  softplus(0) = 0.69 at the start; ppo_pendulum's figures were measured with
  it). Without `state_dependent_std` the actor keeps TF-Agents' default head
  (one scale variable per action dimension, starting at 0.35)."""
  return normal_projection_network.NormalProjectionNetwork(sample_spec, state_dependent_std=True)


class PPOClipAgent(ppo_clip_agent.PPOClipAgent):
  """TF-Agents' `PPOClipAgent`, which also says how the on-policy loop trains
  it: `passes` over each batch, whole (`minibatch_size=None`: the agent's own
  `train` runs the passes) or in minibatches of `minibatch_size` steps (the
  loop runs them; the agent then neither computes advantages nor updates its
  normalizers in `train`, as with TF-Agents' `PPOLearner`)."""

  def __init__(self, *args, passes: int, minibatch_size: int | None, **kwargs):
    minibatches = minibatch_size is not None
    super().__init__(*args, num_epochs=1 if minibatches else passes,
                     compute_value_and_advantage_in_train=not minibatches,
                     update_normalizers_in_train=not minibatches, **kwargs)
    self.passes = passes
    self.minibatch_size = minibatch_size

  def train_steps_per_batch(self, batch_steps: int) -> int:
    """Train steps (gradient steps) per collected batch of `batch_steps` env steps."""
    if self.minibatch_size is None:
      return self.passes
    return self.passes * (batch_steps // self.minibatch_size)
