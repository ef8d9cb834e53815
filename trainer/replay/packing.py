"""One byte column per step: the replay server role's item layout.

Reverb stores, sends and decompresses each column of an item on its own, and
a TF-Agents `Trajectory` has six or more columns (step type, observation,
action, reward, discount, next step type, policy info). Sampling over loopback
costs the learner per column: a 2-step DQN CartPole item takes ~44 us of the
learner's CPU as six columns and ~16 us as one (docs/benchmarks.md, "learner fed
over loopback"). So the roles' table holds each step as a single uint8 vector,
every field's bytes in the spec's flattened order; the learner unpacks a whole
batch at once after batching, in its input pipeline. The sampled data are the
same, bit for bit.

The byte order is the machine's own (`tf.bitcast`, numpy views): collectors and
learners on machines of one byte order, as every cluster of x86 or ARM hosts is.
"""

import numpy as np
import tensorflow as tf


class StepPacking:
  """Packs one step of `step_spec` into bytes, and unpacks batches of them."""

  def __init__(self, step_spec):
    self._spec = step_spec
    self._fields = []  # (start, end, spec) per flattened field
    start = 0
    for spec in tf.nest.flatten(step_spec):
      if not spec.shape.is_fully_defined():
        raise ValueError(f"cannot pack a field of unknown shape {spec.shape}")
      end = start + spec.shape.num_elements() * _itemsize(spec.dtype)
      self._fields.append((start, end, spec))
      start = end
    self.width = start

  def column_spec(self, sequence_length: int) -> tf.TensorSpec:
    """The table's signature: `sequence_length` packed steps."""
    return tf.TensorSpec([sequence_length, self.width], tf.uint8)

  def matches(self, signature, sequence_length: int) -> bool:
    """Whether a table's signature is this packing's column."""
    expected = self.column_spec(sequence_length)
    return (isinstance(signature, tf.TensorSpec) and signature.dtype == expected.dtype
            and signature.shape == expected.shape)

  def pack(self, step) -> np.ndarray:
    """One unbatched step (numpy) as a uint8 vector of `width` bytes."""
    parts = [np.ascontiguousarray(np.asarray(value, _numpy_dtype(spec.dtype))).reshape(-1)
             .view(np.uint8)
             for value, (_, _, spec) in zip(tf.nest.flatten(step), self._fields, strict=True)]
    return np.concatenate(parts)

  def unpack(self, packed: tf.Tensor):
    """`[..., width]` bytes -> the step spec's structure, each field shaped
    `[..., *field_shape]`."""
    outer = tf.shape(packed)[:-1]
    static_outer = packed.shape[:-1]
    fields = []
    for start, end, spec in self._fields:
      raw = packed[..., start:end]
      size = _itemsize(spec.dtype)
      if spec.dtype == tf.bool:
        value = tf.not_equal(raw, 0)
      elif size == 1:
        value = tf.bitcast(raw, spec.dtype)
      else:  # [..., n * size] -> [..., n, size] -> [..., n]
        value = tf.bitcast(tf.reshape(raw, tf.concat([outer, [-1, size]], 0)), spec.dtype)
      value = tf.reshape(value, tf.concat([outer, spec.shape.as_list()], 0))
      value.set_shape(static_outer.concatenate(spec.shape))
      fields.append(value)
    return tf.nest.pack_sequence_as(self._spec, fields)


class FramePacking(StepPacking):
  """Packed steps of pixel observations that hold each step's newest frame only.

  An Atari observation is a stack of the last k frames; packed whole, each
  frame would sit in k steps (and the server would hold 4x the frames). Here a
  step's column holds the newest frame (`observation[..., -1]`) and the other
  fields; an item of `sequence_length` steps spans the `frame_stack - 1`
  columns before them too, and `unpack` rebuilds each step's stack from its
  item's columns. Items never span two episodes (`trainer.replay.writers`), so
  neither does a stack: before an episode's first step the writer puts the
  older frames of that step's own stack, zeros under the frame contract
  (`trainer.acting.frames`), as `lead` columns whose other fields are zeros.
  """

  def __init__(self, step_spec, frame_stack: int):
    obs = step_spec.observation
    if (not isinstance(obs, tf.TensorSpec) or obs.shape.rank is None or obs.shape.rank < 1
        or obs.shape[-1] != frame_stack):
      raise ValueError(f"the observation {obs} is not a stack of {frame_stack} frames on its "
                       "last axis")
    self.frame_stack = frame_stack
    self.lead = frame_stack - 1
    self._stacked = step_spec
    super().__init__(step_spec._replace(observation=tf.TensorSpec(obs.shape[:-1], obs.dtype,
                                                                  obs.name)))
    marked = tf.nest.map_structure(lambda _: False, step_spec)._replace(observation=True)
    self._frame = self._fields[tf.nest.flatten(marked).index(True)]  # (start, end, frame spec)

  def column_spec(self, sequence_length: int) -> tf.TensorSpec:
    return tf.TensorSpec([sequence_length + self.lead, self.width], tf.uint8)

  def pack(self, step) -> np.ndarray:
    """One unbatched step, its observation a whole stack, as its column."""
    return super().pack(step._replace(observation=np.asarray(step.observation)[..., -1]))

  def lead_columns(self, observation: np.ndarray) -> list[np.ndarray]:
    """The columns before the first step written of an episode whose stack is
    `observation`: its older frames, oldest first (zeros at a FIRST step)."""
    start, end, spec = self._frame
    columns = []
    for j in range(self.lead):
      column = np.zeros(self.width, np.uint8)
      frame = np.ascontiguousarray(observation[..., j], _numpy_dtype(spec.dtype))
      column[start:end] = frame.reshape(-1).view(np.uint8)
      columns.append(column)
    return columns

  def unpack(self, packed: tf.Tensor):
    """`[..., sequence_length + lead, width]` -> the stacked step spec's
    structure, each field `[..., sequence_length, *field_shape]`."""
    columns = super().unpack(packed)
    axis = packed.shape.rank - 2  # the sequence's
    length = packed.shape[-2] - self.lead

    def steps(value, begin):
      return value[(slice(None),) * axis + (slice(begin, begin + length),)]

    fields = tf.nest.map_structure(lambda value: steps(value, self.lead), columns)
    frames = columns.observation
    stacks = tf.stack([steps(frames, j) for j in range(self.frame_stack)], axis=-1)
    return fields._replace(observation=stacks)


def _numpy_dtype(dtype: tf.DType):
  return np.uint8 if dtype == tf.bool else dtype.as_numpy_dtype


def _itemsize(dtype: tf.DType) -> int:
  return np.dtype(_numpy_dtype(dtype)).itemsize
