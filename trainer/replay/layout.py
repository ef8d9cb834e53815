"""The Reverb replay's layout (`ReplayLayout`): its tables' names, sizes, item
shape and rate limiter, and what each side makes of it: the server its tables,
the learner its sampled tables, the collectors their writers.

A replay of `shards` tables is named `<name>.0` ... `<name>.<k-1>` (one: the
table itself); its capacity is split evenly between them, and each limits the
rate on its own part of the inserts and samples. An item is `sequence_length`
consecutive steps of one environment, each step one packed column
(`trainer.replay.packing`: the replay server role's tables) or TF-Agents'
column per field (the in-process table's).
"""

import dataclasses
import functools
import inspect
import math
from typing import Any

import gin
import reverb
from tf_agents.specs import tensor_spec

from trainer.replay.packing import FramePacking, StepPacking
from trainer.replay.writers import PerRowWriters, per_env_writers

DEFAULT_TABLE = "uniform_table"  # create_reverb_replay.table_name's default


def shard_names(table_name: str, shards: int) -> list[str]:
  """The tables of a replay split in `shards` (one: the table itself)."""
  return [table_name] if shards == 1 else [f"{table_name}.{i}" for i in range(shards)]


def table_shards(server_info: dict, table_name: str) -> list[str]:
  """The tables that hold the replay `table_name` on a server: the table
  itself, or its shards `<name>.0` ... `<name>.<k-1>` (the replay server
  role's); [] if it has neither."""
  if table_name in server_info:
    return [table_name]
  shards = []
  while f"{table_name}.{len(shards)}" in server_info:
    shards.append(f"{table_name}.{len(shards)}")
  return shards


def replay_size(server_info: dict, table_name: str) -> int:
  """Items in the replay `table_name`, over all its shards."""
  return sum(int(server_info[t].current_size) for t in table_shards(server_info, table_name))


