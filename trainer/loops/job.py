"""The job: built from gin-configured parts, restored from its newest bundle, closed.

`configure_job` (`loops.spec`) is the gin configurable `train.*` of every config: the parts'
builders (environment, agent, replay), the loop that drives them
(`train.loop`, e.g. `@off_policy_loop`) and the knobs (`Settings`). `train`
runs a configured job to its total: it takes the run directory's lock,
restores the newest committed bundle if there is one, builds the parts
(`loops.parts`), and hands the built `Job` (`loops.built_job`) to the loop.

All counts are totals across restarts: `train.num_iterations` is the train
step at which the job ends, however many times it was interrupted.
"""

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Callable, Iterator

import gin
import tensorflow as tf
from absl import logging

from trainer.checkpoint.bundle_store import BundleStore
from trainer.config import gin_config
from trainer.errors import EXIT_OK, EXIT_PREEMPTED, ConfigError
from trainer.loops import config_change, parts
from trainer.loops.built_job import Job
from trainer.loops.job_view import JobView
from trainer.loops.spec import JobSpec, Loop, configure_job
from trainer.policies import policy_index
from trainer.replay.base import Replay
from trainer.rundir import layout
from trainer.rundir.run_lock import RunLock
from trainer.rundir.signals import StopRequest


def train(root_dir: str, run_config: gin_config.RunConfig, stop: StopRequest | None = None, *,
          replay_fn: Callable[..., Replay] | None = None,
          loop: Callable[[JobView, StopRequest], Loop] | None = None,
          refresh_counters: Callable[[JobView], None] | None = None,
          background_checkpoints: bool = False) -> int:
  """Runs (or resumes) the job configured in gin; returns the exit code.

  `stop` is the process's signal handler when the caller installed one
  before the slow imports (as `trainer.train` does). A role swaps parts of
  the configured job (the learner role: `trainer.roles.learn`): `replay_fn`
  and `loop` replace `train.replay_fn` and `train.loop`; `refresh_counters`
  and `background_checkpoints` are the `JobSpec`'s.
  """
  spec = dataclasses.replace(
      configure_job(root_dir, run_config), refresh_counters=refresh_counters,
      background_checkpoints=background_checkpoints)
  if replay_fn is not None:
    spec = dataclasses.replace(spec, replay_fn=replay_fn)
  if loop is not None:
    spec = dataclasses.replace(spec, loop=loop)
  # First: a strategy over logical CPUs must split the CPU before TensorFlow starts.
  strategy = spec.strategy()
  store = BundleStore(root_dir, keep=spec.settings.keep_checkpoints)
  if run_config.refused:  # before anything is written, a finished run included
    config_change.check(run_config, store.resume_point()[0], root_dir,
                        replay_fn=spec.replay_fn, build_agent=lambda: parts.build_agent(spec),
                        derived=getattr(spec.loop, "derived_replay_bindings", None))
  for change in run_config.changes:  # only now: a refused change raised above
    logging.info("Config change accepted: %s", change)
  if _already_complete(spec, store):
    return EXIT_OK
  if stop is not None and stop.requested:
    logging.warning("Stopped before the job started (nothing new to commit); exiting with "
                    "code %d so the scheduler requeues the job.", EXIT_PREEMPTED)
    return EXIT_PREEMPTED
  with open_job(spec, stop, store=store, strategy=strategy) as job:
    logging.info("%s %s: %s, %s, %s; %d train steps in all.",
                 "Resuming" if job.restored_step is not None else "Starting", root_dir,
                 _name(spec.environment_fn), _name(spec.agent_fn), _name(spec.replay_fn),
                 spec.settings.num_iterations)
    return job.run()


def _name(builder) -> str:
  """A configured builder as a config names it (`create_gym_environment('CartPole-v0')`)."""
  name = getattr(builder, "__name__", type(builder).__name__)
  env_name = gin.query_parameter(f"{name}.name") if name == "create_gym_environment" else None
  return f"{name}({env_name!r})" if env_name else name


def _already_complete(spec: JobSpec, store: BundleStore) -> bool:
  """True if the newest bundle reached the total, verifies, and its export exists.

  Read only: anything less (a damaged bundle, a missing final export) goes
  through the job, which takes the lock, falls back or writes the export.
  """
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
def open_job(spec: JobSpec, stop: StopRequest | None = None, *,
             store: BundleStore | None = None,
             strategy: tf.distribute.Strategy | None = None) -> Iterator["Job"]:
  """Builds and restores the job, and holds the run directory's lock while it is open.

  A changed config is checked by `train` (`config_change`), not here.

  The environments and the agent are built (and validated) before anything in
  the run directory is touched. Without a `stop` from the caller, the job
  installs its own signal handlers for its lifetime.
  """
  own = stop is None
  if own:
    stop = StopRequest()  # From the start: a SIGTERM while building still ends in a clean exit 75.
    stop.install()
  store = store or BundleStore(spec.root_dir, keep=spec.settings.keep_checkpoints)
  strategy = strategy or spec.strategy()
  try:
    with _locked_job(spec, stop, store, strategy) as job:
      yield job
  finally:
    if own:
      stop.uninstall()


@contextlib.contextmanager
def _locked_job(spec: JobSpec, stop: StopRequest, store: BundleStore,
                strategy: tf.distribute.Strategy) -> Iterator["Job"]:
  # Read only: a lost run is refused, and a bad config found while building
  # leaves the run directory as it was.
  bundle, damaged = store.resume_point()
  agents = parts.build_parts(spec, strategy, resume_step=bundle.step if bundle else 0)
  replicas = strategy.num_replicas_in_sync
  if spec.settings.batch_size % replicas:
    raise ConfigError(
        f"train.batch_size={spec.settings.batch_size} must be a multiple of the strategy's "
        f"{replicas} replicas (each trains on its share of every step's batch): set it to "
        f"{max(replicas, spec.settings.batch_size // replicas * replicas)}")
  check_config = getattr(spec.loop, "check_config", None)
  if check_config is not None:  # what the loop needs of the parts, before any write
    check_config(spec.settings, agents.agent, spec.replay_fn, strategy)
  created = not os.path.exists(spec.root_dir)
  os.makedirs(spec.root_dir, exist_ok=True)
  lock = RunLock(spec.root_dir)
  lock.acquire()
  try:
    job = Job(spec, store, agents, stop, bundle=bundle, damaged=damaged,
              live_step=lock.note_step)
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
