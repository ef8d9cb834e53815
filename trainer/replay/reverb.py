"""A Reverb table as the replay, served in-process or by a server at an address."""

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import gin
import reverb
import tensorflow as tf
from absl import logging
from tf_agents.replay_buffers import reverb_replay_buffer

from trainer.errors import ConfigError, RunDirError, one_line
from trainer.replay import bind
from trainer.replay.base import _DATASET_PREFETCH, Replay, ReplaySaveError, check_capacity
from trainer.replay.layout import DEFAULT_TABLE, ReplayLayout, replay_size, table_shards
from trainer.replay.reset_watch import ResetWatch
from trainer.rundir import layout

_REVERB_MAX_SIZE = 2**31 - 1  # a Reverb table's max_size is a C int
_INFO_TIMEOUT_S = 60  # seconds a server may take to answer server_info
# A packed table's dataset: sampler threads, and samples each keeps requested
# ahead (Reverb's advice: 2-3x the batch; docs/benchmarks.md).
_SAMPLE_WORKERS = 2
_IN_FLIGHT_BATCHES = 2
# In a bundle whose replay lives on an outside server: that server's checkpoint path.
REMOTE_FILE = "reverb_remote.json"
_CHECKPOINT_TRIES = 5  # checkpoints replaced by other clients' before one is moved: refused


class ReplayResetError(ReplaySaveError):
  """A client emptied the replay's table (`ResetWatch`): its checkpoint is not a bundle's."""


