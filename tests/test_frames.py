"""The frame replay's store and its incremental segments, on real files (no TensorFlow):
stacks rebuilt exactly, episodes never mixed, saves that write only what is new and
restore bit for bit, shared segments kept while a bundle refers to them."""

import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from trainer.checkpoint.bundle_store import BundleStore
from trainer.errors import RunDirError
from trainer.replay import segments
from trainer.replay.frames import ContractError, Field, FrameStore, ring_shape
from trainer.replay.segments import SegmentedRing, SegmentError, describe
from trainer.rundir import layout

pytestmark = pytest.mark.fast

K, H = 4, 6
FIELDS = [Field("step_type", (), np.int32), Field("observation", (H, H, K), np.uint8),
          Field("action", (), np.int64), Field("next_step_type", (), np.int32),
          Field("reward", (), np.float32), Field("discount", (), np.float32)]


class StackedEnvs:
  """Rows of episodes of random frames, stacked as trainer's FrameStack does
  (zeros before an episode's first frame); episodes of varying length."""

  def __init__(self, rows: int, seed: int = 0):
    self.rng = np.random.default_rng(seed)
    self.stacks = [np.zeros((H, H, K), np.uint8) for _ in range(rows)]
    self.left = [0] * rows
    self.seen = [[] for _ in range(rows)]  # every observation, per row, in order

  def step(self, i: int) -> list[np.ndarray]:
    values = [[] for _ in FIELDS]
    for r in range(len(self.stacks)):
      first = self.left[r] == 0
      if first:
        self.stacks[r] = np.zeros((H, H, K), np.uint8)
        self.left[r] = int(self.rng.integers(1, 9))
      frame = self.rng.integers(1, 256, (H, H), dtype=np.uint8)
      self.stacks[r] = np.concatenate([self.stacks[r][..., 1:], frame[..., None]], -1)
      self.left[r] -= 1
      step_type = 0 if first else (2 if self.left[r] == 0 else 1)
      self.seen[r].append(self.stacks[r].copy())
      for values_i, v in zip(values, [step_type, self.stacks[r].copy(), i, 1, i * 0.5, 1.0],
                             strict=True):
        values_i.append(v)
    return [np.array(v) for v in values]


def _filled(tmp_path, steps: int, rows: int = 2, capacity: int = 16, segment: int = 4):
  store = FrameStore(FIELDS, observation=1, frame_stack=K, rows=rows, row_capacity=capacity)
  ring = SegmentedRing(store, str(tmp_path / "shared"), "train/shared/frames", segment)
  envs = StackedEnvs(rows)
  for i in range(steps):
    with ring.lock:
      store.add(envs.step(i))
      ring.added()
  return store, ring, envs


def _config(store):
  return describe(store.fields, store.frame_stack, store.rows, store.row_capacity)


def test_stacks_are_rebuilt_exactly_across_episodes_and_ring_laps(tmp_path):
  store, ring, envs = _filled(tmp_path, 45)
  for r in range(store.rows):
    lo, hi = store.valid_range(r, 1)
    assert (lo, hi) == (45 - 16 + K - 1, 45)  # overwritten frames are never stacked
    for t in range(lo, hi):
      got = store.gather(np.array([r]), np.array([t]), 1)[1][0, 0]
      np.testing.assert_array_equal(got, envs.seen[r][t], err_msg=f"row {r} step {t}")
  ring.close()


def test_each_frame_is_stored_once():
  store = FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=1000)
  uniform_bytes = 1000 * H * H * K
  assert store.arrays[1].nbytes == uniform_bytes // K


def test_stacks_that_break_the_contract_are_refused(tmp_path):
  store = FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=16)
  envs = StackedEnvs(1)
  store.add(envs.step(0))
  values = envs.step(1)
  values[1][0, ..., -2] += 1  # the second newest frame is not the previous newest
  with pytest.raises(ContractError, match="not frame stacks"):
    store.add(values)
  repeated = [v.copy() for v in StackedEnvs(1, seed=1).step(0)]
  repeated[1][0] = repeated[1][0][..., -1:]  # the first frame repeated (not zeros)
  with pytest.raises(ContractError):
    FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=16).add(repeated)


def test_a_save_restores_bit_for_bit_and_samples_alike(tmp_path):
  store, ring, _ = _filled(tmp_path, 45)
  ring.save(str(tmp_path / "b1"), _config(store))
  copy = FrameStore(FIELDS, observation=1, frame_stack=K, rows=2, row_capacity=16)
  SegmentedRing(copy, str(tmp_path / "shared"), "x", 4).load(str(tmp_path / "b1"),
                                                              _config(store))
  for a, b in zip([*store.arrays, store.episode_start, store.totals],
                  [*copy.arrays, copy.episode_start, copy.totals], strict=True):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(store.sample(64, 2, np.random.default_rng(3)),
                  copy.sample(64, 2, np.random.default_rng(3)), strict=True):
    np.testing.assert_array_equal(a, b)
  ring.close()


