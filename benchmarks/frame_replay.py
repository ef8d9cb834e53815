r"""The frame replay at Atari's scale: memory, checkpoints and restore of 1M steps.

  python benchmarks/frame_replay.py [--steps 1000000] [--interval 62500] [--checkpoints 3]
      [--anchor_memory_steps 100000,200000] [--reverb_items 200000] [--dopamine_steps 200000]
      [--quick]

Data: Atari-shaped transitions as DQN collects them from one environment (a
`Trajectory` of step_type int32, observation 84x84x4 uint8 stacked oldest
first, action int64, next_step_type int32, reward float32, discount float32),
episodes of 2,000 to 4,000 steps. The frames are 500 real ALE Pong frames
(`ALE/Pong-v5`, sticky actions, `AtariPreprocessing`: 84x84 grey, frame skip 4)
rolled once with a random policy, then cycled: cheap to generate, real content
(Pong compresses well: see the anchors' bytes).

Each part runs in a process of its own, one at a time (peak memory, and a
restore that starts from nothing):

1. memory: the process's resident set (VmRSS) once its `FrameStore` holds
   `--steps` transitions, against TF-Agents' way, the stacked observation in a
   `TFUniformReplayBuffer` (the data spec of
   tf_agents/examples/dqn/mnih15/dqn_train_eval_atari.py, whose 1M replay
   would need 28 GB): measured at `--anchor_memory_steps` and extrapolated
   linearly (the larger two sizes' slope) to `--steps`.
2. checkpoints: the store fills through a `SegmentedRing` (segments written by
   its thread as the ring fills), then a checkpoint every `--interval` added
   steps (Dopamine's iteration, 250k frames = 62,500 agent steps), each a
   bundle: `BundleStore.begin`, a small fake agent checkpoint, the ring's save
   into the bundle's replay/, `commit`. The stall is what `SegmentedRing.save`
   blocks its caller for (tail copy, wait for queued segments, tail and
   descriptions written); the bytes are the ring's `bytes_written` between
   two saves (segments + tails) plus the bundle's own files, against the bytes
   the added steps take in the store. Anchors: (a) Reverb's checkpoint
   (`client.checkpoint()`, `DefaultCheckpointer`) of a table holding one step
   (one frame and the scalars) per item, a full copy each time; (b) Dopamine's
   `OutOfGraphReplayBuffer.save` (dopamine-rl, from a scratch virtualenv
   given by `--dopamine_python`, else the same format reproduced here), which
   writes each array gzipped, a full copy each time. Both are measured at
   `--reverb_items` / `--dopamine_steps` and scaled linearly to `--steps`.
3. restore, in a fresh process: `BundleStore.newest_verified()` (every file's
   SHA-256, the shared segments included) and `SegmentedRing.load` into a new
   store (each segment checked again as it is read), twice: with the files in
   the page cache as the checkpoints left them (`fincore` says how much), and
   after `posix_fadvise(DONTNEED)` asked the kernel to drop them (no root here
   to drop the whole cache; `fincore` says what was left).

Results: the "frame_replay" section of benchmarks/results.json.
"""

import argparse
import gzip
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import common  # noqa: E402

H = W = 84
STACK = 4
BASE_FRAMES = 500
EPISODES = (2_500, 3_700, 2_100, 3_300, 2_900, 4_000)  # lengths, cycled
FIRST, MID, LAST = 0, 1, 2
CHUNK = 2_000
FAKE_AGENT_BYTES = 6 * 2**20  # ~ Nature DQN's 1.7M parameters, float32, plus optimizer slots


def _rss_mb() -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _peak_mb() -> float:
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


# --- the data ------------------------------------------------------------------


