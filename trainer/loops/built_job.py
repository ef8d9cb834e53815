"""A built job, restored: its parts wired together, and what its loop asks of them.

`Job` implements `loops.job_view.JobView`: the loop (`train.loop`) drives it
through checkpoint, export, evaluate and status, which the Learner's triggers
call as well. `loops.job` opens one (lock, restore) and runs its loop.
"""

import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from absl import logging

from trainer.acting.collector import Collector
from trainer.acting.evaluator import Evaluator
from trainer.checkpoint.bundle_parts import AgentPart, BundleParts, ReplayPart
from trainer.checkpoint.bundle_store import Bundle, BundleStore
from trainer.checkpoint.committer import Committer
from trainer.checkpoint.run_state import RunState
from trainer.errors import ConfigError
from trainer.learning import learner
from trainer.loops import parts, schedule
from trainer.loops.spec import JobSpec
from trainer.policies import exporter, policy_index
from trainer.replay.base import ReplaySaveError
from trainer.rundir import layout
from trainer.rundir.signals import StopRequest


class Job:
  """A built job, restored: its parts, and what every loop asks of them
  (checkpoint, export, evaluate, status). The loop itself is `spec.loop`."""

  def __init__(self, spec: JobSpec, store: BundleStore, agents: parts.JobParts, stop: StopRequest, *,
               bundle: Bundle | None, damaged: list[Bundle],
               live_step: Callable[[int], None] = lambda step: None):
    """`live_step(train_step)`: called after every Learner call (the run lock
    records it, rate-limited, for `trainer.status`)."""
    self.spec, self.settings, self.root_dir = spec, spec.settings, spec.root_dir
    self._live_step = live_step
    self.stop = stop
    self.collect_envs = agents.collect_envs
    self.agent, self._train_step = agents.agent, agents.train_step
    self.strategy = agents.strategy
    self.store = store
    self.restored_step = bundle.step if bundle else None
    self.committer: Committer | None = None
    # Eval environments are seeded afresh at each eval; only the collect ones carry state.
    self.run_state = RunState(self.collect_envs)
    self.exporter: exporter.PolicyExporter | None = None
    self.export_stalls: list[float] = []  # seconds the loop waited per export
    # What the loop sets of its replay (the on-policy loop: room for one batch).
    replay_options = getattr(spec.loop, "replay_options", lambda settings: {})(self.settings)
    self.replay = spec.replay_fn(
        self.agent.collect_data_spec, sequence_length=self.agent.train_sequence_length,
        root_dir=self.root_dir, restore_dir=bundle.replay_dir if bundle else None,
        num_envs=len(self.collect_envs), **replay_options)
    try:
      if self.settings.batch_size > self.replay.capacity:
        raise ConfigError(f"train.batch_size={self.settings.batch_size} exceeds the replay "
                          f"capacity {self.replay.capacity}; raise the capacity or lower the "
                          "batch size")
      # The first writes: damaged bundles aside, leftovers of crashes removed.
      store.settle(damaged)
      if bundle and damaged:  # TF's pointer named a bundle now set aside
        store.point_tf_state_at(bundle.step)
      self._build(bundle, agents)
    except BaseException:
      self.close()  # stops an in-process Reverb server and the export thread
      raise

  def _build(self, bundle: Bundle | None, agents: parts.JobParts) -> None:
    """Builds what stands on the replay, and restores the bundle into it."""
    settings, root_dir = self.settings, self.root_dir
    self._bundle_parts = BundleParts(AgentPart(root_dir, self.agent, self._train_step),
                             ReplayPart(self.replay), self.run_state,
                             num_iterations=settings.num_iterations)
    self.evaluator = Evaluator(root_dir, agents.eval_envs, self.agent, self._train_step,
                               self.run_state.record_eval,
                               env_steps=self._current_env_steps, seed=settings.seed + 1)
    # TF-Agents' Learner restores the newest checkpoint of its own directory;
    # given one that never holds any, it restores nothing. Summaries go to the
    # run's train/ as before.
    triggers = schedule.triggers(settings, evaluate=self.evaluator, export=self.export,
                                 checkpoint=self._trigger_checkpoint,
                                 status=self.status)
    self.learner = learner.Learner(
        os.path.join(root_dir, layout.LEARNER_DIR), self._train_step, self.agent,
        experience_dataset_fn=None,
        triggers=[*triggers, lambda train_step, force_trigger=False: self._live_step(train_step)],
        checkpoint_interval=0,
        summary_interval=settings.summary_interval, run_optimizer_variable_init=True,
        summary_root_dir=root_dir, strategy=self.strategy)
    if bundle:
      self._bundle_parts.restore(bundle)  # after the Learner: see AgentPart.restore
      for trigger in triggers:  # ours (the Learner adds its own to its copy): from the restored step
        trigger.set_start(bundle.step)
    self.run_state.follow_export_interval(self.train_step, settings.policy_export_interval)
    # After the restore: summaries continue from the restored train step.
    self.collector = Collector(
        self.collect_envs, self._train_step, observers=[self.replay.observer],
        metrics=self.run_state.collect_stats,
        summary_dir=os.path.join(root_dir, layout.TRAIN_DIR),
        summary_interval=settings.summary_interval)
    self.exporter = exporter.PolicyExporter(
        os.path.join(root_dir, layout.POLICY_DIR), live_agent=self.agent,
        shadow_agent=agents.shadow, train_step=self._train_step,
        shadow_train_step=agents.shadow_step, metadata_fn=self._export_metadata,
        retention=policy_index.Retention(settings.exports_keep_last, settings.exports_keep_best,
                                         settings.exports_keep_every))
    # Exports above the resumed step came from training that is now redone.
    self.exporter.supersede_after(self.restored_step or 0)
    self.exporter.prebuild()
    self.committer = Committer(
        root_dir, self.store, self._bundle_parts, self.exporter,
        write_errors=(OSError, tf.errors.OpError, ReplaySaveError),
        export_error=exporter.ExportError, before_save=self.refresh_counters)

  def refresh_counters(self) -> None:
    """Reads the counters afresh where they live elsewhere (`JobSpec.refresh_counters`)."""
    if self.spec.refresh_counters is not None:
      self.spec.refresh_counters(self)

  def _current_env_steps(self) -> int:
    """The env steps as of now, for an evaluation's row: the counters are
    refreshed first (the learner role's live on the replay server, and were
    otherwise as of the last checkpoint or progress line)."""
    self.refresh_counters()
    return self.run_state.env_steps

  @property
  def replica_batch_size(self) -> int:
    """Each replica's share of `train.batch_size`, the global batch (checked to divide)."""
    return self.settings.batch_size // self.strategy.num_replicas_in_sync

  @property
  def train_step(self) -> int:
    return int(self._train_step.numpy())

  @property
  def train_step_variable(self) -> tf.Variable:
    return self._train_step

  def run(self) -> int:
    """Runs the job to its total with the loop chosen in gin (`train.loop`)."""
    return self.spec.loop(self, self.stop).run()

  # --- what the triggers and loops call --------------------------------------

  def status(self) -> dict[str, Any]:
    self.refresh_counters()
    return {"train_step": self.train_step, "env_steps": self.run_state.env_steps,
            "episodes": self.run_state.episodes,
            "last_eval_return": self.run_state.last_eval_return}

  def export(self) -> None:
    self.refresh_counters()
    stall = self.exporter.export(self.run_state.env_steps)
    self.export_stalls.append(stall)

  def export_missing_at_resume(self) -> None:
    """Writes the export of the restored step if it is due and missing: an
    export lost after its bundle committed (deleted by hand, say) is remade
    from the bundle that holds exactly that policy."""
    step = self.restored_step
    if step is None or step != self.train_step:
      return
    self.export_if_missing(f"The export of step {step} is missing: writing it from checkpoint "
                           f"bundle {step}.")

  def export_if_missing(self, warning: str | None = None) -> None:
    """Exports the current step if it is on the export grid and has no export
    (a trigger cut short by an error skipped it), logging `warning` first."""
    step = self.train_step
    grid = policy_index.export_grid(self.run_state.export_schedule, step)
    policy_dir = os.path.join(self.root_dir, layout.POLICY_DIR)
    if step in grid and policy_index.missing_exports(policy_dir, [step]):
      if warning:
        logging.warning(warning)
      self.export()

  def _export_metadata(self, step: int) -> dict[str, Any]:
    return exporter.export_metadata(
        env_steps=self.run_state.env_steps, episodes=self.run_state.episodes,
        eval_average_return=self.run_state.eval_return_at(step),
        config_text=self.spec.run_config.text)

  def checkpoint(self, background: bool = False) -> None:
    """Commits a bundle at the current train step (no-op if one exists).
    `background`: returns once every part but the replay is written; a thread
    writes the replay and commits (the next checkpoint, or `close`, waits for it).

    Raises:
      RunDirError: the bundle (or the previous one, in the background) could not
        be written (disk full, permissions). Its partial files are removed; the
        bundle before it stays intact.
    """
    self.committer.commit(self.train_step, background=background)

  def _trigger_checkpoint(self) -> None:
    """The checkpoint trigger's: in the background if the spec says so."""
    self.checkpoint(background=self.spec.background_checkpoints)

  def wait_for_commit(self) -> None:
    """Waits for a bundle being committed in the background; raises its error."""
    self.committer.wait()

  def flush(self) -> None:
    """Writes out the summaries and waits for the exports."""
    self.exporter.wait()
    self.learner.train_summary_writer.flush()
    self.evaluator.summary_writer.flush()
    self.collector.summary_writer.flush()

  def close(self) -> None:
    if self.committer is not None:
      self.committer.close()
    try:
      if self.exporter is not None:
        self.exporter.close()
    finally:
      self.replay.close()

