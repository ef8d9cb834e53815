"""The replay's writers: steps in, `sequence_length`-step items out.

Items are those of TF-Agents' `ReverbAddTrajectoryObserver` with stride 1 and
no padding (`tf_agents/replay_buffers/reverb_utils.py`): after each step of an
episode that has `sequence_length` steps so far, its last `sequence_length`
steps make one item of priority 1; an episode's last step ends the episode (the
steps before it are never part of a later item). The writer is this project's
own so that it can pack each step into one column (`StepPacking`) and spread
its items over the replay's shards, through Reverb's public writer only.

With a `FramePacking` (pixel observations: one frame a step), an item also
spans the `lead` columns before its first step, and the episode's first step
written is preceded by lead columns holding its stack's older frames. The
writer checks the frame contract as it goes (each stack's second newest frame
is the previous step's newest; zeros before an episode's first frame), as the
frame replay does, so a stack rebuilt on the learner is the one observed.
"""

import numpy as np
import reverb
import tensorflow as tf
from tf_agents.trajectories import trajectory as trajectory_lib
from tf_agents.utils import nest_utils

from trainer.errors import ConfigError
from trainer.replay.frames import CONTRACT_FIX, stack_follows
from trainer.replay.packing import StepPacking

_PRIORITY = 1.0  # TF-Agents' observer's default: the tables sample uniformly anyway


class SequenceWriter:
  """Writes one environment's steps as items of `sequence_length` consecutive
  steps of one episode (stride 1), each to the next of `tables` in turn."""

  def __init__(self, client: reverb.Client, tables: list[str], sequence_length: int,
               packing: StepPacking | None = None, first: int = 0):
    """`packing`: each step is appended as one packed column (None: TF-Agents'
    column per field). `first`: the table of the first item (writers of several
    environments start on different shards)."""
    if not tables:
      raise ValueError("a writer needs at least one table")
    self._client = client
    self._tables = list(tables)
    self._sequence_length = sequence_length
    self._packing = packing
    self._next = first % len(self._tables)
    self._lead = getattr(packing, "lead", 0)  # frame columns before an item's steps
    self._span = self._lead + sequence_length  # columns an item spans
    self._writer = None
    self._steps = 0  # of the current episode, in the writer's history
    self._newest = None  # the newest frame written (frame packing)
    self.open()

  def open(self) -> None:
    """A new Reverb writer, after `close` (a no-op while one is open)."""
    if self._writer is None:
      # One step more than an item spans, as TF-Agents keeps.
      self._writer = self._client.trajectory_writer(
          num_keep_alive_refs=self._span + 1, validate_items=False)
      self._steps = 0

  def __call__(self, step: trajectory_lib.Trajectory) -> None:
    """Appends one unbatched step; writes an item once the episode has enough steps."""
    writer = self._open_writer()
    if self._lead:
      self._check_stack(step)
      if self._steps == 0:
        for column in self._packing.lead_columns(np.asarray(step.observation)):
          writer.append(column)
    writer.append(step if self._packing is None else self._packing.pack(step))
    self._steps += 1
    if self._steps >= self._sequence_length:
      item = tf.nest.map_structure(lambda column: column[-self._span:], writer.history)
      writer.create_item(self._tables[self._next], _PRIORITY, item)
      self._next = (self._next + 1) % len(self._tables)
    if step.is_boundary():
      self._steps = 0
      writer.end_episode()

  def _check_stack(self, step: trajectory_lib.Trajectory) -> None:
    """The frame contract: a FIRST step's older frames are zeros, and a later
    step's second newest frame is the previous step's newest."""
    obs = np.asarray(step.observation)
    if step.is_first():
      ok = stack_follows(obs, None)
    else:  # the first step written after a reopen, mid-episode, has no previous one here
      ok = self._steps == 0 or stack_follows(obs, self._newest)
    if not ok:
      raise ConfigError("the observations are not frame stacks as the replay's frame layout "
                        f"expects {CONTRACT_FIX}")
    self._newest = obs[..., -1].copy()

  def flush(self, timeout_ms: int | None = None) -> None:
    """Blocks until the server confirmed every item written; with `timeout_ms`,
    raises `reverb.errors.DeadlineExceededError` after that long."""
    self._open_writer().flush(timeout_ms=timeout_ms)

  def close(self) -> None:
    """Ends the episode (sends its items) and closes the Reverb writer."""
    if self._writer is not None:
      self._writer.end_episode()
      self._writer.close()
      self._writer = None

  def _open_writer(self) -> reverb.TrajectoryWriter:
    if self._writer is None:
      raise ValueError("the replay writer is closed: open() it again")
    return self._writer


class PerRowWriters:
  """Splits batched steps into one `SequenceWriter` per environment, so that
  each sequence written to Reverb comes from a single environment."""

  def __init__(self, writers: list[SequenceWriter]):
    self._writers = writers

  def __call__(self, traj) -> None:
    for writer, row in zip(self._writers, nest_utils.unstack_nested_arrays(traj), strict=True):
      writer(row)

  def flush(self, timeout_ms: int | None = None) -> None:
    """Blocks until the server confirmed every item written; with `timeout_ms`,
    raises `reverb.errors.DeadlineExceededError` after that long (a server that
    went away never confirms)."""
    for writer in self._writers:
      writer.flush(timeout_ms)

  def open(self) -> None:
    for writer in self._writers:
      writer.open()

  def close(self) -> None:
    for writer in self._writers:
      writer.close()


def per_env_writers(client: reverb.Client, tables: str | list[str], sequence_length: int,
                    num_envs: int, packing: StepPacking | None = None) -> PerRowWriters:
  """An observer of batched steps that writes each environment's row through a
  writer of its own (sequences never mix environments); with `packing`, each
  step as one packed column. `tables`: the replay's table, or its shards
  (packed only), which each writer fills in turn, one sequence each."""
  shards = [tables] if isinstance(tables, str) else list(tables)
  if len(shards) > 1 and packing is None:
    raise ValueError("a sharded replay holds packed steps: pass their packing")
  return PerRowWriters([SequenceWriter(client, shards, sequence_length, packing, first=env)
                        for env in range(num_envs)])
