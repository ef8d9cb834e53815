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
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from trainer.errors import ConfigError, RunDirError

_DATASET_PARALLEL_CALLS = 3
_DATASET_PREFETCH = 3


class ReplaySaveError(RuntimeError):
  """The replay could not be written into a bundle (its partial files are gone)."""


class Replay(abc.ABC):
  """A replay backend as the job sees it."""

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

  def iterator(self, batch_size: int, strategy: tf.distribute.Strategy | None = None):
    """What the Learner calls `next` on, inside its `tf.function`, each train
    step: under a strategy of several replicas, a batch of `batch_size` for each
    replica (its share of the global batch), from a dataset of its own."""
    if strategy is None or strategy.num_replicas_in_sync == 1:
      return iter(self.dataset(batch_size))
    with strategy.scope():
      return iter(strategy.distribute_datasets_from_function(lambda _: self.dataset(batch_size)))

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

  def check_restored(self, expected_size: int, saved_dir: str, source: str) -> None:
    """Raises unless the replay restored from `saved_dir` holds the items that
    `source` (a committed bundle) recorded."""
    del saved_dir
    size = self.size()
    if size != expected_size:
      raise RunDirError(
          f"the replay restored from {source} holds {size} items but the bundle recorded "
          f"{expected_size}; move that bundle aside to resume from the one before it, or start "
          "a new --root_dir")


class SampledBlocks:
  """The Learner's iterator over batches sampled ahead into variables of shape
  [count, batch, ...] (`_blocks`, filled by the subclass, `_cursor` reset to 0):
  each `next` (graph code) reads the next batch with one gather per field; under
  a strategy of R replicas, each replica reads a batch of its own."""

  _blocks: list
  _cursor: tf.Variable
  _spec: Any
  strategy: tf.distribute.Strategy
  replicas: int

  def __iter__(self):
    return self

  def __next__(self):
    """Graph code: the next filled batch, as `(experience, info)`; there is no
    sample info to give (it only serves prioritized replay)."""
    index = self._cursor.assign_add(1) - 1
    if self.replicas == 1:
      return self._batch(index), None

    def replica_batch(context):
      return self._batch(index * self.replicas + context.replica_id_in_sync_group)

    return self.strategy.experimental_distribute_values_from_function(replica_batch), None

  def _batch(self, index):
    return tf.nest.pack_sequence_as(self._spec, [tf.gather(b, index) for b in self._blocks])


def check_capacity(name: str, capacity: Any, maximum: int | None = None) -> int:
  if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
    raise ConfigError(f"{name}.capacity must be a positive int (transitions), got {capacity!r}")
  if maximum is not None and capacity > maximum:
    raise ConfigError(f"{name}.capacity must be at most {maximum}, got {capacity}")
  return capacity
