"""The replay server role's packed item layout: bit-exact round trips, through
the packing alone and through a real Reverb server (writers -> table -> the
learner's dataset)."""

import numpy as np
import pytest
import reverb
import tensorflow as tf
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import trajectory

from trainer import errors
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


# --- the frame layout (pixel observations: one frame a step) ------------------

_FRAMES = 3  # frames in a stack
_FRAME_SPEC = trajectory.Trajectory(
    step_type=tf.TensorSpec([], tf.int32),
    observation=tf.TensorSpec([2, 3, _FRAMES], tf.uint8),
    action=tf.TensorSpec([], tf.int64), policy_info=(),
    next_step_type=tf.TensorSpec([], tf.int32), reward=tf.TensorSpec([], tf.float32),
    discount=tf.TensorSpec([], tf.float32))


def _stacked_episodes(rng, env: int, lengths: list[int]) -> list[trajectory.Trajectory]:
  """Steps of episodes as trainer's FrameStack observes them (zeros before an
  episode's first frame, shifting by one), each step's reward its index and
  discount its environment, so a sampled step says which it was."""
  steps, index = [], 0
  for length in lengths:
    stack = np.zeros((2, 3, _FRAMES), np.uint8)
    for t in range(length + 1):  # the episode's steps, then its boundary step
      stack = np.concatenate([stack[..., 1:], rng.integers(1, 256, (2, 3, 1), np.uint8)], -1)
      step_type = 0 if t == 0 else (2 if t == length else 1)
      next_type = 2 if t == length - 1 else (0 if t == length else 1)
      steps.append(trajectory.Trajectory(
          step_type=np.int32(step_type), observation=stack.copy(), action=np.int64(index),
          policy_info=(), next_step_type=np.int32(next_type), reward=np.float32(index),
          discount=np.float32(env)))
      index += 1
  return steps


def test_frame_packing_holds_one_frame_a_step_and_rebuilds_the_stacks():
  packing = StepPacking(_FRAME_SPEC)
  frames = layout.ReplayLayout("t", 10, _FRAME_SPEC, 2, packed=True, frame_stack=_FRAMES).packing
  assert frames.lead == _FRAMES - 1
  assert packing.width - frames.width == 6 * (_FRAMES - 1)  # the older frames are not stored
  assert frames.column_spec(2).shape == (2 + _FRAMES - 1, frames.width)
  assert frames.matches(frames.column_spec(2), 2) and not packing.matches(frames.column_spec(2), 2)
  steps = _stacked_episodes(np.random.default_rng(1), 0, [6])
  columns = frames.lead_columns(steps[0].observation) + [frames.pack(s) for s in steps]
  item = np.stack(columns[3:3 + 2 + frames.lead])  # steps 3 and 4 with their lead
  got = frames.unpack(tf.constant(item[None]))
  np.testing.assert_array_equal(got.observation.numpy()[0],
                                np.stack([steps[3].observation, steps[4].observation]))
  np.testing.assert_array_equal(got.reward.numpy()[0], [3, 4])


@pytest.mark.parametrize("shards", [1, 2])
def test_frame_layout_round_trip_through_a_reverb_server_is_bit_exact(tmp_path, shards):
  """Collectors' writers store a frame a step; every sampled stack is exactly the
  observation written at that step: over episode starts (zeros before the first
  frame), boundaries (no item spans two episodes) and a writer reopened mid-episode
  (a collector that reconnected: its lead columns are the stack's real older frames)."""
  rng = np.random.default_rng(0)
  served = layout.ReplayLayout("uniform_table", 999, _FRAME_SPEC, 2, packed=True,
                               frame_stack=_FRAMES)
  control = layout.RateControl(samples_per_insert=1e6, min_size_to_sample=1, error_buffer=1e9)
  server = reverb.Server(layout.replay_tables("uniform_table", 999, shards,
                                              served.signature, control), port=None)
  replay = reverb_replay.ReverbReplay(
      served, scratch_dir=str(tmp_path / "scratch"), address=f"localhost:{server.port}",
      restore_dir=None, num_envs=2)
  try:
    assert replay.layout.packing.lead == _FRAMES - 1  # read back from the server's signature
    episodes = [_stacked_episodes(rng, env, [1, 4, 7, 2]) for env in range(2)]
    written = {(env, int(s.reward)): s for env in range(2) for s in episodes[env]}
    for t in range(len(episodes[0])):
      if t == 9:  # mid-episode (the third, at its 3rd step): the collector reconnects
        replay.observer.close()
        replay.observer.open()
      replay.observer(tf.nest.map_structure(lambda *xs: np.stack(xs), *(e[t] for e in episodes)))
    # Items per episode of n steps: n (its n + 1 steps, boundary included, in pairs); the
    # reopened writer loses the pair that spans the reconnection.
    assert replay.size() == 2 * (1 + 4 + 7 + 2 - 1)
    seen = set()
    batches = iter(replay.dataset(16))
    for _ in range(20):
      experience, _ = next(batches)
      assert experience.observation.shape == (16, 2, 2, 3, _FRAMES)
      for i in range(16):
        env, first = int(experience.discount[i, 0]), int(experience.reward[i, 0])
        for k in range(2):
          expected = written[(env, first + k)]
          np.testing.assert_array_equal(experience.observation[i, k].numpy(),
                                        expected.observation)
          assert int(experience.step_type[i, k]) == int(expected.step_type)
        assert not (written[(env, first)].is_boundary())  # never from one episode to the next
        seen.add((env, first))
    assert len(seen) == 2 * 13  # every item sampled
  finally:
    replay.close()
    server.stop()


def test_frame_layout_writer_refuses_observations_that_are_not_frame_stacks():
  served = layout.ReplayLayout("t", 99, _FRAME_SPEC, 2, packed=True, frame_stack=_FRAMES)
  server = reverb.Server(layout.replay_tables("t", 99, 1, served.signature, None), port=None)
  try:
    writers = served.writers(reverb.Client(f"localhost:{server.port}"), 1)
    steps = _stacked_episodes(np.random.default_rng(2), 0, [5])
    writers(tf.nest.map_structure(lambda x: np.stack([x]), steps[0]))
    writers(tf.nest.map_structure(lambda x: np.stack([x]), steps[1]))
    skipped = steps[3]  # its stack does not follow step 1's
    with pytest.raises(errors.ConfigError, match="not frame stacks as the replay's frame layout"):
      writers(tf.nest.map_structure(lambda x: np.stack([x]), skipped))
    unzeroed = steps[0]._replace(observation=np.full((2, 3, _FRAMES), 7, np.uint8))
    writers.close()
    writers.open()
    with pytest.raises(errors.ConfigError, match="zeros before an episode's first frame"):
      writers(tf.nest.map_structure(lambda x: np.stack([x]), unzeroed))
  finally:
    server.stop()
