"""When things happen: the grid of train steps that the job's events are on.

Evaluations, exports, checkpoints and progress lines happen at the multiples
of their interval (`GridTrigger`), so a resumed run does them at the same
steps as an uninterrupted one. A loop runs the Learner in calls that end
exactly on the next event (`steps_until_next_event`), so each trigger fires
at its step, not at the end of a longer call.
"""

from collections.abc import Callable
from typing import Any

from trainer.config.settings import Settings
from trainer.learning.triggers import GridTrigger, ProgressLogger


def steps_until_next_event(settings: Settings, step: int, end: int) -> int:
  """Train steps for the next Learner call from `step`: to the end of the
  current chunk (chunks are the multiples of `train_steps_per_iteration`), cut
  short so that the call ends exactly on the next event or on `end`."""
  chunk = settings.train_steps_per_iteration
  steps = min(chunk - step % chunk, end - step)
  for interval in settings.intervals:
    steps = min(steps, interval - step % interval)
  return steps


def triggers(settings: Settings, *, evaluate: Callable[[], Any], export: Callable[[], Any],
             checkpoint: Callable[[], Any], status: Callable[[], dict]) -> list:
  """The Learner's triggers, in the order they run at a step: an evaluation
  first (an export's metadata holds its return), then the export, then the
  checkpoint (which waits for the export), then the progress line."""
  out = []
  if settings.eval_interval:
    out.append(GridTrigger(settings.eval_interval, evaluate))
  out.append(GridTrigger(settings.policy_export_interval, export))
  out.append(GridTrigger(settings.checkpoint_interval, checkpoint))
  out.append(ProgressLogger(settings.log_interval, settings.num_iterations, status))
  return out