def pong_frames(path: pathlib.Path) -> np.ndarray:
  """`BASE_FRAMES` preprocessed Pong frames of a random policy (cached at `path`)."""
  if path.exists():
    return np.load(path)
  import ale_py
  import gymnasium as gym
  from gymnasium.wrappers import AtariPreprocessing
  gym.register_envs(ale_py)
  env = AtariPreprocessing(gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.25),
                           noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
  rng = np.random.default_rng(0)
  obs, _ = env.reset(seed=0)
  frames = [obs]
  while len(frames) < BASE_FRAMES:
    obs, _, term, trunc, _ = env.step(int(rng.integers(env.action_space.n)))
    frames.append(obs)
    if term or trunc:
      frames.append(env.reset()[0])
  env.close()
  out = np.stack(frames[:BASE_FRAMES]).astype(np.uint8)
  np.save(path, out)
  return out


class Steps:
  """The transition stream: step `t`'s frame is base[t % B]; episodes of `EPISODES`."""

  def __init__(self, base: np.ndarray):
    self.base = base
    starts, t = [], 0
    while t < 50_000_000:
      for n in EPISODES:
        starts.append(t)
        t += n
    self.starts = np.array(starts, np.int64)

  def chunk(self, a: int, b: int) -> dict[str, np.ndarray]:
    """Steps [a, b), batched: the Trajectory's fields, observation stacked."""
    t = np.arange(a, b)
    episode = np.searchsorted(self.starts, t, side="right") - 1
    start, end = self.starts[episode], self.starts[episode + 1] - 1
    step_type = np.where(t == start, FIRST, np.where(t == end, LAST, MID)).astype(np.int32)
    next_step_type = np.where(t == end, FIRST, np.where(t + 1 == end, LAST, MID)).astype(np.int32)
    obs = np.zeros((b - a, H, W, STACK), np.uint8)
    for j in range(STACK):
      back = t - (STACK - 1 - j)
      held = back >= start
      obs[held, ..., j] = self.base[back[held] % len(self.base)]
    mixed = (t * 2654435761) % 2**32  # per step, whatever the chunk
    return {"step_type": step_type, "observation": obs,
            "action": (mixed >> 7) % 6, "next_step_type": next_step_type,
            "reward": ((mixed >> 11) % 100 == 0).astype(np.float32),
            "discount": np.where(t == end, 0.0, 1.0).astype(np.float32)}


NAMES = ("step_type", "observation", "action", "next_step_type", "reward", "discount")


def _fields():
  from trainer.replay.frames import Field
  shapes = {"observation": ((H, W, STACK), np.uint8), "action": ((), np.int64),
            "reward": ((), np.float32), "discount": ((), np.float32),
            "step_type": ((), np.int32), "next_step_type": ((), np.int32)}
  return [Field(n, shapes[n][0], np.dtype(shapes[n][1])) for n in NAMES]


# --- the trainer: fill, checkpoints ----------------------------------------------


def _tree_bytes(path: str) -> int:
  return sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(path) for n in names)


