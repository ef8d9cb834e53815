"""The replay's own writers (`trainer.replay.writers`) against a real Reverb
server on loopback: the items of TF-Agents' observer, packed or not, and still
packed after a close() and open()."""

import numpy as np
import pytest
import reverb
import tensorflow as tf
from tf_agents.replay_buffers import reverb_utils
from tf_agents.trajectories import trajectory

from trainer.replay.packing import StepPacking
from trainer.replay.writers import SequenceWriter, per_env_writers

_SPEC = trajectory.Trajectory(
    step_type=tf.TensorSpec([], tf.int32), observation=tf.TensorSpec([3], tf.float32),
    action=tf.TensorSpec([], tf.int64), policy_info=(),
    next_step_type=tf.TensorSpec([], tf.int32), reward=tf.TensorSpec([], tf.float32),
    discount=tf.TensorSpec([], tf.float32))


def _episode(start: int, length: int) -> list[trajectory.Trajectory]:
  """`length` steps, the last one ending the episode; observations count from `start`."""
  steps = []
  for t in range(length):
    first, last = t == 0, t == length - 1
    steps.append(trajectory.Trajectory(
        step_type=np.int32(0 if first else 1), observation=np.full(3, start + t, np.float32),
        action=np.int64(start + t), policy_info=(), next_step_type=np.int32(2 if last else 1),
        reward=np.float32(t), discount=np.float32(0.0 if last else 1.0)))
  # TF-Agents' drivers end an episode with a boundary step (LAST -> FIRST).
  steps.append(trajectory.Trajectory(
      step_type=np.int32(2), observation=np.full(3, start + length, np.float32),
      action=np.int64(start + length), policy_info=(), next_step_type=np.int32(0),
      reward=np.float32(0), discount=np.float32(1.0)))
  return steps


def _items(client: reverb.Client, table: str, count: int) -> list:
  """The `count` items of a queue table, in the order they were written: each
  its columns (a `Trajectory`'s fields, or one packed column)."""
  return [[np.asarray(column) for column in sample.data]
          for sample in client.sample(table, num_samples=count, emit_timesteps=False)]


@pytest.fixture
def server():
  packing = StepPacking(_SPEC)
  server = reverb.Server([reverb.Table.queue("tf_agents", 100), reverb.Table.queue("ours", 100),
                          *(reverb.Table.queue(f"packed.{i}", 100,
                                               signature=packing.column_spec(2))
                            for i in range(2))], port=None)
  yield server
  server.stop()


def test_items_are_those_of_tf_agents_observer(server):
  """Same sequences (stride 1, none across an episode's end), same fields, same priority."""
  client = reverb.Client(f"localhost:{server.port}")
  observer = reverb_utils.ReverbAddTrajectoryObserver(client, "tf_agents", sequence_length=2,
                                                      stride_length=1)
  ours = SequenceWriter(client, ["ours"], sequence_length=2)
  steps = _episode(0, 4) + _episode(100, 1) + _episode(200, 3)
  for step in steps:
    observer(step)
    ours(step)
  observer.close()
  ours.close()
  info = client.server_info()
  assert info["ours"].current_size == info["tf_agents"].current_size == 4 + 1 + 3
  expected, got = _items(client, "tf_agents", 8), _items(client, "ours", 8)
  for want, have in zip(expected, got, strict=True):
    assert len(want) == len(have) == len(tf.nest.flatten(_SPEC))
    for a, b in zip(want, have, strict=True):
      assert a.dtype == b.dtype and a.shape == b.shape
      np.testing.assert_array_equal(a, b)
  got = [tf.nest.pack_sequence_as(_SPEC, item) for item in got]
  assert [int(item.action[0]) for item in got] == [0, 1, 2, 3, 100, 200, 201, 202]


def test_a_reopened_writer_still_packs_and_goes_on_in_turn(server):
  """The patched TF-Agents observer lost its packing when its writer was
  reopened: items went to the first shard as unpacked columns."""
  client = reverb.Client(f"localhost:{server.port}")
  packing = StepPacking(_SPEC)
  writers = per_env_writers(client, ["packed.0", "packed.1"], 2, 1, packing)
  batched = lambda step: tf.nest.map_structure(lambda x: np.asarray(x)[None], step)  # noqa: E731
  steps = _episode(0, 2)
  writers(batched(steps[0]))
  writers(batched(steps[1]))  # one item: packed.0
  writers.close()
  writers.open()
  for step in _episode(10, 4):  # four items: packed.1, packed.0, packed.1, packed.0
    writers(batched(step))
  writers.flush(timeout_ms=10_000)
  info = client.server_info()
  assert [info[f"packed.{i}"].current_size for i in range(2)] == [3, 2]
  first = [packing.unpack(tf.constant(item)) for [item] in _items(client, "packed.0", 3)]
  assert [item.action.numpy().tolist() for item in first] == [[0, 1], [11, 12], [13, 14]]
  np.testing.assert_array_equal(first[1].observation.numpy(), np.full((2, 3), [[11], [12]]))
  second = [packing.unpack(tf.constant(item)) for [item] in _items(client, "packed.1", 2)]
  assert [item.action.numpy().tolist() for item in second] == [[10, 11], [12, 13]]
  writers.close()
