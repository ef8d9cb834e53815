"""The replay server's tables, and what each role reads and writes in them.

One Reverb server holds, and checkpoints together (one consistent snapshot):

- the replay (`create_reverb_replay.table_name`, laid out by `replay_layout`): sequences written by the
  collectors, sampled by the learner, with a `SampleToInsertRatio` rate limiter
  (`rate_control`) so that the collect:train ratio does not depend on which
  process happens to be faster. It is split into `replay_shards` tables
  `<name>.0` ... (each collector writes its sequences to them in turn, the
  learner samples each batch from one): Reverb's checkpoint of a table holds
  that table's lock while it copies its items, ~2 s per million, and sampling
  waits for it; with shards, the learner samples from the others meanwhile
  (docs/benchmarks.md, "replay checkpoint stall");
- `variables`: the newest policy weights and train step, pushed by the learner
  and pulled by the collectors, signed (`weights`);
- `counters_<I>`: collector I's env steps and episodes that reached the replay,
  signed (`auth`).

Because the counters live in the server, a checkpoint of it holds the replay and
the counters of one instant, and a collector restarted (or a server restored)
continues from what the replay holds.
"""

import dataclasses

import gin
import numpy as np
import reverb
import tensorflow as tf

from trainer.config import values
from trainer.config.settings import Settings
from trainer.errors import ConfigError
from trainer.replay.layout import RateControl, ReplayLayout, configured_table, configured_value
from trainer.roles import auth, connection, rolefiles, weights

VARIABLES_TABLE = weights.TABLE
MAX_COLLECTORS = rolefiles.MAX_COLLECTORS  # counter tables the server holds, one per task


def counters_table(task: int) -> str:
  return f"counters_{task}"


@gin.configurable("rate_control")
def rate_control(settings: Settings, *, samples_per_insert: float | None = None,
                 error_buffer_chunks: int = 8) -> RateControl:
  """The replay table's ratio of samples (sequences the learner trains on) to
  inserts (sequences the collectors write).

  Args:
    settings: the job's knobs.
    samples_per_insert: None: the single-process job's own ratio,
      `batch_size * train_steps_per_iteration / collect_steps_per_iteration`.
    error_buffer_chunks: how far either side may run ahead of the ratio, in
      collect chunks of all the learner's samples (`train_steps_per_iteration *
      batch_size` each): the smaller, the more each waits for the other.
  """
  if samples_per_insert is None:
    samples_per_insert = (settings.batch_size * settings.train_steps_per_iteration
                          / settings.collect_steps_per_iteration)
  values.check_samples_per_insert(samples_per_insert)
  values.check_error_buffer_chunks(error_buffer_chunks)
  chunk = settings.batch_size * settings.train_steps_per_iteration
  # At least one batch of slack either way, or the first sample could never happen.
  buffer = float(max(error_buffer_chunks * chunk, 2 * settings.batch_size, samples_per_insert))
  return RateControl(float(samples_per_insert),
                     max(settings.initial_collect_steps, settings.batch_size), buffer)


@gin.configurable("replay_shards")
def replay_shards(capacity: int, *, shards: int = 8) -> int:
  """How many tables the replay server splits the replay into (module doc).

  Args:
    capacity: the replay's capacity; each shard holds an equal part of it.
    shards: 1 keeps one table (sampling stalls while the server checkpoints it).
  """
  values.check_replay_shards(shards, capacity)
  return shards


def replay_layout(replay_fn, settings: Settings, data_spec, sequence_length: int) -> ReplayLayout:
  """The replay as the roles hold it: the configured replay builder's capacity
  and table name (`configured_table`), in `replay_shards` tables of packed
  steps (`trainer.replay.packing`: the learner samples ~3x faster), limited by
  `rate_control`. The server builds its tables from it; the learner and the
  collectors read what the server holds (`ReplayLayout.served`).

  A job on the frame replay (`create_frame_replay`: pixels) keeps its frame
  layout: each step holds only its observation's newest frame and the learner
  rebuilds the stacks (`FramePacking`), so the server holds each frame once, as
  the single-process job does. What does not carry over is the frame replay's
  own persistence: the server's checkpoint is Reverb's, a full copy of its
  tables (docs/frame_replay.md)."""
  capacity, name = configured_table(replay_fn)
  frame_stack = 1
  if getattr(replay_fn, "__name__", "") == "create_frame_replay":
    frame_stack = configured_value(replay_fn, "frame_stack")
    if frame_stack > 1 and not _stacks_of(data_spec.observation, frame_stack):
      raise ConfigError(
          f"create_frame_replay.frame_stack={frame_stack} does not fit the observations "
          f"({data_spec.observation.dtype.name} {data_spec.observation.shape}): set it to the "
          "environment's frame stack (the last axis of its observation), or to 1")
  return ReplayLayout(name, capacity, data_spec, sequence_length, shards=replay_shards(capacity),
                      packed=True, control=rate_control(settings), builder=replay_fn.__name__,
                      frame_stack=frame_stack)


def _stacks_of(observation, frame_stack: int) -> bool:
  return (isinstance(observation, tf.TensorSpec) and observation.shape.rank is not None
          and observation.shape.rank >= 1 and observation.shape[-1] == frame_stack)


COUNTERS_SIGNATURE = (tf.TensorSpec((), tf.string),  # the record's signature (auth)
                      tf.TensorSpec((), tf.int64),  # env steps
                      tf.TensorSpec((), tf.int64))  # episodes


def counter_tables() -> list[reverb.Table]:
  return [reverb.Table(counters_table(task), max_size=1, sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(),
                       rate_limiter=reverb.rate_limiters.MinSize(1),
                       signature=COUNTERS_SIGNATURE)
          for task in range(MAX_COLLECTORS)]


# --- the counters, as the roles read and write them ------------------------

def write_counters(client: reverb.Client, key: bytes, task: int, env_steps: int,
                   episodes: int) -> None:
  """Collector `task`'s totals, signed (the newest item replaces the one before)."""
  connection.insert(client, [np.bytes_(auth.counters_mac(key, task, env_steps, episodes)),
                             np.int64(env_steps), np.int64(episodes)], counters_table(task))


@dataclasses.dataclass(frozen=True)
class Counters:
  """What the server holds of the collectors: `signed`, task -> (env steps,
  episodes) of the records that verify; `forged`, the tasks whose record does not."""

  signed: dict[int, tuple[int, int]]
  forged: list[int]


def read_counters(client: reverb.Client, key: bytes, timeout: int | None = None,
                  tasks: list[int] | None = None) -> Counters:
  """The counters of collectors `tasks` (all) that the server holds, checked against `key`."""
  info = client.server_info(timeout)
  signed, forged = {}, []
  for task in range(MAX_COLLECTORS) if tasks is None else tasks:
    table = info.get(counters_table(task))
    if table is None or not table.current_size:
      continue
    record = connection.sample_one(client, counters_table(task))
    if record is None:  # emptied meanwhile
      continue
    try:
      mac, env_steps, episodes = record[0].item(), int(record[1]), int(record[2])
    except (ValueError, TypeError, IndexError, AttributeError):
      forged.append(task)
      continue
    if auth.verify(auth.counters_mac(key, task, env_steps, episodes), mac):
      signed[task] = (env_steps, episodes)
    else:
      forged.append(task)
  return Counters(signed, forged)