def run_trainer(work: pathlib.Path, steps: int, interval: int, checkpoints: int,
                segment_steps: int, codec: str, run_name: str = "run", pace: float = 0) -> dict:
  from trainer.checkpoint.bundle_store import BundleStore
  from trainer.replay.frames import FrameStore
  from trainer.replay.segments import SegmentedRing, describe
  from trainer.rundir import layout
  data = Steps(pong_frames(work / "pong.npy"))
  fields = _fields()
  root = str(work / run_name)
  rss_before = _rss_mb()
  store = FrameStore(fields, observation=1, frame_stack=STACK, rows=1, row_capacity=steps)
  shared = os.path.join(root, layout.SHARED_DIR, "frames")
  ring = SegmentedRing(store, shared, f"{layout.SHARED_DIR}/frames", segment_steps, codec)
  config = describe(fields, STACK, 1, steps)
  bundles = BundleStore(root, keep=3)
  step_bytes = sum(a[0, 0].nbytes for a in store.arrays) + store.episode_start[0, 0].nbytes
  added = 0

  def add(n: int, rate: float = 0) -> float:
    """Adds `n` steps, at most `rate` a second (0: as fast as it goes)."""
    nonlocal added
    start = time.monotonic()
    for a in range(added, added + n, CHUNK):
      if rate:
        time.sleep(max(0.0, start + (a - added) / rate - time.monotonic()))
      chunk = data.chunk(a, min(a + CHUNK, added + n))
      batched = [chunk[name][:, None] for name in NAMES]  # [steps, 1 env, ...]
      for i in range(len(chunk["step_type"])):
        with ring.lock:
          store.add([v[i] for v in batched])
          ring.added()
    added += n
    return time.monotonic() - start

  fill_s = add(steps)
  # The fill goes faster than any environment: let the writer catch up (untimed), as it
  # does at a real job's pace, then checkpoint at that pace (`pace` steps a second).
  ring.drain()
  rss_full = _rss_mb()
  results, previous_bytes, previous_added = [], 0, 0
  for k in range(checkpoints + 1):
    if k:
      add(interval, pace)
    step = added
    t0 = time.monotonic()
    path = bundles.begin(step)
    with open(layout.agent_checkpoint_prefix(root, step) + ".data-00000-of-00001", "wb") as f:
      f.write(np.random.default_rng(k).bytes(FAKE_AGENT_BYTES))
    with open(layout.agent_checkpoint_prefix(root, step) + ".index", "w") as f:
      f.write(f"agent {step}")
    t1 = time.monotonic()
    ring.save(os.path.join(path, layout.REPLAY_SUBDIR), config)
    t2 = time.monotonic()
    bundle = bundles.commit(step, {"train_step": step, "replay_size": store.size()})
    t3 = time.monotonic()
    own = _tree_bytes(bundle.path)
    replay_own = _tree_bytes(bundle.replay_dir)
    results.append({
        "step": step, "stall_s": round(t2 - t1, 4), "commit_s": round(t3 - t0, 3),
        "bundle_commit_only_s": round(t3 - t2, 3),
        "ring_bytes_written": ring.bytes_written - previous_bytes,
        "bundle_replay_files_bytes": replay_own, "bundle_own_bytes_with_fake_agent": own,
        "steps_added": added - previous_added,
        "data_added_bytes": (added - previous_added) * step_bytes})
    r = results[-1]
    # Segments and tail (the ring's count) plus the descriptions beside the tail.
    r["written_bytes"] = r["ring_bytes_written"] + replay_own - _tails(bundle.replay_dir)
    r["written_over_added"] = round(r["written_bytes"] / r["data_added_bytes"], 4)
    previous_bytes, previous_added = ring.bytes_written, added
    print(f"checkpoint at {step:,}: stall {r['stall_s']:.3f} s, commit {r['commit_s']:.2f} s, "
          f"written {r['written_bytes'] / 2**20:,.0f} MiB for "
          f"{r['data_added_bytes'] / 2**20:,.0f} MiB added", flush=True)
  ring.close()
  return {"steps": steps, "segment_steps": segment_steps, "codec": codec, "pace": pace,
          "writer_steps_per_s": round(ring.segments_written * segment_steps
                                      / max(ring.segment_seconds, 1e-9)),
          "stored_bytes_per_step": step_bytes,
          "fill_s": round(fill_s, 1), "rss_before_store_mb": round(rss_before),
          "rss_full_mb": round(rss_full), "store_rss_mb": round(rss_full - rss_before),
          "store_array_mb": round(sum(a.nbytes for a in store.arrays) / 2**20
                                  + store.episode_start.nbytes / 2**20),
          "peak_rss_mb": round(_peak_mb()), "checkpoints": results,
          "shared_bytes_on_disk": _tree_bytes(shared)}


def _tails(replay_dir: str) -> int:
  """Bytes of a saved replay's tail files (counted in bytes_written already)."""
  return sum(os.path.getsize(os.path.join(replay_dir, n)) for n in os.listdir(replay_dir)
             if n.startswith("tail-"))