class ReverbReplay(Replay):
  """A Reverb table with uniform sampling and FIFO removal."""

  def __init__(self, layout: ReplayLayout, *, scratch_dir: str, address: str | None,
               restore_dir: str | None, num_envs: int = 1, run_dir: str | None = None,
               sample_timeout_ms: int = -1):
    """`layout`: the replay as configured; a server at `address` holds its own
    (`ReplayLayout.served`), and `address` None starts one in-process on
    `layout`'s tables. `run_dir`: a server checkpoint written under it (the
    replay server role's, on the run's filesystem) is moved into the bundle, as
    an in-process one is. `sample_timeout_ms`: how long the dataset waits for
    the rate limiter before it ends (-1: for ever)."""
    self.capacity = layout.capacity
    self._layout = layout
    self._served = layout  # set by connect: the layout the server holds
    self._table_name = layout.name
    self._sequence_length = layout.sequence_length
    self._run_dir = run_dir
    self._sample_timeout_ms = sample_timeout_ms
    self._scratch_dir = scratch_dir
    self._server = None
    if address is None:
      self._server = self._start_server(restore_dir)
      address = f"{bind.LOOPBACK}:{self._server.port}"
    self._num_envs = num_envs
    self._observer = None
    self.connect(address)
    self._check_table(restore_dir)

  def connect(self, address: str) -> None:
    """(Re)connects the client, the dataset and the writers to the server at
    `address` (after a restart of the replay server role)."""
    if self._observer is not None:
      try:
        self._observer.close()
      except Exception:  # noqa: BLE001  (the old server is gone; its writers with it)
        pass
    self.address = address
    self._client = reverb.Client(address)
    self._resets = ResetWatch()  # another server process: its own counts
    self._served = served = self._layout.served(self._client.server_info(_INFO_TIMEOUT_S))
    # TF-Agents' buffer: the dataset of an unpacked (and so unsharded) table.
    self._buffer = reverb_replay_buffer.ReverbReplayBuffer(
        served.data_spec, served.table_names[0], sequence_length=served.sequence_length,
        server_address=address, rate_limiter_timeout_ms=self._sample_timeout_ms)
    self._observer = served.writers(self._client, self._num_envs)

  @property
  def layout(self) -> ReplayLayout:
    """The replay as the server holds it (its shards, its item layout)."""
    return self._served

  def dataset(self, batch_size: int) -> tf.data.Dataset:
    served = self._served
    if served.packing is None:
      return super().dataset(batch_size)
    # One sampler for the whole batch, batched before anything else: the
    # per-sample work is Reverb's alone, and the unpacking runs once a batch.
    column = served.signature
    shards = served.table_names
    workers = _SAMPLE_WORKERS if len(shards) == 1 else 1

    def batches(table):
      samples = reverb.TrajectoryDataset(
          self.address, table, column.dtype, column.shape,
          max_in_flight_samples_per_worker=_IN_FLIGHT_BATCHES * batch_size,
          num_workers_per_iterator=workers, rate_limiter_timeout_ms=self._sample_timeout_ms)
      return samples.batch(batch_size, drop_remainder=True)

    if len(shards) == 1:
      batched = batches(shards[0])
    else:
      # Each batch from one shard (its items are every k-th sequence written:
      # a uniform sample of the replay), taken from whichever shard has one
      # ready: a shard the server is checkpointing (its table locked while
      # Reverb copies its items) is passed over meanwhile.
      batched = tf.data.Dataset.from_tensor_slices(shards).interleave(
          batches, cycle_length=len(shards), num_parallel_calls=len(shards),
          deterministic=False)
    return (batched.map(lambda sample: (served.packing.unpack(sample.data), sample.info))
            .prefetch(_DATASET_PREFETCH))

  def _start_server(self, restore_dir: str | None) -> reverb.Server:
    # The scratch root must be empty, or Reverb would load whatever it holds
    # instead of the bundle's checkpoint.
    shutil.rmtree(self._scratch_dir, ignore_errors=True)
    os.makedirs(self._scratch_dir)
    checkpointer = reverb.checkpointers.DefaultCheckpointer(
        path=self._scratch_dir, fallback_checkpoint_path=restore_dir)
    try:
      server = reverb.Server(self._layout.tables(), port=None, checkpointer=checkpointer)
    except Exception as e:
      if restore_dir is None:
        raise ConfigError(f"Reverb cannot start the replay table (capacity {self.capacity}): "
                          f"{one_line(e, 200)}; check create_reverb_replay") from e
      raise RunDirError(f"Reverb cannot load the saved replay in {restore_dir}: {e}") from e
    if bind.exposed(bind.listening(server.port)):
      logging.warning("The in-process Reverb replay listens on every interface (port %d): %s; "
                      "python -m trainer.train keeps it on loopback (docs/security.md).",
                      server.port, bind.why_exposed())
    return server

  def _check_table(self, restore_dir: str | None) -> None:
    server_info = self._client.server_info()
    shards = table_shards(server_info, self._table_name)
    if not shards:
      raise ConfigError(f"the Reverb server has no table {self._table_name!r}; set "
                        "create_reverb_replay.table_name to one of its tables")
    info = server_info[shards[0]]
    max_size = sum(server_info[t].max_size for t in shards)
    if max_size != self.capacity:
      self.close()
      raise ConfigError(
          f"the Reverb table {self._table_name!r} holds max_size={max_size} "
          f"(restored from {restore_dir or 'the server'}) but the config says capacity="
          f"{self.capacity}; Reverb keeps the saved table settings, so set "
          f"create_reverb_replay.capacity = {max_size} or start a new --root_dir")
    packing = self._served.packing
    if len(shards) > 1 and packing is None:
      raise ConfigError(f"the Reverb server holds the replay {self._table_name!r} in "
                        f"{len(shards)} shards of another item layout than this agent's "
                        "(did the environment or agent change?); start a new --root_dir")
    if restore_dir is not None and info.signature is not None and packing is None:
      expected = self._served.signature  # TF-Agents' column per field
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
    # A timeout: a server that went away raises instead of blocking for ever.
    return replay_size(self._client.server_info(_INFO_TIMEOUT_S), self._table_name)

  def save(self, target_dir: str) -> None:
    self.flush()
    self._check_not_reset()
    for _ in range(_CHECKPOINT_TRIES):
      path = self._checkpoint()
      if path is None:
        continue
      if self._server is None and not self._ours(path):
        # An outside server owns its checkpoints (and keeps only the latest).
        os.makedirs(target_dir)
        with open(os.path.join(target_dir, REMOTE_FILE), "w") as f:
          json.dump({"server_checkpoint": path, "size": self.size()}, f)
        return
      try:
        os.rename(path, target_dir)
        return
      except FileNotFoundError:
        # Reverb keeps only its newest checkpoint: one that another client asked
        # for since replaced this one (docs/security.md).
        logging.warning("The replay's checkpoint %s was replaced by another before it was moved "
                        "into the bundle (another client asked the server for one); taking it "
                        "again.", path)
    raise ReplaySaveError(f"the replay's checkpoint was replaced {_CHECKPOINT_TRIES} times before "
                          "it could be moved into the bundle: another client keeps asking the "
                          f"Reverb server at {self.address} for checkpoints (docs/security.md)")

  def _checkpoint(self) -> str | None:
    """A checkpoint of the server's tables, unless a client emptied the replay
    meanwhile; None if another client's checkpoint replaced it as it was written."""
    try:
      path = self._client.checkpoint()
    except (RuntimeError, IndexError) as e:
      if self._replaced(e):
        logging.warning("The replay's checkpoint was replaced by another as it was written "
                        "(another client asked the server for one); taking it again.")
        return None
      # A failed write. Reverb raises by the status: a full disk's (ENOSPC,
      # RESOURCE_EXHAUSTED) is an IndexError, a file too large a RuntimeError.
      self._remove_partial_checkpoint()
      raise ReplaySaveError(f"the Reverb checkpoint failed: {one_line(e)}") from e
    try:
      self._check_not_reset()
    except ReplayResetError:
      shutil.rmtree(path, ignore_errors=True)
      raise
    return path

  def inserted(self) -> int:
    """Items ever inserted into the replay's tables (a restored table counts on
    from its checkpoint's count)."""
    info = self._client.server_info(_INFO_TIMEOUT_S)
    return sum(info[t].rate_limiter_info.insert_stats.completed for t in self._served.table_names)

  def _check_not_reset(self) -> None:
    """Refuses to save a replay that a client emptied since the previous look
    (`ResetWatch`; the replay server role restarts from the newest bundle then)."""
    info = self._client.server_info(_INFO_TIMEOUT_S)
    reset = self._resets.reset_tables(info, self._served.table_names)
    if reset:
      raise ReplayResetError(
          f"replay table(s) {', '.join(reset)} on the Reverb server at {self.address} were "
          "emptied by a client's reset() since the previous checkpoint; this bundle is not "
          "committed")

  def _replaced(self, error: BaseException) -> bool:
    """Whether a checkpoint failed because another client's replaced it: Reverb
    keeps only its newest checkpoint and removes the older ones, one still
    being written included, whose write then fails with "... not found" or
    ENOENT (docs/security.md). ENOENT with the scratch directory itself gone is
    a real failure."""
    message = str(error).strip()
    if message.endswith(" not found"):
      return True
    scratch = self._scratch()
    return (message.endswith("No such file or directory") and scratch is not None
            and os.path.isdir(scratch))

  def _scratch(self) -> str | None:
    """Where the server writes its checkpoints, if it is on this filesystem:
    the in-process server's scratch dir, the replay server role's in the run
    directory (an outside server's is its own)."""
    if self._server is not None:
      return self._scratch_dir
    if self._run_dir is not None:
      return os.path.join(self._run_dir, layout.REVERB_SERVER_DIR)
    return None

  def _remove_partial_checkpoint(self) -> None:
    """What the server wrote of a failed checkpoint: its scratch dir holds
    nothing else (each earlier checkpoint was moved into a bundle)."""
    scratch = self._scratch()
    if scratch is None:
      return
    try:
      names = os.listdir(scratch)
    except FileNotFoundError:  # a restarting server makes it anew
      return
    for name in names:
      shutil.rmtree(os.path.join(scratch, name), ignore_errors=True)

  @property
  def client(self) -> reverb.Client:
    return self._client

  def _ours(self, path: str) -> bool:
    """Whether a server checkpoint lies in the run directory (the replay server role's)."""
    if self._run_dir is None:
      return False
    root = os.path.realpath(self._run_dir)
    return os.path.commonpath([root, os.path.realpath(path)]) == root

  def check_restored(self, expected_size: int, saved_dir: str, source: str) -> None:
    """In-process, the table is the bundle's checkpoint, item for item. A
    remote server owns its table: it may hold more than the bundle recorded
    (written after the bundle) but never fewer, unless it lost items."""
    if self._server is not None:
      super().check_restored(expected_size, saved_dir, source)
      return
    size = self.size()
    if size < expected_size:
      fix = (f"Restart it from its checkpoint {_remote_checkpoint(saved_dir)}"
             if os.path.exists(os.path.join(saved_dir, REMOTE_FILE)) else
             "Restart the replay server role (python -m trainer.replay_server loads the newest "
             "bundle)")
      raise RunDirError(
          f"the Reverb server at {self.address} holds {size} items in table "
          f"{self._table_name!r}, fewer than the {expected_size} that {source} recorded: it lost "
          f"items (restarted without its checkpoint?). {fix}, then run the same command")
    if size > expected_size:
      # Expected of the replay server role (its collectors went on), news of an outside server.
      log = logging.info if self._run_dir else logging.warning
      log("The Reverb server at %s holds %d items, %d more than %s recorded (written after it); "
          "training goes on with them.", self.address, size, size - expected_size, source)

  def close(self) -> None:
    if getattr(self, "_observer", None) is not None:
      self._observer.close()
      self._observer = None
    if self._server is not None:
      self._server.stop()
      self._server = None


