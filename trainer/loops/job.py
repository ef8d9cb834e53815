"""Assembles a training job from gin-configured parts and runs it to its total.

`train` is the gin configurable `train.*` of every config: it builds the
environments and the agent, takes the run directory's lock, restores the
latest committed bundle if there is one, and hands over to `Job`, which owns
the collect loop, the TF-Agents Learner and its triggers.

All counts are totals across restarts: `train.num_iterations` is the train
step at which the job ends, however many times it was interrupted.
"""

import contextlib
import dataclasses
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from typing import Any

import gin
import numpy as np
import tensorflow as tf
from absl import logging
from tf_agents.agents import tf_agent
from tf_agents.environments import py_environment
from tf_agents.policies import random_py_policy
from tf_agents.train.utils import train_utils

from trainer.acting import envs
from trainer.acting.collector import Collector
from trainer.acting.evaluator import Evaluator
from trainer.checkpoint.bundle_store import Bundle, BundleStore
from trainer.checkpoint.run_state import RunState
from trainer.config import gin_config
from trainer.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError, RunDirError, TrainingError
from trainer.export import exporter, policy_index
from trainer.learning import learner
from trainer.learning.triggers import GridTrigger, ProgressLogger
from trainer.replay.base import Replay, ReplaySaveError
from trainer.replay.uniform import create_uniform_replay
from trainer.rundir import fileio, layout
from trainer.rundir.run_lock import RunLock
from trainer.rundir.signals import StopRequest


@dataclasses.dataclass(frozen=True)
class Settings:
  """The job's knobs (`train.*` in gin), validated. Steps are learner train steps."""

  num_iterations: int
  checkpoint_interval: int
  policy_export_interval: int
  eval_interval: int
  eval_episodes: int
  initial_collect_steps: int
  collect_envs: int
  collect_steps_per_iteration: int
  train_steps_per_iteration: int
  batch_size: int
  keep_checkpoints: int
  summary_interval: int
  log_interval: int
  seed: int
  exports_keep_last: int
  exports_keep_best: int
  exports_keep_every: int

  _MAY_BE_ZERO = ("eval_interval", "initial_collect_steps", "summary_interval",
                  "exports_keep_best", "exports_keep_every", "seed")
  _MAX_SEED = 2**32 - 1  # Gym and NumPy take 32-bit seeds

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"train.{field.name} must be an int, got {value!r}")
      if value < 0 or (value == 0 and field.name not in self._MAY_BE_ZERO):
        allowed = ">= 0" if field.name in self._MAY_BE_ZERO else "> 0"
        raise ConfigError(f"train.{field.name} must be {allowed}, got {value}")
    if self.seed > self._MAX_SEED:
      raise ConfigError(f"train.seed must be at most {self._MAX_SEED}, got {self.seed}")
    if self.collect_steps_per_iteration % self.collect_envs:
      raise ConfigError(
          f"train.collect_steps_per_iteration={self.collect_steps_per_iteration} must be a "
          f"multiple of train.collect_envs={self.collect_envs} (each collect step steps every "
          "environment once)")

  @property
  def intervals(self) -> list[int]:
    return [i for i in (self.checkpoint_interval, self.policy_export_interval,
                        self.eval_interval, self.log_interval) if i > 0]

  def steps_until_next_event(self, step: int, end: int) -> int:
    """Train steps for the next Learner.run call: to the end of the current
    chunk (chunks are the multiples of `train_steps_per_iteration`), cut short
    so that the call ends exactly on the next interval or on `end`."""
    chunk = self.train_steps_per_iteration
    steps = min(chunk - step % chunk, end - step)
    for interval in self.intervals:
      steps = min(steps, interval - step % interval)
    return steps

  def collects_before(self, step: int) -> bool:
    """Whether `collect_steps_per_iteration` env steps are collected before
    training from `step`: once per chunk, at its start, so the collect:train
    ratio is exact whatever the intervals that cut a chunk into calls (and
    after a resume mid-chunk, that chunk's collect is already in the replay)."""
    return step % self.train_steps_per_iteration == 0


@dataclasses.dataclass(frozen=True)
class JobSpec:
  """What `train.*` in gin configures: the parts' builders and the knobs."""

  root_dir: str
  run_config: gin_config.RunConfig
  settings: Settings
  environment_fn: Callable[[], py_environment.PyEnvironment]
  agent_fn: Callable[..., tf_agent.TFAgent]
  replay_fn: Callable[..., Replay]


