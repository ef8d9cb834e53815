"""Replay backends: where collected experience lives, and how it is saved.

A backend is built by a gin-configurable `create_*_replay` function and offers
one small interface (`Replay`): an observer for the collect actor, a dataset
for the Learner, its size, and `save`/restore into a checkpoint bundle.

- `create_uniform_replay`: TF-Agents' in-graph `TFUniformReplayBuffer`. The
  fastest choice on one machine; saved as a TF checkpoint of its variables.
- `create_reverb_replay`: a Reverb table, served in-process (the default) or
  by a server at `address`. In-process, its checkpoint is moved into the
  bundle, because a Reverb server keeps only its latest checkpoint and deletes
  older ones. Restoring loads the bundle's checkpoint through
  `DefaultCheckpointer(fallback_checkpoint_path=...)`; Reverb then rebuilds the
  table from the checkpoint and ignores the configured settings, so the
  restored table is compared with the config and a mismatch is refused.
"""

import abc
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import gin
import numpy as np
import reverb
import tensorflow as tf
from absl import logging
from tf_agents.replay_buffers import reverb_replay_buffer, reverb_utils, tf_uniform_replay_buffer
from tf_agents.specs import tensor_spec
from tf_agents.utils import nest_utils

from trainer import graphs
from trainer.errors import ConfigError, RunDirError, one_line
from trainer.rundir import layout

_DATASET_PARALLEL_CALLS = 3
_DATASET_PREFETCH = 3
_REVERB_MAX_SIZE = 2**31 - 1  # a Reverb table's max_size is a C int


class ReplaySaveError(RuntimeError):
  """The replay could not be written into a bundle (its partial files are gone)."""


class Replay(abc.ABC):
  """A replay backend as the pipeline sees it."""

  capacity: int
  _buffer: Any  # a TF-Agents ReplayBuffer
  _sequence_length: int

  @property
  @abc.abstractmethod
  def observer(self) -> Callable[[Any], None]:
    """Adds one batched `Trajectory` step (a row per collect environment)."""

  def dataset(self, batch_size: int) -> tf.data.Dataset:
    """Batches of `(experience, info)` shaped [batch_size, sequence_length]."""
    return self._buffer.as_dataset(
        sample_batch_size=batch_size, num_steps=self._sequence_length,
        num_parallel_calls=_DATASET_PARALLEL_CALLS).prefetch(_DATASET_PREFETCH)

  def iterator(self, batch_size: int):
    """What the Learner calls `next` on, inside its `tf.function`, each train step."""
    return iter(self.dataset(batch_size))

  def prepare(self, train_steps: int) -> None:
    """Called before each Learner call of `train_steps` steps: makes every
    observed step visible to the Learner's iterator."""
    del train_steps  # the tf.data iterator samples as the Learner asks
    self.flush()

  @abc.abstractmethod
  def size(self) -> int:
    """Number of stored items (steps for TFUniform, sequences for Reverb)."""

  @abc.abstractmethod
  def save(self, target_dir: str) -> None:
    """Writes the contents into `target_dir`, which must not exist yet."""

  def flush(self) -> None:  # noqa: B027  (optional hook)
    """Makes every observed step visible to the dataset."""

  def close(self) -> None:  # noqa: B027  (optional hook; most backends hold nothing)
    """Releases servers and writers."""


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
    self._prepare_fns: dict[tuple[int, bool], Any] = {}  # (train steps, adds) -> concrete

  @property
  def buffer(self) -> tf_uniform_replay_buffer.TFUniformReplayBuffer:
    """The TF-Agents buffer itself (e.g. for `gather_all`)."""
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

  def iterator(self, batch_size: int):
    """The Learner's iterator: batches sampled by `prepare`, read inside the
    Learner's graph (no tf.data pipeline between the in-graph buffer and the
    train step: that cost about half the step rate)."""
    if self._sampler is None or self._sampler.batch_size != batch_size:
      self._sampler = _BlockSampler(self._buffer, batch_size, self._sequence_length)
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
      function = graphs.flat_call(tf.function(add_and_sample, input_signature=signature,
                                              autograph=False).get_concrete_function())
      self._prepare_fns[key] = function
    function(*([] if chunk is None else [chunk]))

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


