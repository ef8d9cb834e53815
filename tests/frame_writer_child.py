"""A process that fills a frame replay and commits bundles of it, as a job does
(no TensorFlow): `python tests/frame_writer_child.py ROOT STEPS [CRASH_AT]`.

It resumes from ROOT's newest bundle that verifies (restoring the replay and
checking it bit for bit against the digest the bundle recorded), adds STEPS
steps, committing a bundle every 32 steps (2 kept), and prints "done". With
CRASH_AT it SIGKILLs itself at that point, after its first commit:
- `segment-written`: a segment's data is on disk under its temporary name;
- `segment-renamed`: a segment has its name, no bundle refers to it yet;
- `retention`: a pruned bundle is gone and the first of its segments that no
  kept bundle refers to deleted, the others not yet.
"""

import hashlib
import json
import os
import signal
import sys

import numpy as np

from trainer.checkpoint.bundle_store import BundleStore
from trainer.checkpoint.shared_files import SharedFiles
from trainer.replay.frames import Field, FrameStore
from trainer.replay.segments import SegmentedRing, describe
from trainer.rundir import layout

K, H, CAPACITY, SEGMENT, EVERY = 4, 24, 64, 8, 32
FIELDS = [Field("step_type", (), np.int32), Field("observation", (H, H, K), np.uint8),
          Field("action", (), np.int64), Field("next_step_type", (), np.int32),
          Field("reward", (), np.float32), Field("discount", (), np.float32)]


def digest(store: FrameStore) -> str:
  h = hashlib.sha256()
  for array in (*store.arrays, store.episode_start, store.totals):
    h.update(np.ascontiguousarray(array).tobytes())
  return h.hexdigest()


def crash_when(point: str, commits: list[int]) -> None:
  """SIGKILLs this process at `point`, after its first commit."""
  def armed() -> bool:
    return len(commits) >= 1

  original_replace, original_remove = os.replace, SharedFiles.remove

  def replace(src, dst, *args, **kwargs):
    is_segment = os.path.basename(str(src)).startswith(".r")
    if armed() and is_segment and point == "segment-written":
      os.kill(os.getpid(), signal.SIGKILL)
    original_replace(src, dst, *args, **kwargs)
    if armed() and is_segment and point == "segment-renamed":
      os.kill(os.getpid(), signal.SIGKILL)

  def remove(self, candidates):
    victims = sorted(candidates - self.referenced())
    if point == "retention" and len(victims) > 1:
      os.remove(os.path.join(self._root, victims[0]))
      os.kill(os.getpid(), signal.SIGKILL)
    original_remove(self, candidates)

  os.replace = replace
  SharedFiles.remove = remove


def main(root: str, steps: int, crash_at: str | None) -> None:
  store = FrameStore(FIELDS, observation=1, frame_stack=K, rows=1, row_capacity=CAPACITY)
  config = describe(store.fields, K, 1, CAPACITY)
  ring = SegmentedRing(store, os.path.join(root, layout.SHARED_DIR, "frames"),
                       f"{layout.SHARED_DIR}/frames", SEGMENT)
  bundles = BundleStore(root, keep=2)
  bundle = bundles.latest_valid()
  if bundle is not None:
    ring.load(os.path.join(bundle.path, "replay"), config)
    if digest(store) != bundle.summary["digest"]:
      raise SystemExit(f"bundle {bundle.step}: the restored replay differs from the saved one")
    print(f"resumed {bundle.step}", flush=True)
  commits: list[int] = []
  if crash_at:
    crash_when(crash_at, commits)
  rng = np.random.default_rng(int(store.totals[0]))
  stack = np.zeros((H, H, K), np.uint8)
  start = int(store.totals[0])
  for t in range(start, start + steps):
    first = t == start or t % 10 == 0  # episodes of 10 steps (a resume starts one)
    stack = np.zeros_like(stack) if first else stack
    stack = np.concatenate([stack[..., 1:], rng.integers(1, 256, (H, H, 1), np.uint8)], -1)
    with ring.lock:
      store.add([np.array([v]) for v in (0 if first else 1, stack, t, 1, 0.5, 1.0)])
      ring.added()
    if (t + 1) % EVERY == 0:
      path = bundles.begin(t + 1)
      with open(layout.agent_checkpoint_prefix(root, t + 1) + ".index", "w") as f:
        f.write("agent")
      ring.save(os.path.join(path, "replay"), config)
      bundles.commit(t + 1, {"train_step": t + 1, "digest": digest(store)})
      commits.append(t + 1)
  ring.close()
  print("done " + json.dumps(commits), flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