@gin.configurable("train", denylist=["root_dir", "run_config"])
def configure_job(
    root_dir: str,
    run_config: gin_config.RunConfig,
    *,
    environment_fn: Callable[[], py_environment.PyEnvironment] = gin.REQUIRED,
    agent_fn: Callable[..., tf_agent.TFAgent] = gin.REQUIRED,
    replay_fn: Callable[..., Replay] = create_uniform_replay,
    num_iterations: int = gin.REQUIRED,
    checkpoint_interval: int = gin.REQUIRED,
    policy_export_interval: int = gin.REQUIRED,
    eval_interval: int = gin.REQUIRED,
    eval_episodes: int = 10,
    initial_collect_steps: int = 1000,
    collect_envs: int = 1,
    collect_steps_per_iteration: int = 1,
    train_steps_per_iteration: int = 1,
    batch_size: int = 64,
    keep_checkpoints: int = 3,
    summary_interval: int = 1000,
    log_interval: int = 1000,
    seed: int = 0,
    exports_keep_last: int = 5,
    exports_keep_best: int = 3,
    exports_keep_every: int = 0,
) -> JobSpec:
  """The job as configured in gin (`train.*`), validated.

  Args:
    root_dir: the run directory.
    run_config: the parsed config, saved into the run directory.
    environment_fn: builds one Python environment (called for collect and eval).
    agent_fn: `fn(time_step_spec, action_spec, train_step) -> TFAgent`.
    replay_fn: a replay builder from `trainer.replay`.
    num_iterations: total learner train steps of the job.
    checkpoint_interval: train steps between checkpoint bundles.
    policy_export_interval: train steps between policy exports.
    eval_interval: train steps between evaluations; 0 disables them.
    eval_episodes: greedy episodes per evaluation.
    initial_collect_steps: replay items collected with a random policy before
      training; skipped when the restored replay holds that many already.
    collect_envs: environments collected from side by side (one policy call
      per step for all of them).
    collect_steps_per_iteration: env steps collected before each Learner call,
      in all environments together.
    train_steps_per_iteration: train steps per Learner call.
    batch_size: transitions (sequences) per train step.
    keep_checkpoints: committed bundles kept on disk (the newest ones).
    summary_interval: train steps between TensorBoard summaries; 0 disables.
    log_interval: train steps between progress lines.
    seed: seeds Python, NumPy, TensorFlow and the environments.
    exports_keep_last: the newest exports kept in `policies/`.
    exports_keep_best: the best exports (by eval return) kept as well.
    exports_keep_every: also keep every export whose step is a multiple of
      this (0: none). The exports LATEST and BEST name are always kept.
  """
  settings = Settings(
      num_iterations=num_iterations, checkpoint_interval=checkpoint_interval,
      policy_export_interval=policy_export_interval, eval_interval=eval_interval,
      eval_episodes=eval_episodes, initial_collect_steps=initial_collect_steps,
      collect_envs=collect_envs,
      collect_steps_per_iteration=collect_steps_per_iteration,
      train_steps_per_iteration=train_steps_per_iteration, batch_size=batch_size,
      keep_checkpoints=keep_checkpoints, summary_interval=summary_interval,
      log_interval=log_interval, seed=seed, exports_keep_last=exports_keep_last,
      exports_keep_best=exports_keep_best, exports_keep_every=exports_keep_every)
  return JobSpec(root_dir=root_dir, run_config=run_config, settings=settings,
                 environment_fn=environment_fn, agent_fn=agent_fn, replay_fn=replay_fn)


def train(root_dir: str, run_config: gin_config.RunConfig, stop: StopRequest | None = None) -> int:
  """Runs (or resumes) the job configured in gin; returns the exit code.

  `stop` is the process's signal handler when the caller installed one
  before the slow imports (as `trainer.train` does).
  """
  spec = configure_job(root_dir, run_config)
  if _already_complete(spec):
    return EXIT_OK
  if stop is not None and stop.requested:
    logging.warning("Stopped before the job started (nothing new to commit); exiting with "
                    "code %d so the scheduler requeues the job.", EXIT_PREEMPTED)
    return EXIT_PREEMPTED
  with open_job(spec, stop) as job:
    return job.run()


