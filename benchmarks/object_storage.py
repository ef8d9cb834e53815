r"""Checkpoints of a gs:// run directory (a GCS emulator on loopback) against a local one.

  python benchmarks/object_storage.py [--quick]

Three jobs, each run once with a local --root_dir and once with a gs:// one (the
emulator, tests/gcs_emulator.py, in memory on 127.0.0.1, started here):
- the default job: configs/dqn_cartpole.gin, 6,000 train steps, a checkpoint and an
  export every 1,500 (its replay of up to 100,000 steps, 7,000 at the end);
- the same as roles: trainer.launch, 1 collector, 2,000 train steps, a checkpoint every 500;
- a pixel job: configs/dqn_atari.gin (Pong, the frame replay, segments of 1,024 steps), 1,500
  train steps (6,000 agent steps after 2,000 random ones), a checkpoint every 500 and one
  export at the end: what is uploaded per checkpoint when the replay is saved as immutable
  segments that bundles share.

Figures, from the jobs' own log lines:
- stall: how long the loop stops per checkpoint. A single-process job commits in the
  foreground ("Committed checkpoint bundle at step N (...) in X s": the agent checkpoint,
  the replay, the manifest, and on gs:// the wait for the previous bundle's upload); the
  learner role commits in the background ("training paused X s").
- commit time: from the checkpoint until it counts: the local commit; on gs:// until its
  marker object is written (the commit, then "Sealed bundle N ... in Y s", the upload
  that follows it in a thread).
- bytes uploaded per checkpoint: the bundle's own objects, new shared segments, other
  files (exports, summaries, evaluations), from the "Sealed" lines.
Loopback measures the protocol's own cost (hashing, requests, one copy), not a real
bucket's bandwidth or latency (docs/object_storage.md).

Results: the "object_storage" section of benchmarks/results.json.
"""

import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402
from tests.gcs_emulator import Emulator  # noqa: E402

COMMITTED = re.compile(r"Committed checkpoint bundle at step (\d+) .*? in ([\d.]+) s")
PAUSED = re.compile(r"Checkpoint at step (\d+): training paused ([\d.]+) s")
SEALED = re.compile(r"Sealed bundle (\d+) in \S+: uploaded ([\d.]+) MiB of it \(([\d.]+) MiB of "
                    r"new shared segments\) and ([\d.]+) MiB of other files in ([\d.]+) s")
JOBS = {
    "default": ("trainer.train", "dqn_cartpole.gin", 6000, 1500, []),
    "roles": ("trainer.launch", "dqn_cartpole.gin", 2000, 500, ["--collectors=1"]),
    # Segments of 1,024 steps (not 4,096): several fill in so short a run. One export, at the
    # end: each checkpoint's upload is then the replay's and the agent's.
    "pixels": ("trainer.train", "dqn_atari.gin", 1500, 500,
               ["--gin_bindings=train.initial_collect_steps=2000",
                "--gin_bindings=create_frame_replay.segment_steps=1024",
                "--gin_bindings=train.policy_export_interval=1500"]),
}


def run_job(name: str, root: str, quick: bool, log_path: pathlib.Path) -> str:
  module, config, steps, interval, extra = JOBS[name]
  if quick:
    steps, interval = steps // 5, interval // 5
  cmd = [sys.executable, "-m", module, f"--root_dir={root}", f"--gin_file=configs/{config}",
         f"--gin_bindings=train.num_iterations={steps}",
         f"--gin_bindings=train.checkpoint_interval={interval}",
         f"--gin_bindings=train.policy_export_interval={interval}",
         f"--gin_bindings=train.eval_interval={interval}", *extra]
  with open(log_path, "w") as log:
    rc = subprocess.run(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log,
                        stderr=subprocess.STDOUT, timeout=3600).returncode
  text = log_path.read_text()
  if rc != 0:
    raise SystemExit(f"{name} on {root} exited {rc}: {text[-2000:]}")
  return text


def figures(log: str, roles: bool) -> dict:
  commits = {int(s): float(t) for s, t in COMMITTED.findall(log)}
  stalls = ({int(s): float(t) for s, t in PAUSED.findall(log)} if roles else commits)
  sealed = {int(m[0]): [float(x) for x in m[1:]] for m in SEALED.findall(log)}
  out = {"checkpoints": sorted(commits), "stall_s": common.describe(list(stalls.values())),
         "commit_s": common.describe(list(commits.values()))}
  if sealed:
    mib = 2**20
    out["until_sealed_s"] = common.describe(
        [commits.get(step, 0.0) + v[3] for step, v in sealed.items()])
    out["uploads"] = [{"step": step, "bundle_bytes": int(v[0] * mib - v[1] * mib),
                       "shared_bytes": int(v[1] * mib), "other_bytes": int(v[2] * mib),
                       "seconds": v[3]} for step, v in sorted(sealed.items())]
    out["uploaded_bytes_median"] = statistics.median(
        u["bundle_bytes"] + u["shared_bytes"] + u["other_bytes"] for u in out["uploads"])
  return out


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="a fifth of each job")
  parser.add_argument("--jobs", default="default,roles,pixels")
  args = parser.parse_args()
  workdir = pathlib.Path(tempfile.mkdtemp(prefix="trainer-bench-gcs-"))
  emulator = Emulator()
  os.environ.update(emulator.environment(), TRAINER_STAGING_DIR=str(workdir / "staging"))
  section = {}
  try:
    for name in args.jobs.split(","):
      bucket = emulator.create_bucket()
      section[name] = {}
      for where, root in (("local", str(workdir / name)), ("gs", f"gs://{bucket}/{name}")):
        log = run_job(name, root, args.quick, workdir / f"{name}-{where}.log")
        section[name][where] = figures(log, roles=name == "roles")
        print(name, where, common.dumps(section[name][where]), flush=True)
  finally:
    emulator.stop()
  common.write_results(args, "object_storage", {**section, "jobs": {
      k: {"command": v[0], "config": v[1], "train_steps": v[2], "checkpoint_interval": v[3]}
      for k, v in JOBS.items()}})
  return 0


if __name__ == "__main__":
  sys.exit(main())