def _cached(paths: list[str]) -> float | None:
  """Fraction of the files' pages in the page cache (util-linux `fincore`)."""
  if not shutil.which("fincore"):
    return None
  cached = total = 0
  for i in range(0, len(paths), 200):
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES,SIZE",
                          *paths[i:i + 200]], capture_output=True, text=True, check=True).stdout
    for line in out.split("\n"):
      if line.strip():
        res, size = map(int, line.split())
        cached, total = cached + res, total + size
  return round(cached / total, 3) if total else None


def run_restore(work: pathlib.Path, steps: int, segment_steps: int, drop: bool) -> dict:
  from trainer.checkpoint.bundle_store import BundleStore
  from trainer.replay.frames import FrameStore
  from trainer.replay.segments import SegmentedRing, describe
  from trainer.rundir import layout
  root = str(work / "run")
  files = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]
  if drop:
    for path in files:
      fd = os.open(path, os.O_RDONLY)
      try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
      finally:
        os.close(fd)
  cached = _cached(files)
  fields = _fields()
  t0 = time.monotonic()
  bundles = BundleStore(root, keep=3)
  bundle, damaged = bundles.newest_verified()
  assert bundle is not None and not damaged, damaged
  t1 = time.monotonic()
  store = FrameStore(fields, observation=1, frame_stack=STACK, rows=1, row_capacity=steps)
  ring = SegmentedRing(store, os.path.join(root, layout.SHARED_DIR, "frames"),
                       f"{layout.SHARED_DIR}/frames", segment_steps)
  ring.load(bundle.replay_dir, describe(fields, STACK, 1, steps))
  t2 = time.monotonic()
  assert store.size() == bundle.summary["replay_size"] == steps
  # The restored stacks are the ones added: spot checks against the stream.
  data = Steps(pong_frames(work / "pong.npy"))
  total = int(store.totals[0])
  rng = np.random.default_rng(1)
  for start in rng.integers(total - steps + STACK, total - 1, 20):
    got = store.gather(np.array([0]), np.array([start]), 1)
    want = data.chunk(int(start), int(start) + 1)
    assert all(np.array_equal(g[0], want[n]) for g, n in zip(got, NAMES, strict=True)), start
  return {"verify_s": round(t1 - t0, 2), "load_s": round(t2 - t1, 2),
          "restore_s": round(t2 - t0, 2), "bytes_verified": sum(
              e["size"] for e in bundle.manifest["files"].values()),
          "files": len(bundle.manifest["files"]), "page_cached_before": cached,
          "dropped_with_fadvise": drop, "step": bundle.step}


# --- anchors ---------------------------------------------------------------------


def run_tf_memory(work: pathlib.Path, steps: int) -> dict:
  """VmRSS of a TFUniformReplayBuffer of the stacked data spec holding `steps`."""
  import tensorflow as tf
  from tf_agents.replay_buffers import tf_uniform_replay_buffer
  from tf_agents.trajectories import trajectory
  spec = trajectory.Trajectory(
      step_type=tf.TensorSpec((), tf.int32, "step_type"),
      observation=tf.TensorSpec((H, W, STACK), tf.uint8, "observation"),
      action=tf.TensorSpec((), tf.int64, "action"), policy_info=(),
      next_step_type=tf.TensorSpec((), tf.int32, "step_type"),
      reward=tf.TensorSpec((), tf.float32, "reward"),
      discount=tf.TensorSpec((), tf.float32, "discount"))
  data = Steps(pong_frames(work / "pong.npy"))
  rss_before = _rss_mb()
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(spec, batch_size=1, max_length=steps)

  @tf.function
  def add_all(chunk):
    n = tf.shape(chunk.step_type)[0]
    for i in tf.range(n):
      buffer.add_batch(tf.nest.map_structure(lambda x, i=i: x[i:i + 1], chunk))

  start = time.monotonic()
  for a in range(0, steps, CHUNK):
    c = data.chunk(a, min(a + CHUNK, steps))
    add_all(trajectory.Trajectory(c["step_type"], c["observation"], c["action"], (),
                                  c["next_step_type"], c["reward"], c["discount"]))
  fill_s = time.monotonic() - start
  assert int(buffer.num_frames()) == steps
  rss = _rss_mb()
  return {"steps": steps, "rss_before_buffer_mb": round(rss_before), "rss_full_mb": round(rss),
          "buffer_rss_mb": round(rss - rss_before), "fill_s": round(fill_s, 1)}


