"""Quiet logs: what a command prints is ours, plus errors; `--verbosity=1` brings back the rest.

By default a command shows the trainer's own lines (config, start-up, progress,
evals, checkpoints, exports, warnings the user can act on) and errors from
anywhere. It hides what nobody running the trainer can act on: TensorFlow's
C++ start-up lines (cuDNN/cuFFT/cuBLAS factory registration on a CPU machine),
Gym's maintenance banner (this project pins gym 0.23, TF-Agents' pin),
TensorFlow's deprecation notices and Python warnings, and other libraries'
INFO/WARNING lines (TF-Agents' PolicySaver writes ~30 per export). absl's
`--verbosity=1` (or higher) shows all of it.

`before_imports` must run before TensorFlow and Gym are imported;
`after_flags` once absl has parsed the flags.
"""

import logging
import os
import sys
import warnings

from trainer.compat import gym as compat_gym

_TRAINER_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def verbose(argv: list[str]) -> bool:
  """Whether `--verbosity` (or `-v`) asks for more than INFO, as absl reads it."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith(("--verbosity=", "-v=")):
      value = arg.split("=", 1)[1]
    elif arg in ("--verbosity", "-v") and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


def before_imports(argv: list[str] | None = None) -> None:
  argv = sys.argv if argv is None else argv
  if verbose(argv):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
    return
  # 3: C++ errors too; the registration lines are logged at ERROR on every CPU start.
  # A real failure still reaches Python as an exception.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  compat_gym.hide_import_notice()
  warnings.filterwarnings("ignore")


class OursOrErrors(logging.Filter):
  """Keeps records from the trainer's own code, and errors from anywhere."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or record.pathname.startswith(_TRAINER_DIR)


def after_flags(verbosity: int) -> None:
  """Installs the filter on absl's handler unless `verbosity` >= 1."""
  if verbosity >= 1:
    return
  from absl import logging as absl_logging

  absl_logging.get_absl_handler().addFilter(OursOrErrors())
  # TensorFlow's logger has a handler of its own ("INFO:tensorflow:Assets written ...").
  logging.getLogger("tensorflow").addFilter(OursOrErrors())
  if "tensorflow" in sys.modules:  # loaded by the command (status and plot never load it)
    from trainer.compat import tf as compat_tf

    compat_tf.silence_deprecation_notices()  # a notice per deprecated call
