"""The Reverb replay's table layout: its tables' names, sizes and rate limiter.

A replay of `shards` tables is named `<name>.0` ... `<name>.<k-1>` (one: the
table itself); its capacity is split evenly between them, and each limits the
rate on its own part of the inserts and samples.
"""

import dataclasses
import math

import reverb


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
                  control: RateControl) -> list[reverb.Table]:
  """The replay's tables: FIFO, sampled uniformly, rate-limited each."""
  limiter = control.per_shard(shards)
  return [reverb.Table(table, max_size=size, sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(), rate_limiter=limiter.limiter(),
                       signature=signature)
          for table, size in zip(shard_names(name, shards), shard_capacities(capacity, shards),
                                 strict=True)]