def test_a_save_writes_only_what_was_added_since_the_previous_one(tmp_path):
  store, ring, envs = _filled(tmp_path, 40, capacity=128, segment=8)
  ring.save(str(tmp_path / "b1"), _config(store))
  before = ring.bytes_written
  for i in range(40, 72):  # 32 steps a row: 4 segments a row
    with ring.lock:
      store.add(envs.step(i))
      ring.added()
  ring.save(str(tmp_path / "b2"), _config(store))
  step_bytes = sum(int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize
                   for f in store.stored) + 8
  assert ring.bytes_written - before == 2 * 32 * step_bytes  # tails: 0 (72 = 9 segments)
  first = json.loads((tmp_path / "b1" / segments.SHARED_REFS).read_text())
  second = json.loads((tmp_path / "b2" / segments.SHARED_REFS).read_text())
  assert set(first) < set(second)  # the segments of b1 are shared, not written again
  ring.close()


def test_a_damaged_segment_is_refused(tmp_path):
  store, ring, _ = _filled(tmp_path, 45)
  ring.save(str(tmp_path / "b1"), _config(store))
  ring.close()
  name = sorted(os.listdir(tmp_path / "shared"))[0]
  with open(tmp_path / "shared" / name, "r+b") as f:
    f.write(b"\xff")
  copy = FrameStore(FIELDS, observation=1, frame_stack=K, rows=2, row_capacity=16)
  with pytest.raises(SegmentError, match="fails its checksum"):
    SegmentedRing(copy, str(tmp_path / "shared"), "x", 4).load(str(tmp_path / "b1"),
                                                                _config(store))
  other = describe(FIELDS, K, 2, 32)
  with pytest.raises(SegmentError, match="differs from the configured one in"):
    SegmentedRing(FrameStore(FIELDS, observation=1, frame_stack=K, rows=2, row_capacity=32),
                  str(tmp_path / "shared"), "x", 4).load(str(tmp_path / "b1"), other)


def test_segments_that_leave_the_ring_unreferenced_are_deleted(tmp_path):
  store, ring, _ = _filled(tmp_path, 100)
  ring.save(str(tmp_path / "b1"), _config(store))
  ring.close()
  files = sorted(os.listdir(tmp_path / "shared"))
  assert len(files) == 2 * 4  # a ring of 16 holds 4 segments of 4 a row; older ones deleted
  assert set(json.loads((tmp_path / "b1" / segments.SHARED_REFS).read_text())) == {
      f"train/shared/frames/{n}" for n in files}


# --- the bundle store's shared files ------------------------------------------------


def _commit_with_shared(root, step: int, store: BundleStore, shared: dict[str, bytes]):
  path = store.begin(step)
  prefix = layout.agent_checkpoint_prefix(str(root), step)
  with open(prefix + ".index", "w") as f:
    f.write(f"agent {step}")
  refs = {}
  for rel, data in shared.items():
    full = root / rel
    full.parent.mkdir(parents=True, exist_ok=True)
    if not full.exists():
      full.write_bytes(data)
    refs[rel] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
  os.makedirs(os.path.join(path, "replay"))
  with open(os.path.join(path, "replay", layout.SHARED_REFS), "w") as f:
    json.dump(refs, f)
  store.commit(step, {"train_step": step})


def test_shared_files_are_verified_and_deleted_only_when_no_kept_bundle_refers_to_them(
    tmp_path):
  store = BundleStore(str(tmp_path), keep=2)
  seg = {n: f"segment {n}".encode() for n in "abcde"}
  rel = {n: f"{layout.SHARED_DIR}/frames/{n}.seg" for n in seg}
  _commit_with_shared(tmp_path, 10, store, {rel[n]: seg[n] for n in "abc"})
  _commit_with_shared(tmp_path, 20, store, {rel[n]: seg[n] for n in "bcd"})
  assert all((tmp_path / rel[n]).exists() for n in "abcd")
  _commit_with_shared(tmp_path, 30, store, {rel[n]: seg[n] for n in "de"})  # prunes 10
  assert not (tmp_path / rel["a"]).exists()  # only bundle 10 referred to it
  assert all((tmp_path / rel[n]).exists() for n in "bcde")  # bundle 20 still refers
  (tmp_path / rel["e"]).write_bytes(b"segment X")  # damaged: same size, other bytes
  bundle, damaged = store.newest_verified()
  assert bundle.step == 20 and damaged[0][1] == f"{rel['e']} fails its checksum"
  (tmp_path / rel["e"]).write_bytes(seg["e"])
  orphan = tmp_path / layout.SHARED_DIR / "frames" / "orphan.seg"
  orphan.write_bytes(b"written, never committed")  # a crash after the write
  store.clean_partial()
  assert not orphan.exists() and all((tmp_path / rel[n]).exists() for n in "bcde")


