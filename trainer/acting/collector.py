"""Collection: steps the collect environments with a policy, side by side.

What TF-Agents' `Actor` with a `PyTFEagerPolicy` over a `BatchedPyEnvironment`
does (the same batched transitions to the same observers, metrics summarized
against the train step), in a lean loop. A step costs one policy call for all
environments: a TF policy is one concrete `tf.function` with a fixed input
signature called with flat tensors, which skips the argument matching and
nest conversion that dominate a `PyTFEagerPolicy` call on a small network
(figures in docs/benchmarks_notes.md), and with several environments the call
is shared. A Python policy (the initial collect's random one) is called
directly.

Each environment resets itself after its last step (TF-Agents' auto-reset), so
the environments' episodes end and begin independently.
"""

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from tf_agents.environments import py_environment
from tf_agents.policies import py_policy, tf_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step, trajectory
from tf_agents.utils import nest_utils

from trainer.learning.flat_call import flat_call


def batched_action_function(policy: tf_policy.TFPolicy, batch_size: int):
  """`(time_step, state) -> (action, state, info)` of `policy` for `batch_size`
  environments: a concrete function called with flat tensors
  (`flat_call`), so a call skips `tf.function`'s argument matching
  and the signature binding. Traced without autograph:
  TF-Agents policies are graph code already, and converting them (as
  TF-Agents' own `common.function` also declines to) costs seconds."""

  @tf.function(input_signature=[tensor_spec.add_outer_dim(policy.time_step_spec, batch_size),
                                tensor_spec.add_outer_dim(policy.policy_state_spec, batch_size)],
               autograph=False)
  def action(time_step, state):
    step = policy.action(time_step, state)
    return step.action, step.state, step.info

  return flat_call(action.get_concrete_function())


class Collector:
  """Runs a TF or Python policy in unbatched Python environments, side by side.

  Observers and metrics receive batched trajectories, one row per environment.
  """

  def __init__(self, envs: Sequence[py_environment.PyEnvironment], train_step: tf.Variable, *,
               observers: Sequence[Callable[[Any], None]], metrics: Any,
               summary_dir: str, summary_interval: int):
    """
    Args:
      envs: the collect environments.
      train_step: the step summaries are written at.
      observers: called with every batched `Trajectory`.
      metrics: a `run_state.CollectStats` (called like an observer).
      summary_dir: where `Metrics/collect/*` summaries go.
      summary_interval: train steps between summaries; 0 disables them.
    """
    self._envs = list(envs)
    self._train_step = train_step
    self._observers = [*observers, metrics]
    self._metrics = metrics
    self._summary_interval = summary_interval
    # Summaries at the first collect at or past each multiple of the interval. A
    # job resumed at a multiple writes it: the stopped job trained to it and
    # stopped before collecting there, so nothing wrote it.
    self._last_summary = int(train_step.numpy()) - 1
    self.summary_writer = (tf.summary.create_file_writer(summary_dir) if summary_interval > 0
                           else tf.summary.create_noop_writer())
    self._policy = self._action = None
    self._time_step = nest_utils.stack_nested_arrays([env.reset() for env in self._envs])

  @property
  def num_envs(self) -> int:
    return len(self._envs)

  def use(self, policy: tf_policy.TFPolicy | py_policy.PyPolicy) -> None:
    """Acts with `policy` from the next step on (the environments carry on)."""
    self._policy = policy
    self._state = policy.get_initial_state(self.num_envs)
    self._action = (None if isinstance(policy, py_policy.PyPolicy)
                    else batched_action_function(policy, self.num_envs))

  def run(self, steps: int) -> None:
    """Steps every environment until at least `steps` environment steps were
    taken in all (episode boundaries not counted, as the Actor does)."""
    taken = 0
    while taken < steps:
      taken += self._step()
    self._write_summaries()

  def run_batches(self, count: int) -> None:
    """Steps every environment exactly `count` times: `count` rows of
    trajectory per environment, boundaries included (an on-policy batch)."""
    for _ in range(count):
      self._step()
    self._write_summaries()

  def _step(self) -> int:
    """One step of every environment; returns the environment steps taken
    (those that are not episode boundaries)."""
    if self._policy is None:
      raise RuntimeError("Collector.use(policy) first")
    time_step, state = self._time_step, self._state
    if self._action is None:
      step = self._policy.action(time_step, state)
      action, state, info = step.action, step.state, step.info
    else:
      action, state, info = self._action(time_step, state)  # the state stays a tensor
      action, info = tf.nest.map_structure(lambda t: t.numpy(), (action, info))
    next_time_step = nest_utils.stack_nested_arrays([
        env.step(a) for env, a in zip(self._envs, nest_utils.unstack_nested_arrays(action),
                                      strict=True)])
    traj = trajectory.from_transition(time_step, policy_step.PolicyStep(action, (), info),
                                      next_time_step)
    for observer in self._observers:
      observer(traj)
    self._time_step, self._state = next_time_step, state
    return int(np.count_nonzero(~traj.is_boundary()))

  def _write_summaries(self) -> None:
    step, every = int(self._train_step.numpy()), self._summary_interval
    if every <= 0 or step // every <= self._last_summary // every:
      return
    self._last_summary = step
    with self.summary_writer.as_default():
      for name, value in self._metrics.results().items():
        tf.summary.scalar(os.path.join("Metrics", "collect", name), value, step=step)
