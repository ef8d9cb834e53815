"""Learner triggers that fire on a fixed grid of train steps.

TF-Agents' `IntervalTrigger` fires `interval` steps after it last fired, so an
emergency checkpoint at step 1234 would shift every later event. These fire
when the step crosses a multiple of `interval`, so a resumed run evaluates,
exports and checkpoints at the same steps as an uninterrupted one. They follow
the Learner's trigger protocol: `trigger(train_step, force_trigger=False)` and
`set_start(step)`, which the Learner calls after restoring.
"""

import time
from collections.abc import Callable

from absl import logging


class GridTrigger:
  """Calls `fn()` whenever the train step reaches a new multiple of `interval`."""

  def __init__(self, interval: int, fn: Callable[[], None], *, start: int = 0):
    self.interval = interval
    self._fn = fn
    self._last = start

  def set_start(self, start: int) -> None:
    self._last = start

  def __call__(self, train_step: int, force_trigger: bool = False) -> None:
    if train_step // self.interval > self._last // self.interval or (
        force_trigger and train_step != self._last):
      self._last = train_step
      self._fn()


class ProgressLogger:
  """Logs one progress line every `interval` train steps.

  The line: train step / total, learner steps/s since the last line, env
  steps, last eval return, and the estimated time to the end.
  """

  def __init__(self, interval: int, total: int, status_fn: Callable[[], dict]):
    self._trigger = GridTrigger(interval, self._log)
    self._total = total
    self._status_fn = status_fn
    self._mark = None

  def set_start(self, start: int) -> None:
    self._trigger.set_start(start)
    self._mark = (start, time.monotonic())

  def __call__(self, train_step: int, force_trigger: bool = False) -> None:
    self._trigger(train_step, force_trigger)

  def _log(self) -> None:
    status = self._status_fn()
    step, now = status["train_step"], time.monotonic()
    last_step, last_time = self._mark or (step, now)
    rate = (step - last_step) / max(now - last_time, 1e-9)
    self._mark = (step, now)
    eta = (self._total - step) / rate if rate > 0 else float("nan")
    last_eval = status.get("last_eval_return")
    logging.info(
        "step %d/%d (%.1f%%) | %.0f steps/s | env steps %d | episodes %d | "
        "last eval return %s | ETA %s",
        step, self._total, 100.0 * step / self._total, rate, status["env_steps"],
        status["episodes"], "n/a" if last_eval is None else f"{last_eval:.1f}",
        _format_seconds(eta))


def _format_seconds(seconds: float) -> str:
  if seconds != seconds:  # NaN
    return "n/a"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