def test_a_commit_refers_only_to_shared_files_that_are_there(tmp_path):
  store = BundleStore(str(tmp_path), keep=2)
  path = store.begin(10)
  with open(layout.agent_checkpoint_prefix(str(tmp_path), 10) + ".index", "w") as f:
    f.write("agent")
  with open(os.path.join(path, layout.SHARED_REFS), "w") as f:
    json.dump({f"{layout.SHARED_DIR}/frames/gone.seg": {"size": 3, "sha256": "0" * 64}}, f)
  with pytest.raises(RunDirError, match="is missing"):
    store.commit(10, {"train_step": 10})


# --- real processes, really killed ----------------------------------------------------

CHILD = os.path.join(os.path.dirname(__file__), "frame_writer_child.py")


def _child(root, steps: int, crash_at: str | None = None) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(CHILD))}
  return subprocess.run([sys.executable, CHILD, str(root), str(steps), *filter(None, [crash_at])],
                        capture_output=True, text=True, env=env, timeout=120)


def _referenced(root) -> set[str]:
  store = BundleStore(str(root))
  return {rel for b in store.committed() for rel in b.manifest.get("shared", [])}


def _shared_files(root) -> set[str]:
  return {str(p.relative_to(root)) for p in (root / layout.SHARED_DIR).rglob("*") if p.is_file()}


@pytest.mark.parametrize("crash_at, steps, leftover", [
    ("segment-written", 140, "a segment under its temporary name"),
    ("segment-renamed", 140, "a segment no bundle refers to"),
    ("retention", 140, "segments of a pruned bundle"),
])
def test_a_sigkill_while_segments_are_written_or_retained_loses_nothing(
    tmp_path, crash_at, steps, leftover):
  killed = _child(tmp_path, steps, crash_at)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  orphans = _shared_files(tmp_path) - _referenced(tmp_path)
  assert orphans, f"the kill left no {leftover} (it did not land where it was meant to)"
  store = BundleStore(str(tmp_path))
  assert all(store.verify(b) is None for b in store.committed())  # every kept bundle whole
  resumed = _child(tmp_path, 70)  # restores bit for bit (the child checks), then commits
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert resumed.stdout.startswith("resumed ")
  assert _shared_files(tmp_path) == _referenced(tmp_path)  # leftovers gone, nothing lost
  assert all(store.verify(b) is None for b in store.committed())


def test_compressed_segments_restore_bit_for_bit_and_are_smaller_on_flat_frames(tmp_path):
  store = FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=64)
  ring = SegmentedRing(store, str(tmp_path / "shared"), "train/shared/frames", 8, codec="zlib")
  stack = np.zeros((H, H, K), np.uint8)
  for t in range(70):  # flat frames, as a game's background: compressible
    stack = np.concatenate([stack[..., 1:], np.full((H, H, 1), t % 7, np.uint8)], -1)
    with ring.lock:
      store.add([np.array([v]) for v in (0 if t == 0 else 1, stack, t, 1, 0.5, 1.0)])
      ring.added()
  ring.save(str(tmp_path / "b1"), _config(store))
  ring.close()
  refs = json.loads((tmp_path / "b1" / segments.DESCRIPTION).read_text())["segments"]["0"]
  assert all(ref["codec"] == "zlib" for _, ref in refs)
  raw = 8 * sum(a[0, 0].nbytes for a in store.arrays) + 8 * 8
  assert max(ref["size"] for _, ref in refs) < raw / 4
  copy = FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=64)
  SegmentedRing(copy, str(tmp_path / "shared"), "x", 8).load(str(tmp_path / "b1"),
                                                              _config(store))
  for a, b in zip([*store.arrays, store.episode_start], [*copy.arrays, copy.episode_start],
                  strict=True):
    np.testing.assert_array_equal(a, b)


def test_a_ring_is_cut_into_equal_segments_wasting_less_than_a_step_each():
  assert ring_shape(1_000_000, 1, 4096) == (1_000_090, 4082)  # 245 segments
  for capacity, envs, most in [(1_000_000, 128, 4096), (100_001, 16, 4096), (8_193, 1, 4096),
                               (3, 2, 64), (512, 1, 64)]:
    row, steps = ring_shape(capacity, envs, most)
    wanted = -(-capacity // envs)
    assert steps <= most and row % steps == 0 and row // steps >= 2
    assert wanted <= row < wanted + row // steps  # less than a step a segment more
