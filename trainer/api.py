"""`trainer.run`: a training job from Python (a notebook, a script), as `trainer.train` runs it.

  import trainer
  result = trainer.run("runs/dqn", gin_files=["configs/dqn_cartpole.gin"],
                       bindings=["train.num_iterations = 5000"])

The guarantees are the command's: it resumes from the newest committed bundle,
refuses a config that changes the experiment unless `allow_config_change`, and
refuses a run directory that another job holds. Instead of an exit code it
returns a `RunResult` (finished, or stopped by a signal after committing a
bundle) or raises the `trainer.errors.TrainerError` subclass whose `exit_code`
the command would exit with, its message one line naming the fix.

Each call parses its config afresh (gin's bindings are cleared before and
after), so a notebook can call it again: on a finished run it returns at once.
"""

import contextlib
import dataclasses
import logging as std_logging
import os
import sys
import threading
from collections.abc import Sequence

# Hidden as the commands hide them (trainer/cli/quiet.py), Python's warnings aside (a
# notebook's own): TensorFlow's C++ start-up lines and Gym's banner, printed at import.
if "tensorflow" not in sys.modules:
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from trainer.compat import gym as compat_gym  # noqa: E402  (imports no library)

compat_gym.hide_import_notice()

import gin  # noqa: E402
from absl import logging  # noqa: E402

from trainer.checkpoint.bundle_store import BundleStore  # noqa: E402
from trainer.cli import quiet, registry  # noqa: E402, F401  (registry: what configs name)
from trainer.config import gin_config  # noqa: E402
from trainer.errors import EXIT_OK  # noqa: E402
from trainer.loops import job  # noqa: E402
from trainer.rundir.signals import StopRequest  # noqa: E402
from trainer.storage import urls  # noqa: E402

# The commands' filter (the trainer's lines and errors), on the loggers themselves: absl's
# handler is not the one that prints where absl's app did not start (a notebook).
_QUIET = quiet.OursOrErrors()


@dataclasses.dataclass(frozen=True)
class RunResult:
  """What a call of `run` ended with, as of the run's newest committed bundle.

  Attributes:
    exit_code: `trainer.train`'s code: 0 the run reached `train.num_iterations`
      (now or before), 75 a SIGINT/SIGTERM stopped it after committing a bundle
      (call `run` again to resume).
    train_step, env_steps, episodes: the counters of the newest committed bundle
      (0 when none was committed yet).
    num_iterations: the run's total, in train steps.
    last_eval_return: the newest evaluation's average return, or None.
  """

  exit_code: int
  train_step: int
  num_iterations: int
  env_steps: int
  episodes: int
  last_eval_return: float | None

  @property
  def complete(self) -> bool:
    return self.exit_code == EXIT_OK


def run(root_dir: str, gin_files: Sequence[str] = (), bindings: Sequence[str] = (), *,
        allow_config_change: bool = False, verbosity: int = logging.INFO) -> RunResult:
  """Runs (or resumes) the job of `gin_files` then `bindings` in `root_dir`.

  Without `gin_files` it resumes with the run's saved config (`bindings` on
  top of it). Configurables that the config names must be registered before the
  call: the project's are, and a `@gin.configurable` of your own (an
  environment builder for `train.environment_fn`, say) once its module ran.

  While it runs, the first SIGINT (Ctrl-C, a notebook's "interrupt") or SIGTERM
  finishes the iteration, commits a bundle and returns with exit_code 75; a
  second one raises KeyboardInterrupt at once (the last committed bundle stays
  valid). The process's own handlers are back when it returns. Called from
  another thread than the main one, it installs no handlers.

  Args:
    root_dir: the run directory: a path, or gs://BUCKET/PATH (docs/object_storage.md).
    gin_files: gin files, parsed in order.
    bindings: gin bindings applied after the files.
    allow_config_change: resume even though the config changes the experiment.
    verbosity: absl's verbosity for the run's lines (`logging.INFO`: the
      trainer's own lines, as the commands print them; 1 adds every library's;
      `logging.WARNING`: warnings and errors only).

  Raises:
    trainer.errors.ConfigError: the config or arguments are refused (the
      command's exit 2); nothing was written.
    trainer.errors.RunDirError: the run directory cannot be used: another job
      holds it, a write failed, nothing verifies (exit 3).
    trainer.errors.TrainingError: training diverged; the last bundle is intact (exit 1).
  """
  _set_verbosity(verbosity)
  stop = StopRequest(interrupt_on_second=True)
  if threading.current_thread() is threading.main_thread():
    stop.install()
  try:
    with _local(root_dir) as local:
      run_config = gin_config.load(local, list(gin_files), list(bindings),
                                   allow_config_change=allow_config_change)
      for change in run_config.changes:
        logging.info("Config change accepted: %s", change)
      code = job.train(local, run_config, stop=stop)
      return _result(local, code)
  finally:
    stop.uninstall()
    gin.clear_config()


def _local(root_dir: str):
  """The directory the job runs in: `root_dir`, or a gs:// run's staging directory (its
  lease held, its commits sealed in the bucket: trainer.storage)."""
  if urls.is_remote(root_dir):
    from trainer.storage import sessions

    return sessions.staged_job(root_dir)
  return contextlib.nullcontext(root_dir)


def _set_verbosity(verbosity: int) -> None:
  logging.set_verbosity(verbosity)
  for name in ("absl", "tensorflow"):
    logger = std_logging.getLogger(name)
    if verbosity < 1:
      logger.addFilter(_QUIET)  # once: adding the same filter again does nothing
    else:
      logger.removeFilter(_QUIET)


def _result(root_dir: str, code: int) -> RunResult:
  latest = BundleStore(root_dir).latest()
  summary = latest.summary if latest else {}
  return RunResult(exit_code=code, train_step=summary.get("train_step", 0),
                   num_iterations=summary.get("num_iterations", 0),
                   env_steps=summary.get("env_steps", 0), episodes=summary.get("episodes", 0),
                   last_eval_return=summary.get("last_eval_return"))
