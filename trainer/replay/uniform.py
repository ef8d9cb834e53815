"""TF-Agents' in-graph uniform replay buffer, and the block sampler that feeds the Learner from it."""

import os
from collections.abc import Callable
from typing import Any

import gin
import numpy as np
import tensorflow as tf
from tf_agents.replay_buffers import tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec
from tf_agents.utils import nest_utils

from trainer.compat import tf_agents as compat_tf_agents
from trainer.errors import ConfigError, RunDirError, one_line
from trainer.learning.flat_call import flat_call
from trainer.replay.base import Replay, SampledBlocks, check_capacity


class UniformReplay(Replay):
  """TF-Agents' `TFUniformReplayBuffer`, one row per collect environment.

  The observer only queues batched steps; `flush()` adds the queued steps in
  one `tf.function` call (a call costs milliseconds of argument handling, an
  added step microseconds). `size`, `save` and `prepare` (after every
  collect) flush, so the buffer never lags what was collected. `prepare`
  also samples the next Learner call's batches, in the same call.
  """

  _CKPT_NAME = "replay"

  def __init__(self, data_spec, *, capacity: int, sequence_length: int, num_envs: int = 1):
    self.capacity = capacity
    self.num_envs = num_envs
    self._sequence_length = sequence_length
    rows = -(-capacity // num_envs)
    _check_fits_in_memory(data_spec, rows * num_envs)
    # Each environment's steps go to its own row, so sampled sequences never mix
    # environments; the rows share the capacity.
    try:
      self._buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
          data_spec, batch_size=num_envs, max_length=rows)
    except tf.errors.ResourceExhaustedError as e:
      raise ConfigError(f"create_uniform_replay.capacity={capacity} does not fit in memory "
                        f"({one_line(e, 120)}); lower the capacity") from e
    self._pending: list[Any] = []
    self._chunk_spec = tensor_spec.add_outer_dim(tensor_spec.add_outer_dim(data_spec, num_envs),
                                                 None)
    # autograph=False: converting TF-Agents' buffer code costs seconds at start-up.
    self._add_many = tf.function(self._add_in_order, input_signature=[self._chunk_spec],
                                 autograph=False)
    self._sampler: _BlockSampler | None = None
    self._whole: _WholeBuffer | None = None
    self._prepare_fns: dict[tuple[int, bool], Any] = {}  # (train steps, adds) -> concrete

  @property
  def buffer(self) -> tf_uniform_replay_buffer.TFUniformReplayBuffer:
    """The TF-Agents buffer itself (e.g. for `trainer.compat.tf_agents.gather_all`)."""
    return self._buffer

  def _add_in_order(self, chunk) -> None:
    def add_one(i):
      with tf.control_dependencies(
          [self._buffer.add_batch(tf.nest.map_structure(lambda x: x[i], chunk))]):
        return i + 1

    count = tf.shape(tf.nest.flatten(chunk)[0])[0]
    tf.while_loop(lambda i: i < count, add_one, [tf.constant(0)])

  @property
  def observer(self) -> Callable[[Any], None]:
    return self._pending.append

  def _take_pending(self):
    if not self._pending:
      return None
    chunk = nest_utils.stack_nested_arrays(self._pending)
    self._pending.clear()
    return chunk

  def flush(self) -> None:
    chunk = self._take_pending()
    if chunk is not None:
      self._add_many(chunk)

  def iterator(self, batch_size: int, strategy: tf.distribute.Strategy | None = None):
    """The Learner's iterator: batches sampled by `prepare`, read inside the
    Learner's graph (no tf.data pipeline between the in-graph buffer and the
    train step: that cost about half the step rate); a batch per replica of
    `strategy`."""
    strategy = strategy or tf.distribute.get_strategy()
    if (self._sampler is None or self._sampler.batch_size != batch_size
        or self._sampler.strategy is not strategy):
      self._sampler = _BlockSampler(self._buffer, batch_size, self._sequence_length, strategy)
      self._prepare_fns.clear()
    return self._sampler

  def prepare(self, train_steps: int) -> None:
    """Adds the queued steps and samples the batches of the next
    `train_steps` train steps, in one call."""
    if self._sampler is None:
      self.flush()
      return
    chunk = self._take_pending()
    key = (train_steps, chunk is not None)
    function = self._prepare_fns.get(key)
    if function is None:
      def add_and_sample(*chunk):
        for c in chunk:
          self._add_in_order(c)  # automatic control dependencies: added before sampled
        self._sampler.fill(train_steps)
      signature = [self._chunk_spec] if chunk is not None else []
      function = flat_call(tf.function(add_and_sample, input_signature=signature,
                                              autograph=False).get_concrete_function())
      self._prepare_fns[key] = function
    function(*([] if chunk is None else [chunk]))

  def batch_iterator(self):
    """For on-policy learning: the Learner's iterator whose `next` is the whole
    buffer (every row, in order) as one batch, as `take_batch` last filled it."""
    if self._whole is None:
      self._whole = _WholeBuffer(self._buffer, self.num_envs, self.capacity // self.num_envs)
    return self._whole

  def take_batch(self, iterator=None) -> None:
    """Moves the collected batch into `iterator` (by its `fill()`, which reads
    the buffer; `batch_iterator()` by default) and empties the buffer."""
    self.flush()
    rows = self.capacity // self.num_envs
    frames = int(self._buffer.num_frames())
    if self.capacity % self.num_envs or frames != rows * self.num_envs:
      raise RuntimeError(f"an on-policy batch is exactly {rows} steps of each of the "
                         f"{self.num_envs} environments; the buffer holds {frames}")
    (iterator or self.batch_iterator()).fill()
    self._buffer.clear()

  def size(self) -> int:
    self.flush()
    return int(self._buffer.num_frames())

  def save(self, target_dir: str) -> None:
    self.flush()
    os.makedirs(target_dir)
    tf.train.Checkpoint(replay_buffer=self._buffer).write(
        os.path.join(target_dir, self._CKPT_NAME))

  def restore(self, source_dir: str) -> None:
    try:
      status = tf.train.Checkpoint(replay_buffer=self._buffer).read(
          os.path.join(source_dir, self._CKPT_NAME))
      status.assert_existing_objects_matched()
    except (ValueError, AssertionError) as e:
      raise ConfigError(
          f"the saved replay buffer in {source_dir} does not fit the configured "
          f"one (capacity {self.capacity}, train.collect_envs {self.num_envs}, or the "
          f"environment's specs changed): "
          f"{one_line(e, 300)}") from e
    except tf.errors.OpError as e:
      raise RunDirError(f"cannot read the saved replay buffer in {source_dir}: {e.message}") from e


class _BlockSampler(SampledBlocks):
  """The Learner's iterator over the in-graph buffer.

  `fill(k)` (in `UniformReplay.prepare`, before each Learner call) samples the
  call's k batches from the buffer in one go, uniformly with replacement as
  TF-Agents' `get_next` does, into variables of shape [k, batch, ...]; each
  `next` inside the Learner's graph reads the next batch with one gather per
  field, instead of a `get_next` (tens of small ops) per train step. The
  buffer does not change during a Learner call, so the batches are the same
  draws as sampling step by step. A call of more steps than were filled fails
  (the gather's index is out of range) instead of reusing a batch.

  Under a strategy of R replicas it samples k x R batches, and each `next`
  gives every replica its own (a per-replica value): R different batches per
  train step, together R x batch size uniform draws.

  Memory: k x R batches of the sampled sequences (k x R x batch size x
  sequence length steps).
  """

  def __init__(self, buffer, batch_size: int, num_steps: int | None,
               strategy: tf.distribute.Strategy):
    self._buffer, self.batch_size, self._num_steps = buffer, batch_size, num_steps
    self.strategy = strategy
    self.replicas = strategy.num_replicas_in_sync
    self._spec = buffer.data_spec
    inner = [batch_size] + ([num_steps] if num_steps else [])
    self._blocks = [
        tf.Variable(tf.zeros([0, *inner, *spec.shape], spec.dtype), trainable=False,
                    shape=tf.TensorShape([None, *inner, *spec.shape]), name="sampled_block")
        for spec in tf.nest.flatten(self._spec)]
    self._cursor = tf.Variable(0, dtype=tf.int64, trainable=False, name="sampled_cursor")

  def fill(self, count: int) -> None:
    """Graph code: samples `count` batches (replacing the previous ones)."""
    batches = count * self.replicas
    experience, _ = self._buffer.get_next(sample_batch_size=batches * self.batch_size,
                                          num_steps=self._num_steps)
    for block, values in zip(self._blocks, tf.nest.flatten(experience), strict=True):
      block.assign(tf.reshape(values, [batches, *block.shape[1:]]))
    self._cursor.assign(0)


class _WholeBuffer:
  """The on-policy Learner's iterator: `fill()` copies the whole buffer (its
  rows of `length` steps, in order) into variables; each `next` in the
  Learner's graph reads them as one batch of shape [rows, length, ...]."""

  def __init__(self, buffer, rows: int, length: int):
    self._buffer = buffer
    self._spec = buffer.data_spec
    self._batch = [
        tf.Variable(tf.zeros([rows, length, *spec.shape], spec.dtype), trainable=False,
                    name="on_policy_batch")
        for spec in tf.nest.flatten(self._spec)]
    self._fill = tf.function(self._copy, autograph=False)

  def _copy(self) -> None:
    for variable, values in zip(self._batch, tf.nest.flatten(compat_tf_agents.gather_all(self._buffer)),
                                strict=True):
      variable.assign(values)

  def fill(self) -> None:
    self._fill()

  def __iter__(self):
    return self

  def __next__(self):
    return tf.nest.pack_sequence_as(self._spec, [v.read_value() for v in self._batch]), None


def _check_fits_in_memory(data_spec, items: int) -> None:
  """Refuses a buffer whose items alone exceed the machine's memory: TF would
  fail to allocate it with a long traceback."""
  item_bytes = sum(int(np.prod(spec.shape)) * spec.dtype.size
                   for spec in tf.nest.flatten(data_spec))
  memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if items * item_bytes > memory:
    raise ConfigError(
        f"create_uniform_replay.capacity={items} needs {items * item_bytes / 2**30:.1f} GiB "
        f"({item_bytes} bytes an item) but this machine has {memory / 2**30:.1f} GiB of "
        "memory; lower the capacity")


@gin.configurable
def create_uniform_replay(
    data_spec, *, sequence_length: int, root_dir: str, restore_dir: str | None,
    num_envs: int = 1, capacity: int = 100_000,
) -> Replay:
  """The in-graph uniform replay buffer.

  Args:
    num_envs: collect environments (one buffer row each; set by the job).
    capacity: maximum number of environment steps held (FIFO beyond it),
      shared by the rows (rounded up to a multiple of `num_envs`).
  """
  del root_dir  # Nothing on disk but its bundle copies.
  replay = UniformReplay(data_spec, capacity=check_capacity("create_uniform_replay", capacity),
                         sequence_length=sequence_length, num_envs=num_envs)
  if restore_dir is not None:
    replay.restore(restore_dir)
  return replay


# The bindings that shape the saved buffer (its variables' sizes): a change
# cannot restore (trainer.loops.config_change).
create_uniform_replay.saved_form_bindings = ("create_uniform_replay.capacity", "train.collect_envs")