def run_reverb(work: pathlib.Path, items: int, checkpoints: int) -> dict:
  """Reverb's checkpoint of a table of `items` steps (one frame each)."""
  import reverb
  import tensorflow as tf  # noqa: F401  (reverb's signatures)
  data = Steps(pong_frames(work / "pong.npy"))
  path = str(work / "reverb")
  table = reverb.Table("uniform_table", sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(), max_size=items,
                       rate_limiter=reverb.rate_limiters.MinSize(1))
  server = reverb.Server(tables=[table], checkpointer=reverb.checkpointers.DefaultCheckpointer(path))
  client = reverb.Client(f"localhost:{server.port}")
  start = time.monotonic()
  with client.trajectory_writer(num_keep_alive_refs=1) as writer:
    for a in range(0, items, CHUNK):
      c = data.chunk(a, min(a + CHUNK, items))
      c["observation"] = c["observation"][..., -1]  # the step's own frame
      for i in range(len(c["step_type"])):
        writer.append({n: c[n][i] for n in NAMES})
        writer.create_item("uniform_table", 1.0, {n: writer.history[n][-1] for n in NAMES})
    writer.flush()
  fill_s = time.monotonic() - start
  assert client.server_info()["uniform_table"].current_size == items
  runs = []
  for _ in range(checkpoints):
    before = set(os.listdir(path)) if os.path.isdir(path) else set()
    t0 = time.monotonic()
    client.checkpoint()
    seconds = time.monotonic() - t0
    new = sorted(set(os.listdir(path)) - before)
    runs.append({"seconds": round(seconds, 2),
                 "bytes": sum(_tree_bytes(os.path.join(path, n)) if os.path.isdir(
                     os.path.join(path, n)) else os.path.getsize(os.path.join(path, n))
                              for n in new)})
  server.stop()
  return {"items": items, "fill_s": round(fill_s, 1), "checkpoints": runs,
          "peak_rss_mb": round(_peak_mb())}


DOPAMINE_SCRIPT = r"""
import json, sys, time, os
import numpy as np
import importlib.util
spec = importlib.util.spec_from_file_location("circular_replay_buffer", sys.argv[6])
crb = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crb)
base, steps, path, saves = np.load(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
starts = json.loads(sys.argv[5])
buf = crb.OutOfGraphReplayBuffer(observation_shape=(84, 84), stack_size=4, replay_capacity=steps,
                                 batch_size=32)
rng = np.random.default_rng(0)
ends = set(s - 1 for s in starts)
t0 = time.monotonic()
for t in range(steps):
  buf.add(base[t % len(base)], int(rng.integers(6)), float(rng.random() < 0.01), t in ends)
fill = time.monotonic() - t0
os.makedirs(path)
runs = []
for i in range(saves):
  t0 = time.monotonic()
  buf.save(path, i)
  s = time.monotonic() - t0
  files = [n for n in os.listdir(path) if n.endswith(f".{i}.gz")]
  runs.append({"seconds": round(s, 2), "bytes": sum(os.path.getsize(os.path.join(path, n))
                                                    for n in files), "files": sorted(files)})
print("RESULT " + json.dumps({"fill_s": round(fill, 1), "saves": runs}))
"""