def _already_complete(spec: JobSpec) -> bool:
  """True if the newest bundle reached the total, verifies, and its export exists.

  Read only: anything less (a damaged bundle, a missing final export) goes
  through the job, which takes the lock, falls back or writes the export.
  """
  store = BundleStore(spec.root_dir)
  latest, total = store.latest(), spec.settings.num_iterations
  if latest is None or latest.step < total:
    return False
  problem = store.verify(latest)
  if problem is not None:
    logging.error("The newest checkpoint bundle %d is damaged (%s): resuming from an older one "
                  "to finish the run.", latest.step, problem)
    return False
  policy_dir = os.path.join(spec.root_dir, layout.POLICY_DIR)
  if policy_index.missing_exports(policy_dir, [latest.step]):
    logging.warning("The final export (step %d) is missing: writing it from checkpoint bundle "
                    "%d.", latest.step, latest.step)
    return False
  logging.info("Already complete: the latest checkpoint is at step %d of %d.", latest.step, total)
  return True


@contextlib.contextmanager
def open_job(spec: JobSpec, stop: StopRequest | None = None) -> Iterator["Job"]:
  """Builds the job and holds the run directory's lock while it is open.

  The environments and the agent are built (and validated) before anything in
  the run directory is touched. Without a `stop` from the caller, the job
  installs its own signal handlers for its lifetime.
  """
  own = stop is None
  if own:
    stop = StopRequest()  # From the start: a SIGTERM while building still ends in a clean exit 75.
    stop.install()
  try:
    with _build_job(spec, stop) as job:
      yield job
  finally:
    if own:
      stop.uninstall()


@contextlib.contextmanager
def _build_job(spec: JobSpec, stop: StopRequest) -> Iterator["Job"]:
  settings = spec.settings
  latest = BundleStore(spec.root_dir).latest()
  _seed_globals(settings.seed, latest.step if latest else 0)
  collect_envs = [spec.environment_fn() for _ in range(settings.collect_envs)]
  for i, env in enumerate(collect_envs):
    envs.seed_environment(env, settings.seed if i == 0 else envs.derived_seed(settings.seed, i))
  collect_env = collect_envs[0]
  # One environment per eval episode: the episodes of an eval run side by side.
  eval_envs = [spec.environment_fn() for _ in range(settings.eval_episodes)]
  train_step = train_utils.create_train_step()
  agent = spec.agent_fn(collect_env.time_step_spec(), collect_env.action_spec(), train_step)
  # The Learner traces its loop with autograph, which would convert the agent's
  # whole train step as well: seconds of start-up for graph code that TF-Agents
  # itself runs unconverted (`common.function` defaults to autograph=False).
  agent.train = tf.autograph.experimental.do_not_convert(agent.train)
  # Exports are written from a copy, so training never waits for them.
  shadow_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="export_train_step")
  shadow = spec.agent_fn(collect_env.time_step_spec(), collect_env.action_spec(), shadow_step)
  created = not os.path.exists(spec.root_dir)
  os.makedirs(spec.root_dir, exist_ok=True)
  lock = RunLock(spec.root_dir)
  lock.acquire()
  try:
    job = Job(spec.root_dir, settings, spec.run_config, collect_envs=collect_envs,
              eval_envs=eval_envs, agent=agent, train_step=train_step, replay_fn=spec.replay_fn,
              stop=stop, export_agent=(shadow, shadow_step))
  except ConfigError:
    lock.release()
    if created:  # A bad config leaves no trace of a run that never started.
      shutil.rmtree(spec.root_dir, ignore_errors=True)
    raise
  except BaseException:
    lock.release()
    raise
  try:
    gin_config.save(spec.root_dir, spec.run_config)
    yield job
  finally:
    job.close()
    lock.release()


def _seed_globals(seed: int, step: int) -> None:
  """Seeds the global generators; a resumed job re-seeds from its step."""
  mixed = (seed * 1_000_003 + step) % (2**31)
  random.seed(mixed)
  np.random.seed(mixed)
  tf.random.set_seed(mixed)