class _BlockSampler:
  """The Learner's iterator over the in-graph buffer.

  `fill(k)` (in `UniformReplay.prepare`, before each Learner call) samples the
  call's k batches from the buffer in one go, uniformly with replacement as
  TF-Agents' `get_next` does, into variables of shape [k, batch, ...]; each
  `next` inside the Learner's graph reads the next batch with one gather per
  field, instead of a `get_next` (tens of small ops) per train step. The
  buffer does not change during a Learner call, so the batches are the same
  draws as sampling step by step. A call of more steps than were filled fails
  (the gather's index is out of range) instead of reusing a batch.

  Memory: k batches of the sampled sequences (k x batch size x sequence
  length steps).
  """

  def __init__(self, buffer, batch_size: int, num_steps: int | None):
    self._buffer, self.batch_size, self._num_steps = buffer, batch_size, num_steps
    self._spec = buffer.data_spec
    inner = [batch_size] + ([num_steps] if num_steps else [])
    self._blocks = [
        tf.Variable(tf.zeros([0, *inner, *spec.shape], spec.dtype), trainable=False,
                    shape=tf.TensorShape([None, *inner, *spec.shape]), name="sampled_block")
        for spec in tf.nest.flatten(self._spec)]
    self._cursor = tf.Variable(0, dtype=tf.int64, trainable=False, name="sampled_cursor")

  def fill(self, count: int) -> None:
    """Graph code: samples `count` batches (replacing the previous ones)."""
    experience, _ = self._buffer.get_next(sample_batch_size=count * self.batch_size,
                                          num_steps=self._num_steps)
    for block, values in zip(self._blocks, tf.nest.flatten(experience), strict=True):
      block.assign(tf.reshape(values, [count, *block.shape[1:]]))
    self._cursor.assign(0)

  def __iter__(self):
    return self

  def __next__(self):
    """Graph code: the next filled batch, as `(experience, info)`; there is no
    sample info to give (it only serves prioritized replay, which a uniform
    buffer is not)."""
    index = self._cursor.assign_add(1) - 1
    batch = [tf.gather(block, index) for block in self._blocks]
    return tf.nest.pack_sequence_as(self._spec, batch), None


class ReverbReplay(Replay):
  """A Reverb table with uniform sampling and FIFO removal."""

  _REMOTE_FILE = "reverb_remote.json"

  def __init__(self, data_spec, *, capacity: int, sequence_length: int, table_name: str,
               scratch_dir: str, address: str | None, restore_dir: str | None,
               num_envs: int = 1):
    self.capacity = capacity
    self._data_spec = data_spec
    self._table_name = table_name
    self._sequence_length = sequence_length
    self._scratch_dir = scratch_dir
    self._server = None
    if address is None:
      self._server = self._start_server(restore_dir)
      address = f"localhost:{self._server.port}"
    self.address = address
    self._client = reverb.Client(address)
    self._check_table(restore_dir)
    self._buffer = reverb_replay_buffer.ReverbReplayBuffer(
        data_spec, table_name, sequence_length=sequence_length, server_address=address)
    self._observer = _PerRowObserver([
        reverb_utils.ReverbAddTrajectoryObserver(
            self._client, table_name, sequence_length=sequence_length, stride_length=1)
        for _ in range(num_envs)])

  def _table(self) -> reverb.Table:
    signature = tensor_spec.add_outer_dim(self._data_spec, self._sequence_length)
    return reverb.Table(
        self._table_name, max_size=self.capacity, sampler=reverb.selectors.Uniform(),
        remover=reverb.selectors.Fifo(), rate_limiter=reverb.rate_limiters.MinSize(1),
        signature=signature)

  def _start_server(self, restore_dir: str | None) -> reverb.Server:
    # The scratch root must be empty, or Reverb would load whatever it holds
    # instead of the bundle's checkpoint.
    shutil.rmtree(self._scratch_dir, ignore_errors=True)
    os.makedirs(self._scratch_dir)
    checkpointer = reverb.checkpointers.DefaultCheckpointer(
        path=self._scratch_dir, fallback_checkpoint_path=restore_dir)
    try:
      return reverb.Server([self._table()], port=None, checkpointer=checkpointer)
    except Exception as e:
      if restore_dir is None:
        raise ConfigError(f"Reverb cannot start the replay table (capacity {self.capacity}): "
                          f"{one_line(e, 200)}; check create_reverb_replay") from e
      raise RunDirError(f"Reverb cannot load the saved replay in {restore_dir}: {e}") from e

  def _check_table(self, restore_dir: str | None) -> None:
    info = self._client.server_info().get(self._table_name)
    if info is None:
      raise ConfigError(f"the Reverb server has no table {self._table_name!r}; set "
                        "create_reverb_replay.table_name to one of its tables")
    if info.max_size != self.capacity:
      self.close()
      raise ConfigError(
          f"the Reverb table {self._table_name!r} holds max_size={info.max_size} "
          f"(restored from {restore_dir or 'the server'}) but the config says capacity="
          f"{self.capacity}; Reverb keeps the saved table settings, so set "
          f"create_reverb_replay.capacity = {info.max_size} or start a new --root_dir")
    if restore_dir is not None and info.signature is not None:
      expected = tensor_spec.add_outer_dim(self._data_spec, self._sequence_length)
      if not _same_specs(info.signature, expected):
        self.close()
        raise ConfigError(
            "the saved Reverb table's item signature does not match the agent's data "
            "spec (did the environment or agent change?); start a new --root_dir")

  @property
  def observer(self) -> Callable[[Any], None]:
    return self._observer

  def flush(self) -> None:
    """Sends what the writers hold to the table."""
    self._observer.flush()

  def size(self) -> int:
    self.flush()  # Items still in the writer are not in the table yet.
    return int(self._client.server_info()[self._table_name].current_size)

  def save(self, target_dir: str) -> None:
    self.flush()
    try:
      path = self._client.checkpoint()
    except RuntimeError as e:  # Reverb reports a failed write (no space, ...) so
      if self._server is not None:
        # What the server wrote of it; its earlier checkpoints were moved into bundles.
        for name in os.listdir(self._scratch_dir):
          shutil.rmtree(os.path.join(self._scratch_dir, name), ignore_errors=True)
      raise ReplaySaveError(f"the Reverb checkpoint failed: {one_line(e)}") from e
    if self._server is None:
      # A remote server owns its checkpoints (and keeps only the latest).
      os.makedirs(target_dir)
      with open(os.path.join(target_dir, self._REMOTE_FILE), "w") as f:
        json.dump({"server_checkpoint": path, "size": self.size()}, f)
      return
    os.rename(path, target_dir)

  def close(self) -> None:
    if getattr(self, "_observer", None) is not None:
      self._observer.close()
      self._observer = None
    if self._server is not None:
      self._server.stop()
      self._server = None