def run_dopamine_reproduced(work: pathlib.Path, steps: int, saves: int) -> dict:
  """Dopamine's `OutOfGraphReplayBuffer.save` format, reproduced: every attribute
  in its own `<name>_ckpt.<iteration>.gz`, np.save (pickle for the rest) into a
  `gzip.GzipFile` at its default level 9; the store's arrays as `$store$_<name>`."""
  import pickle
  data = Steps(pong_frames(work / "pong.npy"))
  store = {"observation": np.zeros((steps, H, W), np.uint8),
           "action": np.zeros(steps, np.int32), "reward": np.zeros(steps, np.float32),
           "terminal": np.zeros(steps, np.uint8)}
  for a in range(0, steps, CHUNK):
    c = data.chunk(a, min(a + CHUNK, steps))
    store["observation"][a:a + CHUNK] = c["observation"][..., -1]
    store["action"][a:a + CHUNK] = c["action"]
    store["reward"][a:a + CHUNK] = c["reward"]
    store["terminal"][a:a + CHUNK] = c["next_step_type"] == FIRST
  public = {"add_count": np.array(steps), "invalid_range": np.zeros(STACK),
            "episode_end_indices": set()}
  path = work / "dopamine"
  path.mkdir()
  runs = []
  for i in range(saves):
    t0 = time.monotonic()
    for name, value in [*(("$store$_" + k, v) for k, v in store.items()), *public.items()]:
      with open(path / f"{name}_ckpt.{i}.gz", "wb") as f, gzip.GzipFile(fileobj=f, mode="wb") as out:
        if isinstance(value, np.ndarray):
          np.save(out, value, allow_pickle=False)
        else:
          pickle.dump(value, out)
    seconds = time.monotonic() - t0
    runs.append({"seconds": round(seconds, 2), "bytes": sum(
        p.stat().st_size for p in path.glob(f"*_ckpt.{i}.gz"))})
  return {"saves": runs, "package": "the format reproduced (no Dopamine source given)"}


