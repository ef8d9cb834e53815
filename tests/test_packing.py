"""The replay server role's packed item layout: bit-exact round trips, through
the packing alone and through a real Reverb server (writers -> table -> the
learner's dataset)."""

import numpy as np
import pytest
import reverb
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import trajectory

from trainer.replay import layout
from trainer.replay import reverb as reverb_replay
from trainer.replay.packing import StepPacking

_SPEC = {
    "observation": tf.TensorSpec([2, 3], tf.float32),
    "action": tf.TensorSpec([], tf.int64),
    "done": tf.TensorSpec([], tf.bool),
    "small": tf.TensorSpec([4], tf.uint8),
    "half": tf.TensorSpec([1], tf.float16),
    "empty": (),
}


def _step(rng) -> dict:
  return {"observation": rng.normal(size=(2, 3)).astype(np.float32),
          "action": rng.integers(-2**40, 2**40, dtype=np.int64),
          "done": bool(rng.integers(2)), "small": rng.integers(0, 256, 4).astype(np.uint8),
          "half": rng.normal(size=1).astype(np.float16), "empty": ()}


def test_pack_then_unpack_a_batch_is_bit_exact():
  packing = StepPacking(_SPEC)
  assert packing.width == 24 + 8 + 1 + 4 + 2
  rng = np.random.default_rng(0)
  steps = [[_step(rng) for _ in range(2)] for _ in range(5)]  # [batch 5, sequence 2]
  packed = np.stack([np.stack([packing.pack(s) for s in row]) for row in steps])
  assert packed.dtype == np.uint8 and packed.shape == (5, 2, packing.width)
  unpacked = packing.unpack(tf.constant(packed))
  for name in ("observation", "action", "done", "small", "half"):
    expected = np.array([[s[name] for s in row] for row in steps])
    got = unpacked[name].numpy()
    assert got.dtype == expected.dtype and got.shape == expected.shape, name
    np.testing.assert_array_equal(got, expected, err_msg=name)
  assert unpacked["empty"] == ()


def test_matches_only_its_own_column():
  packing = StepPacking(_SPEC)
  assert packing.matches(packing.column_spec(2), 2)
  assert not packing.matches(packing.column_spec(3), 2)
  assert not packing.matches(tf.TensorSpec([2, packing.width], tf.int8), 2)
  assert not packing.matches(tensor_spec.add_outer_dim(_SPEC, 2), 2)


@pytest.mark.parametrize("shards", [1, 3])
def test_packed_table_round_trip_through_a_reverb_server(tmp_path, shards):
  """Collector-side writers pack, the learner-side dataset unpacks: the batch
  holds exactly the trajectories written (each 2-step item, one env's steps).
  Sharded, each writer fills the shards in turn and each batch comes from one
  shard, every shard in its turn."""
  data_spec = trajectory.Trajectory(
      step_type=tf.TensorSpec([], tf.int32), observation=tf.TensorSpec([4], tf.float32),
      action=tf.TensorSpec([], tf.int64), policy_info=(),
      next_step_type=tf.TensorSpec([], tf.int32), reward=tf.TensorSpec([], tf.float32),
      discount=tf.TensorSpec([], tf.float32))
  packing = StepPacking(data_spec)
  control = layout.RateControl(samples_per_insert=1e6, min_size_to_sample=1, error_buffer=1e9)
  server = reverb.Server(layout.replay_tables("uniform_table", 999, shards,
                                              packing.column_spec(2), control), port=None)
  replay = reverb_replay.ReverbReplay(
      layout.ReplayLayout("uniform_table", 999, data_spec, 2),
      scratch_dir=str(tmp_path / "scratch"), address=f"localhost:{server.port}",
      restore_dir=None, num_envs=2)
  try:
    assert replay.layout.packed and replay.layout.shards == shards  # read from the server
    written = {}
    for t in range(6):  # two environments; a mid episode step each time
      rows = [trajectory.Trajectory(
          step_type=np.int32(1), observation=np.full(4, 10 * env + t, np.float32) + 0.25,
          action=np.int64(2**40 + 10 * env + t), policy_info=(), next_step_type=np.int32(1),
          reward=np.float32(t), discount=np.float32(env)) for env in range(2)]
      replay.observer(tf.nest.map_structure(lambda *xs: np.stack(xs), *rows))
      for env, row in enumerate(rows):
        written[(env, t)] = row
    assert replay.size() == 2 * 5  # 5 two-step items per environment
    info = reverb.Client(replay.address).server_info()
    names = layout.table_shards(info, "uniform_table")
    assert len(names) == shards
    assert sorted(info[n].current_size for n in names) == sorted(
        10 // shards + (i < 10 % shards) for i in range(shards))  # in turn: evenly
    batches = iter(replay.dataset(32))
    seen = set()
    for _ in range(8 * shards):
      experience, info = next(batches)
      assert experience.observation.shape == (32, 2, 4) and experience.action.dtype == tf.int64
      assert info.key.shape == (32,)
      of_batch = set()
      for i in range(32):
        env, t = int(experience.discount[i, 0]), int(experience.reward[i, 0])
        of_batch.add((env + t) % shards)  # env's writer starts on shard env, then in turn
        for k in range(2):
          expected = written[(env, t + k)]
          got = tf.nest.map_structure(lambda x, i=i, k=k: x[i, k].numpy(), experience)
          np.testing.assert_array_equal(got.observation, expected.observation)
          assert got.action == expected.action and got.step_type == expected.step_type
      assert len(of_batch) == 1  # one shard's batch
      seen |= of_batch
    assert seen == set(range(shards))
  finally:
    replay.close()
    server.stop()