class Job:
  """One process's share of a run: restore, collect, train, checkpoint, export."""

  def __init__(self, root_dir: str, settings: Settings, run_config: gin_config.RunConfig, *,
               collect_envs: list[py_environment.PyEnvironment],
               eval_envs: list[py_environment.PyEnvironment], agent: tf_agent.TFAgent,
               train_step: tf.Variable, replay_fn: Callable[..., Replay], stop: StopRequest,
               export_agent: tuple[tf_agent.TFAgent, tf.Variable]):
    self._root = root_dir
    self._settings = settings
    self._run_config = run_config
    self._collect_envs = collect_envs
    self._agent = agent
    self._train_step = train_step
    self._stop = stop
    self._export_agent = export_agent
    self._exporter: exporter.PolicyExporter | None = None
    self._store = BundleStore(root_dir, keep=settings.keep_checkpoints)
    # Read only: a lost run is refused, and a bad config found while building
    # the replay leaves the run directory as it was.
    bundle, damaged = self._store.resume_point()
    self._restored_step = bundle.step if bundle else None
    # Eval environments are seeded afresh at each eval; only the collect ones carry state.
    self._run_state = RunState(collect_envs)
    self._collector: Collector | None = None
    self._iterator = None  # the Learner's, made when training starts
    self.export_stalls: list[float] = []  # seconds the loop waited per export
    self._replay = replay_fn(
        agent.collect_data_spec, sequence_length=agent.train_sequence_length,
        root_dir=root_dir, restore_dir=bundle.replay_dir if bundle else None,
        num_envs=len(collect_envs))
    try:
      if settings.batch_size > self._replay.capacity:
        raise ConfigError(f"train.batch_size={settings.batch_size} exceeds the replay capacity "
                          f"{self._replay.capacity}; raise the capacity or lower the batch size")
      # The first writes: damaged bundles aside, leftovers of crashes removed.
      self._store.settle(damaged)
      if bundle and damaged:  # TF's pointer named a bundle now set aside
        self._store.point_tf_state_at(bundle.step)
      self._build(bundle, eval_envs)
    except BaseException:
      self.close()  # stops an in-process Reverb server and the export thread
      raise

  def _build(self, bundle: Bundle | None, eval_envs: list[py_environment.PyEnvironment]) -> None:
    """Builds and restores everything that stands on the replay."""
    settings, root_dir, agent, train_step = (
        self._settings, self._root, self._agent, self._train_step)
    if bundle:
      self._run_state.restore(bundle)
    self._run_state.follow_export_interval(int(train_step.numpy()) if bundle is None else bundle.step,
                                           settings.policy_export_interval)
    self._agent_checkpoint = tf.train.Checkpoint(agent=agent, train_step=train_step)
    self._evaluator = Evaluator(root_dir, eval_envs, agent, train_step, self._run_state,
                                seed=settings.seed + 1)
    # TF-Agents' Learner restores the newest checkpoint of its own directory;
    # given one that never holds any, it restores nothing. Summaries go to the
    # run's train/ as before.
    self._learner = learner.Learner(
        os.path.join(root_dir, layout.LEARNER_DIR), train_step, agent,
        experience_dataset_fn=None, triggers=self._triggers(), checkpoint_interval=0,
        summary_interval=settings.summary_interval, run_optimizer_variable_init=True,
        summary_root_dir=root_dir)
    if bundle:
      self._restore_agent(bundle)
    # After the restore: summaries continue from the restored train step.
    self._collector = Collector(
        self._collect_envs, train_step, observers=[self._replay.observer],
        metrics=self._run_state.collect_stats,
        summary_dir=os.path.join(root_dir, layout.TRAIN_DIR),
        summary_interval=settings.summary_interval)
    shadow_agent, shadow_step = self._export_agent
    self._exporter = exporter.PolicyExporter(
        os.path.join(root_dir, layout.POLICY_DIR), live_agent=agent, shadow_agent=shadow_agent,
        train_step=train_step, shadow_train_step=shadow_step, metadata_fn=self._export_metadata,
        retention=policy_index.Retention(settings.exports_keep_last, settings.exports_keep_best,
                                         settings.exports_keep_every))
    # Exports above the resumed step came from training that is now redone.
    self._exporter.supersede_after(self._restored_step or 0)
    self._exporter.prebuild()

  @property
  def agent(self) -> tf_agent.TFAgent:
    return self._agent

  @property
  def replay(self) -> Replay:
    return self._replay

  @property
  def run_state(self) -> RunState:
    return self._run_state

  @property
  def train_step(self) -> int:
    return int(self._train_step.numpy())

  # --- restore ---------------------------------------------------------------

  def _restore_agent(self, bundle: Bundle) -> None:
    """The one restore of the agent, from the bundle. After the Learner is
    built: the Learner creates the optimizer's slot variables, and its
    `agent.initialize()` copies the online network into the target network,
    which would overwrite a restored target."""
    prefix = layout.agent_checkpoint_prefix(self._root, bundle.step)
    self._agent_checkpoint.read(prefix).assert_existing_objects_matched()
    step = int(self._train_step.numpy())
    if step != bundle.step:
      raise RuntimeError(f"restored train step {step} but bundle {bundle.path} is step {bundle.step}")
    for trigger in self._learner.triggers:
      if hasattr(trigger, "set_start"):
        trigger.set_start(step)
    logging.info("Resumed from step %d: replay size %d, env steps %d, episodes %d (%s).",
                 step, self._replay.size(), self._run_state.env_steps,
                 self._run_state.episodes, bundle.path)

  # --- triggers --------------------------------------------------------------

  def _triggers(self) -> list:
    s = self._settings
    triggers = []
    if s.eval_interval:
      triggers.append(GridTrigger(s.eval_interval, self._evaluator))
    triggers.append(GridTrigger(s.policy_export_interval, self._export))
    triggers.append(GridTrigger(s.checkpoint_interval, self.checkpoint))
    triggers.append(ProgressLogger(s.log_interval, s.num_iterations, self._status))
    return triggers

  def _status(self) -> dict[str, Any]:
    return {"train_step": int(self._train_step.numpy()), "env_steps": self._run_state.env_steps,
            "episodes": self._run_state.episodes,
            "last_eval_return": self._run_state.last_eval_return}

  def _export(self) -> None:
    stall = self._exporter.export(self._run_state.env_steps)
    self.export_stalls.append(stall)

  def _export_missing_at_resume(self) -> None:
    """Writes the export of the restored step if it is due and missing: an
    export lost after its bundle committed (deleted by hand, say) is remade
    from the bundle that holds exactly that policy."""
    step = self._restored_step
    if step is None or step != self.train_step:
      return
    grid = policy_index.export_grid(self._run_state.export_schedule, step)
    policy_dir = os.path.join(self._root, layout.POLICY_DIR)
    if step in grid and policy_index.missing_exports(policy_dir, [step]):
      logging.warning("The export of step %d is missing: writing it from checkpoint bundle %d.",
                      step, step)
      self._export()

  def _export_metadata(self, step: int) -> dict[str, Any]:
    return exporter.export_metadata(
        env_steps=self._run_state.env_steps, episodes=self._run_state.episodes,
        eval_average_return=self._run_state.eval_return_at(step), config_text=self._run_config.text)

  def checkpoint(self) -> None:
    """Commits a bundle at the current train step (no-op if one exists).

    Raises:
      RunDirError: the bundle could not be written (disk full, permissions).
        Its partial files are removed; the previous bundle stays intact.
    """
    step = int(self._train_step.numpy())
    latest = self._store.latest()
    if latest is not None and latest.step == step:
      return
    start = time.monotonic()
    try:
      summary = self._write_bundle(step)
    except exporter.ExportError as e:
      self._store.abandon(step)
      raise RunDirError(
          f"cannot write the policy export of step {e.step} in {self._root} ({e.reason}); no "
          f"checkpoint past it was committed (the last is {latest.step if latest else 'none'}) "
          "and earlier exports are intact. Free space or fix permissions, then run the same "
          "command: it resumes and writes it") from e
    except (OSError, tf.errors.OpError, ReplaySaveError) as e:
      self._store.abandon(step)
      reason = fileio.write_error_reason(e)
      raise RunDirError(
          f"cannot write checkpoint bundle {step} in {self._root} ({reason}); the previous "
          f"bundle ({latest.step if latest else 'none'}) is intact. Free space or fix "
          "permissions, then run the same command to resume") from e
    logging.info("Committed checkpoint bundle at step %d (replay %d, env steps %d) in %.2f s.",
                 step, summary["replay_size"], summary["env_steps"], time.monotonic() - start)

  def _write_bundle(self, step: int) -> dict[str, Any]:
    path = self._store.begin(step)
    self._agent_checkpoint.write(layout.agent_checkpoint_prefix(self._root, step))
    self._replay.save(os.path.join(path, layout.REPLAY_SUBDIR))
    summary = self._run_state.summary(step, self._replay.size(), self._settings.num_iterations)
    self._run_state.save(path, summary)
    with open(os.path.join(path, layout.OPERATIVE_CONFIG), "w") as f:
      f.write(gin.operative_config_str())
    # The export invariant: every export at or below a committed step is on disk.
    # The parts above were written while the export thread worked; an export that
    # failed raises here, and nothing past it commits.
    self._exporter.wait()
    self._store.commit(step, summary)
    return summary

  # --- the loop --------------------------------------------------------------

  def run(self) -> int:
    self._export_missing_at_resume()
    self.initial_collect()
    if not self._stop.requested:
      self._train_loop()
    if self._stop.requested:
      return self._stop_now()
    self._finish()
    return EXIT_OK

  def initial_collect(self) -> None:
    """Fills the replay with a random policy up to `train.initial_collect_steps`
    (skipped when the restored replay already holds that many)."""
    target = self._settings.initial_collect_steps
    if self._replay.size() >= target:
      if target:
        logging.info("Replay holds %d items (>= %d): skipping the initial collect.",
                     self._replay.size(), target)
      return
    logging.info("Initial collect: random policy until the replay holds %d items.", target)
    env = self._collect_envs[0]
    self._collector.use(random_py_policy.RandomPyPolicy(
        env.time_step_spec(), env.action_spec(), outer_dims=(len(self._collect_envs),)))
    while (size := self._replay.size()) < target and not self._stop.requested:
      self._collector.run(steps=min(target - size, 250))  # checks for a stop between chunks

  def _train_loop(self) -> None:
    logging.info("Training from step %d to %d.", self.train_step, self._settings.num_iterations)
    self.train(until_step=self._settings.num_iterations)

  def train(self, until_step: int) -> None:
    """Collects and trains (triggers included) until the train step reaches
    `until_step` or a stop is requested."""
    s = self._settings
    if self._iterator is None:
      self._collector.use(self._agent.collect_policy)
      self._iterator = self._replay.iterator(s.batch_size)
    step = int(self._train_step.numpy())
    while step < until_step and not self._stop.requested:
      if s.collects_before(step):
        self._collector.run(s.collect_steps_per_iteration)
      iterations = s.steps_until_next_event(step, until_step)
      self._replay.prepare(iterations)
      self._learn(step, iterations)
      step = int(self._train_step.numpy())

  def _learn(self, step: int, iterations: int) -> None:
    try:
      self._learner.run(iterations=iterations, iterator=self._iterator)
    except tf.errors.InvalidArgumentError as e:
      if "Loss is inf or nan" not in e.message:
        raise
      latest = self._store.latest()
      raise TrainingError(
          f"training diverged between train steps {step} and {step + iterations}: the loss "
          f"became inf or nan. Nothing was committed after bundle "
          f"{latest.step if latest else '(none)'}, which is intact. Lower the agent's learning "
          "rate or reward scale (e.g. create_dqn_agent.learning_rate, "
          "create_dqn_agent.reward_scale_factor) and resume with --allow_config_change, or "
          "start a new --root_dir") from e

  def _finish(self) -> None:
    step = int(self._train_step.numpy())
    if self._settings.eval_interval and self._run_state.eval_return_at(step) is None:
      self._evaluator()
    self._export()
    self.checkpoint()
    self._exporter.wait()
    self._flush()
    logging.info("Training complete at step %d (env steps %d, last eval return %s).", step,
                 self._run_state.env_steps, self._run_state.last_eval_return)

  def _stop_now(self) -> int:
    self.checkpoint()
    self._exporter.wait()
    self._flush()
    logging.warning("Stopped at step %d after committing a checkpoint; exiting with code %d "
                    "so the scheduler requeues the job.", int(self._train_step.numpy()),
                    EXIT_PREEMPTED)
    return EXIT_PREEMPTED

  def _flush(self) -> None:
    self._learner.train_summary_writer.flush()
    self._evaluator.summary_writer.flush()
    if self._collector is not None:
      self._collector.summary_writer.flush()

  def close(self) -> None:
    try:
      if self._exporter is not None:
        self._exporter.close()
    finally:
      self._replay.close()
