"""Errors a user can act on, and the process exit codes (public contract)."""

# Exit codes of `python -m trainer.train`, documented in the README and docs/run_directory.md.
EXIT_OK = 0  # Finished: train.num_iterations reached (or already reached).
EXIT_CRASH = 1  # An unexpected error; the last committed bundle stays valid.
EXIT_USAGE = 2  # Bad command line or config; nothing was written.
EXIT_RUN_DIR = 3  # The run directory cannot be used (locked, damaged).
EXIT_PREEMPTED = 75  # Stopped by SIGTERM/SIGINT after committing a bundle: requeue.
# A second signal exits at once with 128 + the signal number.


class TrainerError(Exception):
  """An error with a one-line message that names the problem and the fix.

  `details`: lines shown under the message (a config diff, one change a line).
  """

  exit_code = EXIT_CRASH

  def __init__(self, message: str, details: tuple[str, ...] | list[str] = ()):
    super().__init__(message)
    self.details = tuple(details)


class ConfigError(TrainerError):
  """The command line or the gin config is wrong."""

  exit_code = EXIT_USAGE


class TrainingError(TrainerError):
  """Training itself failed (the loss diverged); the last committed bundle is intact."""

  exit_code = EXIT_CRASH


class RunDirError(TrainerError):
  """The run directory is unusable: unwritable, locked, or damaged."""

  exit_code = EXIT_RUN_DIR


def one_line(error: BaseException, limit: int | None = None) -> str:
  """An error's message squeezed onto one line (gin's and TensorFlow's span
  several), cut to `limit` characters."""
  text = " ".join(str(error).split())[:limit]
  return text or type(error).__name__
