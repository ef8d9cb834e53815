"""The frame replay: pixel observations stored once a frame, saved incrementally.

`create_frame_replay` is the replay for image observations (Atari, MinAtar):
a `FrameStore` (each frame once; stacks rebuilt when sampled) persisted as
immutable segments shared between bundles (`segments.SegmentedRing`). The
Learner reads it as it reads the in-graph buffer: before each Learner call,
`prepare` samples that call's batches (numpy, on the loop's thread, so no
sample ever sees a half-written step) into variables that each `next` in the
Learner's graph reads.
"""

import os
from collections.abc import Callable
from typing import Any

import gin
import numpy as np
import tensorflow as tf

from trainer.errors import ConfigError, RunDirError, one_line
from trainer.replay.base import Replay, ReplaySaveError, SampledBlocks, check_capacity
from trainer.replay.frames import ContractError, Field, FrameStore, ring_shape, stored_fields
from trainer.replay.segments import CODECS, SegmentedRing, SegmentError, describe
from trainer.rundir import layout

SEGMENT_DIR = "frames"  # under the run's shared directory


class FrameReplay(Replay):
  """A `FrameStore` and its segments, as the job's replay."""

  def __init__(self, data_spec, *, sequence_length: int, shared_dir: str, num_envs: int,
               capacity: int, frame_stack: int, segment_steps: int, seed,
               compression: str = "none"):
    self._spec = data_spec
    self._sequence_length = sequence_length
    fields, observation = _fields(data_spec)
    row, segment_steps = ring_shape(capacity, num_envs, segment_steps)
    if row < frame_stack + sequence_length - 1:
      raise ConfigError(
          f"create_frame_replay.capacity={capacity} gives each of the {num_envs} collect "
          f"environments {row} steps, fewer than a sequence of {sequence_length} with its "
          f"stacks of {frame_stack} frames needs ({frame_stack + sequence_length - 1}); raise it")
    self.capacity = row * num_envs
    try:
      _check_fits_in_memory(stored_fields(fields, observation, frame_stack), self.capacity)
      self.store = FrameStore(fields, observation=observation, frame_stack=frame_stack,
                              rows=num_envs, row_capacity=row)
    except ContractError as e:
      raise ConfigError(f"create_frame_replay.frame_stack={frame_stack} does not fit the "
                        f"observations: {e}; set it to the environment's frame stack") from e
    self._config = describe(fields, frame_stack, num_envs, row)
    self._ring = SegmentedRing(self.store, os.path.join(shared_dir, SEGMENT_DIR),
                               f"{layout.SHARED_DIR}/{SEGMENT_DIR}", segment_steps, compression)
    self._rng = np.random.default_rng(seed)
    self._blocks: _Blocks | None = None

  @property
  def observer(self) -> Callable[[Any], None]:
    return self._observe

  def _observe(self, trajectory) -> None:
    values = [np.asarray(v) for v in tf.nest.flatten(trajectory)]
    with self._ring.lock:
      self.store.add(values)
      self._ring.added()

  def iterator(self, batch_size: int, strategy: tf.distribute.Strategy | None = None):
    strategy = strategy or tf.distribute.get_strategy()
    if self._blocks is None or self._blocks.batch_size != batch_size \
        or self._blocks.strategy is not strategy:
      self._blocks = _Blocks(self._spec, batch_size, self._sequence_length, strategy)
    return self._blocks

  def dataset(self, batch_size: int) -> tf.data.Dataset:
    raise NotImplementedError("the frame replay feeds the Learner through iterator()/prepare()")

  def prepare(self, train_steps: int) -> None:
    """Samples the next Learner call's batches (one per train step and replica)."""
    if self._blocks is None:
      return
    blocks = self._blocks
    count = train_steps * blocks.replicas
    sampled = self.store.sample(count * blocks.batch_size, self._sequence_length, self._rng)
    blocks.fill(sampled, count)

  def size(self) -> int:
    return self.store.size()

  def save(self, target_dir: str) -> None:
    try:
      self._ring.save(target_dir, self._config)
    except (SegmentError, KeyError) as e:
      raise ReplaySaveError(f"the frame replay could not be saved: {one_line(e, 200)}") from e

  def restore(self, source_dir: str) -> None:
    try:
      self._ring.load(source_dir, self._config)
    except SegmentError as e:
      if "differs from the configured" in str(e):
        raise ConfigError(f"{e} (create_frame_replay's capacity or frame_stack, "
                          "train.collect_envs, or the environment's specs changed); restore "
                          "them, or start a new --root_dir") from e
      raise RunDirError(f"cannot restore the frame replay from {source_dir}: {e}") from e
    # A resume draws other samples than the run before it would have.
    self._rng = np.random.default_rng([int(self._rng.integers(2**31)),
                                       *map(int, self.store.totals)])

  def close(self) -> None:
    self._ring.close()