def _same_specs(a, b) -> bool:
  flat_a, flat_b = tf.nest.flatten(a), tf.nest.flatten(b)
  return len(flat_a) == len(flat_b) and all(
      x.shape == y.shape and x.dtype == y.dtype for x, y in zip(flat_a, flat_b, strict=True))


@gin.configurable
def create_reverb_replay(
    data_spec, *, sequence_length: int, root_dir: str, restore_dir: str | None,
    num_envs: int = 1, capacity: int = 100_000, address: str | None = None,
    table_name: str = DEFAULT_TABLE,
) -> Replay:
  """A Reverb table of `sequence_length`-step sequences (stride 1).

  Args:
    num_envs: collect environments (one writer each; set by the job).
    capacity: maximum number of sequences held (FIFO beyond it).
    address: 'host:port' of a running Reverb server that owns the table; None
      starts a server inside the training process.
    table_name: the table to write to and sample from.
  """
  if restore_dir is not None and os.path.exists(os.path.join(restore_dir, REMOTE_FILE)):
    logging.info("Replay lives on the Reverb server at %s; it restores its own checkpoint.", address)
    restore_dir = None
  capacity = check_capacity("create_reverb_replay", capacity, _REVERB_MAX_SIZE)
  return ReverbReplay(ReplayLayout(table_name, capacity, data_spec, sequence_length),
                      scratch_dir=os.path.join(root_dir, layout.REVERB_SCRATCH_DIR),
                      address=address, restore_dir=restore_dir, num_envs=num_envs)


# The bindings that shape the saved table (Reverb restores its saved settings):
# a change cannot restore (trainer.loops.config_change).
create_reverb_replay.saved_form_bindings = ("create_reverb_replay.capacity",
                                            "create_reverb_replay.table_name")


def _remote_checkpoint(saved_dir: str) -> str:
  """The server checkpoint that a bundle of a remote table recorded."""
  try:
    with open(os.path.join(saved_dir, REMOTE_FILE)) as f:
      return json.load(f)["server_checkpoint"]
  except (OSError, ValueError, KeyError):
    return f"(not recorded in {saved_dir})"
