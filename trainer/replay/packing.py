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


def _numpy_dtype(dtype: tf.DType):
  return np.uint8 if dtype == tf.bool else dtype.as_numpy_dtype


def _itemsize(dtype: tf.DType) -> int:
  return np.dtype(_numpy_dtype(dtype)).itemsize
