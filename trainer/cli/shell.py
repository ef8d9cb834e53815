"""The shared shell of the command-line tools: one error line, the right exit code."""

import sys
from collections.abc import Callable

from absl import app, logging

from trainer import errors


def run(main: Callable[[list[str]], int], *, prog: str, verbosity: int = logging.INFO) -> None:
  """Runs an absl `main`; a TrainerError becomes `PROG: error: ...` and its exit code."""

  def guarded(argv: list[str]) -> int:
    logging.set_verbosity(verbosity)
    try:
      return main(argv)
    except errors.TrainerError as e:
      # gin appends "In call to configurable ..." lines; the first line is the message.
      sys.stderr.write(f"{prog}: error: {str(e).splitlines()[0]}\n")
      return e.exit_code

  app.run(guarded)
