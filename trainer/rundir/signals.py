"""SIGTERM/SIGINT: stop at the next safe point; a second signal exits at once."""

import os
import signal
import sys
import time

from trainer.errors import EXIT_PREEMPTED


def _warn(message: str) -> None:
  """absl's warning when absl is loaded, else a plain stderr line.

  This module is imported first thing in a process, before absl (whose import
  would delay the handlers by tens of milliseconds); asking the `logging`
  module for absl's logger before absl sets its logger class would also strip
  every later absl line of its source location.
  """
  absl_logging = sys.modules.get("absl.logging")
  if absl_logging is not None and hasattr(absl_logging, "warning"):
    absl_logging.warning(message)
  else:
    sys.stderr.write(f"trainer: {message}\n")
    sys.stderr.flush()

_HANDLED = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
  """Turns the first SIGTERM or SIGINT into a flag the training loop polls.

  The loop finishes its iteration, commits a checkpoint bundle, flushes
  summaries and exits with `EXIT_PREEMPTED`. A second signal means "now":
  the process exits at once with 128 + signum; the last committed bundle stays
  valid because an unfinished one has no commit marker.

  A second SIGTERM within `DUPLICATE_WINDOW_S` counts as the same request:
  schedulers deliver one stop twice (Slurm signals every process of a job, and
  its batch script forwards the signal too). A second Ctrl-C (SIGINT) always
  means "now".
  """

  DUPLICATE_WINDOW_S = 2.0

  def __init__(self, action: str = "finishing this iteration, then committing a checkpoint and "
               "exiting", *, interrupt_on_second: bool = False):
    """`action`: what the process does on the first signal, for its log line.
    `interrupt_on_second`: a second signal raises KeyboardInterrupt in the main
    thread instead of ending the process (`trainer.run` in a notebook: the
    kernel lives on; the last committed checkpoint stays valid either way)."""
    self.action = action
    self._interrupt_on_second = interrupt_on_second
    self.signum: int | None = None
    self._first_at = 0.0
    self._previous = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  def install(self) -> None:
    for signum in _HANDLED:
      self._previous[signum] = signal.signal(signum, self._handle)

  def uninstall(self) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum: int, frame) -> None:
    del frame
    name = signal.Signals(signum).name
    now = time.monotonic()
    if (signum == self.signum == signal.SIGTERM
        and now - self._first_at < self.DUPLICATE_WINDOW_S):
      return  # One scheduler stop delivered twice.
    if self.signum is not None and self._interrupt_on_second:
      raise KeyboardInterrupt(f"second signal ({name}): stopped at once; the last committed "
                              "checkpoint stays valid")
    if self.signum is not None:
      # The code said last: the stop may already have logged "exiting with code 75".
      sys.stderr.write(f"trainer: second signal ({name}): exiting now with code {128 + signum}, "
                       f"not {EXIT_PREEMPTED}; the last committed checkpoint stays valid\n")
      sys.stderr.flush()
      os._exit(128 + signum)
    self.signum = signum
    self._first_at = now
    _warn(f"Received {name}: {self.action} (send it again to exit at once).")
