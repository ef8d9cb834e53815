r"""The replay server's memory holding Atari steps: the roles' frame layout against whole stacks.

  python benchmarks/roles_frames.py [--steps 1000000] [--stacked_steps 100000,200000] [--quick]

The roles (`trainer.launch`) keep the replay in a Reverb server. A job on the
frame replay (`configs/dqn_atari.gin`) runs there in the frame layout
(`trainer.replay.packing.FramePacking`): each step's column holds only its
newest 84x84 frame, and the learner rebuilds the stacks. The anchor is the
same server holding the steps as the roles hold any other job's, whole
(the stacked 84x84x4 observation packed in each step, `StepPacking`), which
is also what TF-Agents' `ReverbAddTrajectoryObserver` stores.

Each layout runs in a process of its own (its resident set is the figure):
the replay server role's tables (`replay_shards` 8, FIFO, uniform; no rate
limiter: the writer runs alone) and the collectors' writers
(`ReplayLayout.writers`, one environment) in one process, filled with
`benchmarks.frame_replay`'s stream (500 real ALE Pong frames cycled over
episodes of 2,000-4,000 steps). Reverb compresses each chunk (zstd) on the
writer's side and keeps it compressed. The process's VmRSS is read before the
first step and after the last; the whole stacks are measured at
`--stacked_steps` and extrapolated linearly (the two sizes' slope) to
`--steps`. Then a learner's dataset (`ReverbReplay.dataset`, batches of 32)
samples from the frame layout and each sampled stack is checked against the
stream's, and its sampling rate is timed.

Results: the "roles_frames" section of benchmarks/results.json.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from benchmarks import frame_replay as frames_bench  # noqa: E402

SHARDS = 8
CHUNK = 2_000
BATCH = 32


def _spec():
  import tensorflow as tf
  from tf_agents.trajectories import trajectory
  return trajectory.Trajectory(
      step_type=tf.TensorSpec((), tf.int32), action=tf.TensorSpec((), tf.int64), policy_info=(),
      observation=tf.TensorSpec((frames_bench.H, frames_bench.W, frames_bench.STACK), tf.uint8),
      next_step_type=tf.TensorSpec((), tf.int32), reward=tf.TensorSpec((), tf.float32),
      discount=tf.TensorSpec((), tf.float32))


def _step(c: dict, i: int):
  from tf_agents.trajectories import trajectory
  return trajectory.Trajectory(
      step_type=c["step_type"][i:i + 1], observation=c["observation"][i:i + 1],
      action=c["action"][i:i + 1], policy_info=(), next_step_type=c["next_step_type"][i:i + 1],
      reward=c["reward"][i:i + 1], discount=c["discount"][i:i + 1])


def run_layout(work: pathlib.Path, steps: int, frame_stack: int, sample_batches: int) -> dict:
  """A server of the roles' tables in `frame_stack`'s layout, filled with `steps` steps."""
  import numpy as np
  import reverb

  from trainer.replay import layout
  from trainer.replay import reverb as reverb_replay
  data = frames_bench.Steps(frames_bench.pong_frames(work / "pong.npy"))
  replay_layout = layout.ReplayLayout("uniform_table", steps, _spec(), 2, shards=SHARDS,
                                      packed=True, frame_stack=frame_stack)
  server = reverb.Server(replay_layout.tables(), port=None)
  replay = reverb_replay.ReverbReplay(replay_layout, scratch_dir=str(work / "scratch"),
                                      address=f"localhost:{server.port}", restore_dir=None)
  rss_before = frames_bench._rss_mb()
  start = time.monotonic()
  for a in range(0, steps, CHUNK):
    c = data.chunk(a, min(a + CHUNK, steps))
    for i in range(len(c["step_type"])):
      replay.observer(_step(c, i))
  size = replay.size()  # flushes
  fill_s = time.monotonic() - start
  rss = frames_bench._rss_mb()
  out = {"steps": steps, "frame_stack": frame_stack, "items": size,
         "rss_before_mb": round(rss_before), "rss_full_mb": round(rss),
         "replay_rss_mb": round(rss - rss_before), "fill_s": round(fill_s, 1),
         "steps_per_s": round(steps / fill_s)}
  if sample_batches:
    # The stacks as rebuilt: zeros before an episode's first frame, each step's stack the
    # previous one shifted by one (bit-exact rebuilding is tests/test_packing.py's).
    batches = iter(replay.dataset(BATCH))
    next(batches)
    t0 = time.monotonic()
    checked = 0
    for _ in range(sample_batches):
      experience, info = next(batches)
      obs = experience.observation.numpy()  # [B, 2, 84, 84, 4]
      step_type = experience.step_type.numpy()
      for b in range(BATCH):
        for k in range(2):
          stack = obs[b, k]
          # The contract: oldest first, shifting by one, zeros before an episode's first frame.
          if step_type[b, k] == frames_bench.FIRST:
            assert not stack[..., :-1].any(), "a FIRST step's older frames are not zeros"
          if k == 1:
            assert np.array_equal(stack[..., :-1], obs[b, 0][..., 1:]), "stacks do not shift"
          checked += 1
    out["sample_batches_per_s"] = round(sample_batches / (time.monotonic() - t0), 1)
    out["stacks_checked"] = checked
  replay.close()
  server.stop()
  return out


def _child(work: pathlib.Path, *flags: str) -> dict:
  cmd = [sys.executable, __file__, f"--work={work}", *flags]
  print("$", " ".join(cmd[1:]), flush=True)
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  if out.returncode:
    sys.stderr.write(out.stderr[-3000:])
    raise SystemExit(f"{' '.join(flags)} exited {out.returncode}")
  return json.loads(next(x for x in out.stdout.splitlines() if x.startswith("PART "))[5:])


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="50,000 steps; stacks at 10,000 and 20,000")
  parser.add_argument("--steps", type=int, default=1_000_000)
  parser.add_argument("--stacked_steps", default="100000,200000")
  parser.add_argument("--sample_batches", type=int, default=200)
  parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)  # frame stack
  args = parser.parse_args()
  if args.part:
    work = pathlib.Path(args.work)
    print("PART " + json.dumps(run_layout(work, args.steps, args.part,
                                          args.sample_batches if args.part > 1 else 0)))
    return 0
  if args.quick:
    args.steps, args.stacked_steps = 50_000, "10000,20000"
  with tempfile.TemporaryDirectory(prefix="trainer-bench-roles-frames-") as tmp:
    work = pathlib.Path(tmp)
    frames_bench.pong_frames(work / "pong.npy")
    framed = _child(work, "--part=4", f"--steps={args.steps}",
                    f"--sample_batches={args.sample_batches}")
    stacked = [_child(work, "--part=1", f"--steps={n}")
               for n in (int(s) for s in args.stacked_steps.split(","))]
  (n0, m0), (n1, m1) = [(r["steps"], r["replay_rss_mb"]) for r in stacked[-2:]]
  slope = (m1 - m0) / (n1 - n0)
  stacked_at_steps = m1 + slope * (args.steps - n1)
  section = {
      "steps": args.steps, "shards": SHARDS, "frames": framed, "stacked_measured": stacked,
      "stacked_replay_rss_mb_extrapolated": round(stacked_at_steps),
      "stacked_mb_per_1k_steps": round(slope * 1000, 2),
      "ratio": round(framed["replay_rss_mb"] / stacked_at_steps, 4),
      "data": "500 ALE Pong frames (random policy, sticky actions, 84x84 grey, frame skip 4), "
              "cycled; episodes of 2,000-4,000 steps (benchmarks/frame_replay.py's stream)"}
  print(common.dumps(section), flush=True)
  common.write_results(args, "roles_frames", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