def run_dopamine(work: pathlib.Path, steps: int, saves: int, python: str | None,
                 module: str | None) -> dict:
  """Dopamine's own `OutOfGraphReplayBuffer` (`module`: its circular_replay_buffer.py,
  run by `python`, which has TensorFlow and gin), else its format reproduced."""
  if python and module:
    data = Steps(pong_frames(work / "pong.npy"))
    starts = [int(s) for s in data.starts if s <= steps]
    out = subprocess.run([python, "-c", DOPAMINE_SCRIPT, str(work / "pong.npy"), str(steps),
                          str(work / "dopamine"), str(saves), json.dumps(starts), module],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    result["package"] = (f"Dopamine's OutOfGraphReplayBuffer ({module}, run by {python})")
    return result
  return run_dopamine_reproduced(work, steps, saves)


# --- orchestration -----------------------------------------------------------------


def _child(args, part: str, *extra: str) -> dict:
  """Runs one part in a fresh process; returns its JSON."""
  cmd = [sys.executable, __file__, f"--part={part}", f"--work={args.work}", *extra]
  print("$", " ".join(cmd[1:]), flush=True)
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  sys.stderr.write(out.stderr[-3000:])
  if out.returncode:
    raise SystemExit(f"{part} exited {out.returncode}")
  lines = [x for x in out.stdout.splitlines()]
  for x in lines:
    if not x.startswith("PART "):
      print("  " + x, flush=True)
  return json.loads(next(x for x in lines if x.startswith("PART "))[len("PART "):])


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="50,000 steps, interval 6,250, anchors at "
                                  "10,000 and 20,000")
  parser.add_argument("--steps", type=int, default=1_000_000)
  parser.add_argument("--interval", type=int, default=62_500)
  parser.add_argument("--checkpoints", type=int, default=3)
  parser.add_argument("--segment_steps", type=int, default=4096,
                      help="create_frame_replay.segment_steps (its default)")
  parser.add_argument("--codec", default="zlib", choices=["zlib", "none"],
                      help="create_frame_replay.compression of the segments (its default: zlib)")
  parser.add_argument("--pace", type=float, default=1000,
                      help="agent steps a second added between checkpoints (an Atari job's "
                      "collection is slower); 0: as fast as they go")
  parser.add_argument("--raw_too", default=True, action=argparse.BooleanOptionalAction,
                      help="also checkpoint with uncompressed segments, for their bytes and stall")
  parser.add_argument("--anchor_memory_steps", default="100000,200000")
  parser.add_argument("--reverb_items", type=int, default=200_000)
  parser.add_argument("--dopamine_steps", type=int, default=200_000)
  parser.add_argument("--dopamine_python", default="/tmp/benv/bin/python",
                      help="a Python with TensorFlow and gin-config to run --dopamine_module")
  parser.add_argument("--dopamine_module", default="/tmp/dopamine_circular_replay_buffer.py",
                      help="Dopamine's dopamine/tf/replay_memory/circular_replay_buffer.py "
                      "(dopamine-rl 4.1.0's wheel lacks dopamine.tf: take it from the "
                      "repository); without both, the format is reproduced here")
  parser.add_argument("--part", default=None, help=argparse_hidden())
  parser.add_argument("--work", default=None, help=argparse_hidden())
  parser.add_argument("--size", type=int, default=0, help=argparse_hidden())
  parser.add_argument("--drop", action="store_true", help=argparse_hidden())
  parser.add_argument("--run_name", default="run", help=argparse_hidden())
  args = parser.parse_args()
  if args.part:
    work = pathlib.Path(args.work)
    if args.part == "trainer":
      out = run_trainer(work, args.steps, args.interval, args.checkpoints, args.segment_steps,
                        args.codec, args.run_name, args.pace)
    elif args.part == "restore":
      out = run_restore(work, args.steps, args.segment_steps, args.drop)
    elif args.part == "tf_memory":
      out = run_tf_memory(work, args.size)
    elif args.part == "reverb":
      out = run_reverb(work, args.size, 2)
    elif args.part == "dopamine":
      python, module = args.dopamine_python, args.dopamine_module
      usable = bool(python and module and os.path.exists(python) and os.path.exists(module))
      out = run_dopamine(work, args.size, 2, python if usable else None,
                         module if usable else None)
    else:
      raise SystemExit(f"unknown part {args.part}")
    print("PART " + json.dumps(out), flush=True)
    return 0

  if args.quick:
    args.steps, args.interval, args.anchor_memory_steps = 50_000, 6_250, "10000,20000"
    args.reverb_items = args.dopamine_steps = 20_000
  # As create_frame_replay does: whole, equal segments a ring (1,000,090 steps in segments
  # of 4,082 for 1M).
  from trainer.replay.frames import ring_shape
  args.steps, args.segment_steps = ring_shape(args.steps, 1, args.segment_steps)
  work = pathlib.Path(tempfile.mkdtemp(prefix="trainer-bench-frames-"))
  args.work = str(work)
  sizes = [int(s) for s in args.anchor_memory_steps.split(",")]
  common_flags = [f"--steps={args.steps}", f"--segment_steps={args.segment_steps}",
                  f"--pace={args.pace}"]
  try:
    pong_frames(work / "pong.npy")
    trainer = _child(args, "trainer", *common_flags, f"--interval={args.interval}",
                     f"--checkpoints={args.checkpoints}", f"--codec={args.codec}")
    warm = _child(args, "restore", *common_flags)
    cold = _child(args, "restore", *common_flags, "--drop")
    shutil.rmtree(work / "run")
    raw = None
    if args.raw_too and args.codec != "none":
      raw = _child(args, "trainer", *common_flags, f"--interval={args.interval}",
                   f"--checkpoints={args.checkpoints}", "--codec=none", "--run_name=raw")
      shutil.rmtree(work / "raw")
    tf_memory = [_child(args, "tf_memory", f"--size={n}") for n in sizes]
    reverb = _child(args, "reverb", f"--size={args.reverb_items}")
    shutil.rmtree(work / "reverb", ignore_errors=True)
    dopamine = _child(args, "dopamine", f"--size={args.dopamine_steps}",
                      f"--dopamine_python={args.dopamine_python}",
                      f"--dopamine_module={args.dopamine_module}")
  finally:
    shutil.rmtree(work, ignore_errors=True)
  section = summarize(args, trainer, warm, cold, tf_memory, reverb, dopamine)
  if raw is not None:
    raw_after = raw["checkpoints"][1:]
    section["raw"] = {
        "stall_s": common.describe([c["stall_s"] for c in raw_after]),
        "max_written_over_added": max(c["written_over_added"] for c in raw_after),
        "written_bytes": [c["written_bytes"] for c in raw_after],
        "shared_bytes_on_disk": raw["shared_bytes_on_disk"]}
  print(common.dumps(section), flush=True)
  common.write_results(args, "frame_replay", section)
  return 0


