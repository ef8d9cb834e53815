"""The shared shell of the command-line tools: one error line, the right exit code."""

import sys
from collections.abc import Callable

from absl import app, flags, logging

from trainer import errors
from trainer.cli import quiet


def run(main: Callable[[list[str]], int], *, prog: str, verbosity: int = logging.INFO) -> None:
  """Runs an absl `main`; a TrainerError becomes `PROG: error: ...` and its exit code.

  `verbosity` is the command's default; absl's `--verbosity` overrides it, and
  `--verbosity=1` also shows other libraries' lines (see `quiet`).
  """

  def guarded(argv: list[str]) -> int:
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(verbosity)
    quiet.after_flags(flags.FLAGS.verbosity if flags.FLAGS["verbosity"].present else 0)
    try:
      return main(argv)
    except errors.TrainerError as e:
      # gin appends "In call to configurable ..." lines; the first line is the message,
      # and an error's details (a config diff) follow it, one per line.
      sys.stderr.write(f"{prog}: error: {str(e).splitlines()[0]}\n")
      for line in getattr(e, "details", ()):
        sys.stderr.write(f"  {line}\n")
      return e.exit_code

  app.run(guarded)
