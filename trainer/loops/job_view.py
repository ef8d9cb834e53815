"""What a loop may use of a built job: the `JobView` protocol.

A loop (`train.loop`: `OffPolicyLoop`, `OnPolicyLoop`, the learner role's
`LearnerLoop`) is built as `loop(job, stop)` and drives the job through these
members alone; `loops.job.Job` is the one implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
  import tensorflow as tf
  from tf_agents.agents import tf_agent
  from tf_agents.environments import py_environment

  from trainer.acting.collector import Collector
  from trainer.acting.evaluator import Evaluator
  from trainer.checkpoint.bundle_store import BundleStore
  from trainer.checkpoint.run_state import RunState
  from trainer.config.settings import Settings
  from trainer.learning.learner import Learner
  from trainer.replay.base import Replay


class JobView(Protocol):
  """A built, restored job, as its loop sees it."""

  settings: Settings
  root_dir: str
  # The parts.
  agent: tf_agent.TFAgent  # its variables under `strategy`
  strategy: tf.distribute.Strategy
  collect_envs: list[py_environment.PyEnvironment]
  replay: Replay
  collector: Collector  # steps `collect_envs` into `replay`
  learner: Learner  # trains; its triggers evaluate, export, checkpoint and log
  evaluator: Evaluator
  run_state: RunState  # counters, eval history
  store: BundleStore  # the committed bundles (read only: `checkpoint` writes)

  @property
  def train_step(self) -> int: ...

  @property
  def train_step_variable(self) -> tf.Variable: ...

  @property
  def replica_batch_size(self) -> int:
    """Each replica's share of `train.batch_size`."""

  def checkpoint(self, background: bool = False) -> None:
    """Commits a bundle at the current train step (no-op if one exists)."""

  def export(self) -> None:
    """Exports the current policy."""

  def export_missing_at_resume(self) -> None:
    """Writes the restored step's export if it is due and missing."""

  def export_if_missing(self, warning: str | None = None) -> None:
    """Exports the current step if it is on the export grid and has none."""

  def flush(self) -> None:
    """Writes out the summaries and waits for the exports."""