def _fields(data_spec) -> tuple[list[Field], int]:
  """The flattened fields of a transition, and which one is the observation."""
  named = list(_named(data_spec, ""))
  paths, specs = [p for p, _ in named], [s for _, s in named]
  if specs != tf.nest.flatten(data_spec):
    raise ConfigError(f"create_frame_replay cannot read the transition's nest {paths}")
  observations = [i for i, p in enumerate(paths) if p == "observation"
                  or p.startswith("observation/")]
  if len(observations) != 1 or paths[observations[0]] != "observation":
    raise ConfigError("create_frame_replay needs one observation array (an image or a stack "
                      f"of them), not the nest {paths}; use create_uniform_replay")
  fields = [Field(p, tuple(s.shape), np.dtype(s.dtype.as_numpy_dtype))
            for p, s in zip(paths, specs, strict=True)]
  return fields, observations[0]


def _named(spec, prefix: str):
  """(path, leaf) in `tf.nest.flatten`'s order: namedtuple fields in order,
  dict keys sorted, sequences in order."""
  if hasattr(spec, "_fields"):
    items = [(n, getattr(spec, n)) for n in spec._fields]
  elif isinstance(spec, dict):
    items = sorted(spec.items())
  elif isinstance(spec, (list, tuple)):
    items = list(enumerate(spec))
  else:
    yield prefix.rstrip("/"), spec
    return
  for name, value in items:
    yield from _named(value, f"{prefix}{name}/")


class _Blocks(SampledBlocks):
  """The Learner's iterator: batches sampled by `prepare` (numpy) into
  variables of shape [count, batch, L, ...], read as `SampledBlocks` reads them."""

  def __init__(self, spec, batch_size: int, sequence_length: int,
               strategy: tf.distribute.Strategy):
    self.batch_size, self.strategy = batch_size, strategy
    self.replicas = strategy.num_replicas_in_sync
    self._spec = spec
    self._shape = [batch_size, sequence_length]
    self._blocks = [
        tf.Variable(tf.zeros([0, *self._shape, *s.shape], s.dtype), trainable=False,
                    shape=tf.TensorShape([None, *self._shape, *s.shape]), name="frame_block")
        for s in tf.nest.flatten(spec)]
    self._cursor = tf.Variable(0, dtype=tf.int64, trainable=False, name="frame_cursor")

  def fill(self, sampled: list[np.ndarray], count: int) -> None:
    for block, values in zip(self._blocks, sampled, strict=True):
      block.assign(values.reshape(count, *self._shape, *values.shape[2:]))
    self._cursor.assign(0)


def _check_fits_in_memory(stored: list[Field], steps: int) -> None:
  """Refuses a replay whose steps alone (each frame once) exceed the machine's
  memory; its rings are allocated lazily, so this is where it would fail."""
  step_bytes = sum(int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize for f in stored) + 8
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if steps * step_bytes > memory:
    raise ConfigError(
        f"create_frame_replay.capacity={steps} needs {steps * step_bytes / 2**30:.1f} GiB "
        f"({step_bytes} bytes a step, each frame once) but this machine has "
        f"{memory / 2**30:.1f} GiB of memory; lower the capacity")


@gin.configurable
def create_frame_replay(
    data_spec, *, sequence_length: int, root_dir: str, restore_dir: str | None,
    num_envs: int = 1, capacity: int = 1_000_000, frame_stack: int = 4,
    segment_steps: int = 4096, seed: int = 0, compression: str = "zlib",
) -> Replay:
  """The replay for pixel observations (docs/pixels.md).

  Args:
    num_envs: collect environments (a ring each; set by the job).
    capacity: environment steps held (FIFO beyond), shared by the rings;
      rounded up to whole segments (`ring_shape`: by less than a step a segment).
    frame_stack: frames in an observation's stack (its last axis), as the
      environment builds it; 1 for observations that are not stacks.
    segment_steps: the most steps of a ring per segment file (written once,
      shared by bundles; a ring is cut into two or more equal segments); a
      checkpoint also writes each ring's unfinished segment.
    seed: of the sampler, mixed with `train.seed` (and with the step counts at
      a resume), so seeds of one config sample differently.
    compression: of the segment files on disk, "zlib" (level 1, in the
      writer thread) or "none"; memory holds frames raw either way. Each
      segment records its own, so a change applies to new segments.
  """
  check_capacity("create_frame_replay", capacity)
  for name, value in (("frame_stack", frame_stack), ("segment_steps", segment_steps)):
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
      raise ConfigError(f"create_frame_replay.{name} must be a positive int, got {value!r}")
  if compression not in CODECS:
    raise ConfigError(f"create_frame_replay.compression must be one of {list(CODECS)}, got "
                      f"{compression!r}")
  replay = FrameReplay(data_spec, sequence_length=sequence_length,
                       shared_dir=os.path.join(root_dir, layout.SHARED_DIR), num_envs=num_envs,
                       capacity=capacity, frame_stack=frame_stack,
                       segment_steps=segment_steps, seed=[seed, _train_seed()],
                       compression=compression)
  if restore_dir is not None:
    replay.restore(restore_dir)
  return replay


def _train_seed() -> int:
  """The job's `train.seed` (0 when unbound): the replay builders are not given it."""
  try:
    return int(gin.query_parameter("train.seed"))
  except (ValueError, TypeError):
    return 0


# The bindings that shape the saved replay: a change cannot restore.
create_frame_replay.saved_form_bindings = (
    "create_frame_replay.capacity", "create_frame_replay.frame_stack",
    "create_frame_replay.segment_steps", "train.collect_envs")
