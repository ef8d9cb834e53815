"""The shared shell of the command-line tools: one error line, the right exit code."""

import os
import sys
from collections.abc import Callable

from absl import app, flags, logging

from trainer import errors
from trainer.cli import args, quiet


def run(main: Callable[[list[str]], int], *, prog: str, verbosity: int = logging.INFO,
        exit_at_once: bool = False) -> None:
  """Runs an absl `main`; a TrainerError becomes `PROG: error: ...` and its exit code,
  and so does a flag absl refuses (`args`).

  `verbosity` is the command's default; absl's `--verbosity` overrides it, and
  `--verbosity=1` also shows other libraries' lines (see `quiet`).
  `exit_at_once`: once `main` is done (its state written), the process exits
  without waiting for library threads: a Reverb sampler or writer blocked on a
  rate limiter would hold the interpreter's shutdown for as long as it waits.
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

  def exiting(argv: list[str]) -> int:
    code = guarded(argv)
    logging.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

  module = getattr(main, "func", main).__module__  # the command's module: its flags, its doc
  app.run(exiting if exit_at_once else guarded, flags_parser=args.flags_parser(prog, module))