def argparse_hidden():
  import argparse
  return argparse.SUPPRESS


def summarize(args, trainer, warm, cold, tf_memory, reverb, dopamine) -> dict:
  n = args.steps
  (s0, m0), (s1, m1) = [(r["steps"], r["buffer_rss_mb"]) for r in tf_memory[-2:]]
  slope = (m1 - m0) / (s1 - s0)
  anchor_rss = m1 + slope * (n - s1)  # the buffer's own resident memory at n steps
  anchor_total = tf_memory[-1]["rss_before_buffer_mb"] + anchor_rss
  after_fill = trainer["checkpoints"][1:]
  reverb_scale, dopamine_scale = n / reverb["items"], n / args.dopamine_steps
  return {
      "steps": n, "interval": args.interval, "segment_steps": args.segment_steps,
      "codec": args.codec, "shared_bytes_on_disk": trainer["shared_bytes_on_disk"],
      "frames": f"{BASE_FRAMES} ALE Pong frames (random policy, sticky actions, "
                "AtariPreprocessing 84x84 grey, frame skip 4), cycled; episodes of "
                f"{min(EPISODES):,}-{max(EPISODES):,} steps",
      "memory": {"trainer_rss_mb": trainer["rss_full_mb"],
                 "trainer_store_rss_mb": trainer["store_rss_mb"],
                 "trainer_store_arrays_mb": trainer["store_array_mb"],
                 "anchor_measured": tf_memory,
                 "anchor_buffer_rss_mb_extrapolated": round(anchor_rss),
                 "anchor_process_rss_mb_extrapolated": round(anchor_total),
                 "anchor_mb_per_1k_steps": round(slope * 1000, 2),
                 "ratio": round(trainer["store_rss_mb"] / anchor_rss, 4),
                 "ratio_whole_process": round(trainer["rss_full_mb"] / anchor_total, 4)},
      "trainer": trainer,
      "checkpoint": {
          "stall_s": common.describe([c["stall_s"] for c in after_fill]),
          "stall_after_fill_s": trainer["checkpoints"][0]["stall_s"],
          "commit_s": common.describe([c["commit_s"] for c in after_fill]),
          "written_over_added": [c["written_over_added"] for c in after_fill],
          "max_written_over_added": max(c["written_over_added"] for c in after_fill),
          "written_bytes": [c["written_bytes"] for c in after_fill]},
      "restore": {"warm": warm, "dropped": cold},
      "reverb": {**reverb, "scale_to_steps": reverb_scale,
                 "seconds_at_steps": round(statistics_median(
                     [r["seconds"] for r in reverb["checkpoints"]]) * reverb_scale, 1),
                 "bytes_at_steps": round(statistics_median(
                     [r["bytes"] for r in reverb["checkpoints"]]) * reverb_scale)},
      "dopamine": {**dopamine, "steps_measured": args.dopamine_steps,
                   "scale_to_steps": dopamine_scale,
                   "seconds_at_steps": round(statistics_median(
                       [r["seconds"] for r in dopamine["saves"]]) * dopamine_scale, 1),
                   "bytes_at_steps": round(statistics_median(
                       [r["bytes"] for r in dopamine["saves"]]) * dopamine_scale)},
  }


def statistics_median(values):
  import statistics
  return statistics.median(values)


if __name__ == "__main__":
  sys.exit(main())