class _PerRowObserver:
  """Splits batched steps into one writer per environment, so that each
  sequence written to Reverb comes from a single environment."""

  def __init__(self, observers: list[reverb_utils.ReverbAddTrajectoryObserver]):
    self._observers = observers

  def __call__(self, traj) -> None:
    for observer, row in zip(self._observers, nest_utils.unstack_nested_arrays(traj), strict=True):
      observer(row)

  def flush(self) -> None:
    for observer in self._observers:
      observer.flush()

  def close(self) -> None:
    for observer in self._observers:
      observer.close()


def _same_specs(a, b) -> bool:
  flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
  return len(flat_a) == len(flat_b) and all(
      x.shape == y.shape and x.dtype == y.dtype for x, y in zip(flat_a, flat_b, strict=True))


def _check_capacity(name: str, capacity: Any, maximum: int | None = None) -> int:
  if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
    raise ConfigError(f"{name}.capacity must be a positive int (transitions), got {capacity!r}")
  if maximum is not None and capacity > maximum:
    raise ConfigError(f"{name}.capacity must be at most {maximum}, got {capacity}")
  return capacity


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
    num_envs: collect environments (one buffer row each; set by the pipeline).
    capacity: maximum number of environment steps held (FIFO beyond it),
      shared by the rows (rounded up to a multiple of `num_envs`).
  """
  del root_dir  # Nothing on disk but its bundle copies.
  replay = UniformReplay(data_spec, capacity=_check_capacity("create_uniform_replay", capacity),
                         sequence_length=sequence_length, num_envs=num_envs)
  if restore_dir is not None:
    replay.restore(restore_dir)
  return replay


@gin.configurable
def create_reverb_replay(
    data_spec, *, sequence_length: int, root_dir: str, restore_dir: str | None,
    num_envs: int = 1, capacity: int = 100_000, address: str | None = None,
    table_name: str = "uniform_table",
) -> Replay:
  """A Reverb table of `sequence_length`-step sequences (stride 1).

  Args:
    num_envs: collect environments (one writer each; set by the pipeline).
    capacity: maximum number of sequences held (FIFO beyond it).
    address: 'host:port' of a running Reverb server that owns the table; None
      starts a server inside the training process.
    table_name: the table to write to and sample from.
  """
  if restore_dir is not None and os.path.exists(os.path.join(restore_dir, ReverbReplay._REMOTE_FILE)):
    logging.info("Replay lives on the Reverb server at %s; it restores its own checkpoint.", address)
    restore_dir = None
  return ReverbReplay(
      data_spec, capacity=_check_capacity("create_reverb_replay", capacity, _REVERB_MAX_SIZE),
      sequence_length=sequence_length, table_name=table_name,
      scratch_dir=os.path.join(root_dir, layout.REVERB_SCRATCH_DIR), address=address,
      restore_dir=restore_dir, num_envs=num_envs)