def shard_capacities(capacity: int, shards: int) -> list[int]:
  """`capacity` split as evenly as it goes (the first shards hold one more)."""
  return [capacity // shards + (i < capacity % shards) for i in range(shards)]


@dataclasses.dataclass(frozen=True)
class RateControl:
  """Samples per inserted item, and the slack around it (in samples)."""

  samples_per_insert: float
  min_size_to_sample: int
  error_buffer: float

  def limiter(self) -> reverb.rate_limiters.SampleToInsertRatio:
    return reverb.rate_limiters.SampleToInsertRatio(
        samples_per_insert=self.samples_per_insert, min_size_to_sample=self.min_size_to_sample,
        error_buffer=self.error_buffer)

  def per_shard(self, shards: int) -> "RateControl":
    """Each shard's limiter: it sees 1/shards of the inserts and samples, so the
    replay's slack and start size are split between them."""
    return RateControl(self.samples_per_insert, math.ceil(self.min_size_to_sample / shards),
                       max(self.error_buffer / shards, self.samples_per_insert, 1.0))

  def matches(self, info) -> bool:
    """Whether a table's `rate_limiter_info` is this control (a restored table keeps
    the settings it was saved with, whatever the config says)."""
    low = self.min_size_to_sample * self.samples_per_insert - self.error_buffer
    high = self.min_size_to_sample * self.samples_per_insert + self.error_buffer
    return (abs(info.samples_per_insert - self.samples_per_insert) < 1e-9
            and info.min_size_to_sample == self.min_size_to_sample
            and abs(info.min_diff - low) < 1e-6 and abs(info.max_diff - high) < 1e-6)


def replay_tables(name: str, capacity: int, shards: int, signature,
                  control: RateControl | None) -> list[reverb.Table]:
  """The replay's tables: FIFO, sampled uniformly, rate-limited each (`control`;
  None: sampled from the first item on, without a ratio)."""
  limiter = control.per_shard(shards) if control is not None else None
  return [reverb.Table(table, max_size=size, sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(),
                       rate_limiter=(limiter.limiter() if limiter is not None
                                     else reverb.rate_limiters.MinSize(1)),
                       signature=signature)
          for table, size in zip(shard_names(name, shards), shard_capacities(capacity, shards),
                                 strict=True)]


@dataclasses.dataclass(frozen=True)
class ReplayLayout:
  """The replay: `shards` tables of `name` holding `capacity` items between
  them, each item `sequence_length` steps of `data_spec`, each step one packed
  column (`packed`) or a column per field, rate-limited by `control` (None:
  sampled from the first item on). `builder`: the configured replay's gin name.
  `frame_stack` > 1: observations are stacks of that many frames, and a packed
  step holds only its newest frame (`FramePacking`: pixel observations)."""

  name: str
  capacity: int
  data_spec: Any
  sequence_length: int
  shards: int = 1
  packed: bool = False
  control: RateControl | None = None
  builder: str = "create_reverb_replay"
  frame_stack: int = 1

  @property
  def table_names(self) -> list[str]:
    return shard_names(self.name, self.shards)

  @property
  def capacities(self) -> list[int]:
    return shard_capacities(self.capacity, self.shards)

  @functools.cached_property
  def packing(self) -> StepPacking | None:
    """How a step is packed into one column; None: a column per field."""
    if not self.packed:
      return None
    if self.frame_stack > 1:
      return FramePacking(self.data_spec, self.frame_stack)
    return StepPacking(self.data_spec)

  @property
  def signature(self):
    """An item's signature on the server."""
    if self.packing is not None:
      return self.packing.column_spec(self.sequence_length)
    return tensor_spec.add_outer_dim(self.data_spec, self.sequence_length)

  def tables(self) -> list[reverb.Table]:
    """The server's tables of the replay."""
    return replay_tables(self.name, self.capacity, self.shards, self.signature, self.control)

  def served(self, server_info: dict) -> "ReplayLayout":
    """The replay as a server holds it: its shards, and its item layout read
    from their signature (Reverb restores a table with its saved signature;
    an outside server's tables hold a column per field). A server without the
    replay: its one table, as named (writing or sampling it fails)."""
    names = table_shards(server_info, self.name)
    packed = bool(names) and dataclasses.replace(self, packed=True).packing.matches(
        server_info[names[0]].signature, self.sequence_length)
    return dataclasses.replace(self, shards=max(len(names), 1), packed=packed)

  def writers(self, client: reverb.Client, num_envs: int) -> PerRowWriters:
    """An observer of batched steps writing each environment's row as items of
    this layout, to the shards in turn (`trainer.replay.writers`)."""
    return per_env_writers(client, self.table_names, self.sequence_length, num_envs,
                           self.packing)

  def fix(self) -> str:
    """What to do about a restored replay that the config does not describe."""
    return (f"Reverb keeps a saved table's settings: set {self.builder}.capacity and "
            "replay_shards.shards back to what the run started with, or start a new --root_dir")

  def describe(self) -> str:
    split = f" in {self.shards} shards" if self.shards > 1 else ""
    rate = (f", {self.control.samples_per_insert:g} samples per insert"
            if self.control is not None else "")
    frames = f", {self.frame_stack}-frame stacks stored a frame a step" if self.frame_stack > 1 \
        else ""
    return f"table {self.name!r} (capacity {self.capacity}{split}{rate}{frames})"


def configured_table(replay_fn: Any) -> tuple[int, str]:
  """(capacity, table name) of the configured replay builder, read from its gin
  bindings: a job configured with the in-graph buffer runs its roles on a
  Reverb table of the same capacity (and the default table name)."""
  parameters = inspect.signature(replay_fn).parameters
  capacity = configured_value(replay_fn, "capacity")
  table = configured_value(replay_fn, "table_name") if "table_name" in parameters \
      else DEFAULT_TABLE
  return capacity, table


def configured_value(replay_fn: Any, param: str) -> Any:
  """The replay builder's `param` as gin binds it, or its signature's default."""
  try:
    return gin.query_parameter(f"{getattr(replay_fn, '__name__', '')}.{param}")
  except ValueError:
    return inspect.signature(replay_fn).parameters[param].default
