r"""Chaos suite: SIGKILL a real training job at random moments until it completes.

  python scripts/chaos.py --kills=30 --backend=both     # `make chaos`
  python scripts/chaos.py --kills=4 --backend=uniform   # the short version in `make test`
  python scripts/chaos.py --kills=30 --backend=frames   # a pixel job: Atari frames, frame replay

The job is the default DQN config shrunk to seconds, with checkpoints and
exports every few steps, so kills land during bundle and export writes as well
as during start-up, restore, initial collect and training. After each kill the
script restarts the job and checks:

- the resume succeeded, from the latest committed bundle;
- the train step never went below the last committed bundle;
- replay size, env steps and episodes on resume equal those of that bundle;
- every export visible in the policy directory loads and acts;
- every export step at or below the committed step has its export (or was
  deleted by retention, as `index.json` records), and the index names only
  exports that exist ("grid exports missing").

One kill in five lands at a random moment of start-up, one in five right
after a bundle commits (the moment an export could be lost), the rest at a
random moment of training.

Once `--kills` kills are done the job runs to completion. The last line is a
summary; the exit code is non-zero on any failure.
"""

import argparse
import json
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from jobs import REPO, env, start, status

BINDINGS = {
    "train.checkpoint_interval": 10,
    "train.policy_export_interval": 15,
    "train.eval_interval": 0,
    "train.initial_collect_steps": 50,
    "train.batch_size": 8,
    "train.log_interval": 1,  # exact "steps lost": the last logged step is the step at the kill
    "train.summary_interval": 50,
    "train.keep_checkpoints": 2,
    "create_dqn_agent.fc_layer_params": "(16,)",
    "create_uniform_replay.capacity": 5000,
    "create_reverb_replay.capacity": 5000,
    "create_gym_environment.max_episode_steps": 50,
}
BACKENDS = {"uniform": "@create_uniform_replay", "reverb": "@create_reverb_replay",
            "frames": "@create_frame_replay"}
# The pixel job: Atari Pong through ALE, shrunk to small frames and a small conv net, on the
# frame replay (each frame once, segments shared between bundles: kills land in segment writes
# and in their retention too).
PIXEL_BINDINGS = {
    "train.environment_fn": "@create_atari_environment",
    "create_atari_environment.game": "'Pong'",
    "create_atari_environment.screen_size": 20,
    "create_dqn_agent.conv_layer_params": "((8, 4, 2),)",
    "create_frame_replay.capacity": 2048,
    "create_frame_replay.segment_steps": 64,
    "train.initial_collect_steps": 100,
    "create_atari_environment.max_episode_frames": 400,  # episodes of 100 agent steps
}
# The observation each backend's exports are asked to act on: (shape, dtype).
OBSERVATIONS = {"uniform": ((4,), "float32"), "reverb": ((4,), "float32"),
                "frames": ((20, 20, 4), "uint8")}
RESUMED = re.compile(r"Resumed from step (\d+): replay size (\d+), env steps (\d+), episodes (\d+)")
PROGRESS = re.compile(r"\] step (\d+)/")

# A long-lived loader: reads export paths from stdin, loads both SavedModels of
# each and takes one action, answers "ok" or "bad <reason>" per line.
LOADER = r"""
import sys
import numpy as np
import tensorflow as tf
import tf_agents  # noqa: F401  (registers TF Probability types named by PolicySaver models)
from tf_agents.trajectories import time_step as ts
for line in sys.stdin:
  path, shape, dtype = line.split()
  try:
    for kind in ("greedy", "collect"):
      policy = tf.saved_model.load(f"{path}/{kind}")
      observation = np.zeros((1, *map(int, shape.split(","))), dtype)
      step = ts.TimeStep(tf.constant([0]), tf.constant([0.0]), tf.constant([1.0]),
                         tf.constant(observation))
      policy.action(step, policy.get_initial_state(1))
    print("ok", flush=True)
  except Exception as e:
    print("bad", type(e).__name__, " ".join(str(e).split())[:300], flush=True)
"""


class ExportChecker:
  """Loads exports in a separate process that imports TensorFlow once."""

  def __init__(self):
    self._proc = subprocess.Popen([sys.executable, "-c", LOADER], cwd=REPO, env=env(), text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)

  def check(self, path: str, observation: tuple = ((4,), "float32")) -> str | None:
    """None if the export at `path` loads and acts on a batch of one
    `observation` (shape, dtype; CartPole's by default), else the reason."""
    shape, dtype = observation
    self._proc.stdin.write(f"{path} {','.join(map(str, shape))} {dtype}\n")
    self._proc.stdin.flush()
    answer = self._proc.stdout.readline().strip()
    return None if answer == "ok" else (answer or "loader died")

  def close(self) -> None:
    self._proc.stdin.close()
    self._proc.wait(timeout=60)


class Chaos:
  """Kills, restarts and checks one job; counts what went wrong."""

  def __init__(self, root: pathlib.Path, backend: str, rng: random.Random, max_delay: float,
               exports: ExportChecker):
    self.root = root  # the directory the job writes (a gs:// job's staging directory)
    self.target = root  # what the job and status are given (a gs:// URL in chaos_gcs.py)
    self.exports = exports
    self.rng = rng
    self.max_delay = max_delay
    self.bindings = {**BINDINGS, **(PIXEL_BINDINGS if backend == "frames" else {}),
                     "train.num_iterations": 10**9, "train.replay_fn": BACKENDS[backend]}
    self.observation = OBSERVATIONS[backend]
    self.kills = self.failed_resumes = self.unreadable_exports = self.steps_lost = 0
    self.mid_bundle = self.mid_export = self.mid_segment = 0
    self.missing_exports: set[int] = set()
    self.bad_index = 0
    self.failures: list[str] = []
    self.checked_exports: set[str] = set()

  def fail(self, kind: str, message: str) -> None:
    self.failures.append(message)
    print(f"FAIL [{kind}] {message}", flush=True)

  def run_once(self, kill: bool) -> int | None:
    """Starts the job; SIGKILLs it at a random moment if `kill`. Returns its exit code.

    One kill in five lands at a random moment of start-up (build, restore,
    initial collect), one in five right after a bundle commits; the others a
    random time after training started, when bundles and exports are written
    every few steps.
    """
    before = status(self.target) if self.started() else None
    log_path = self.root.parent / f"{self.root.name}-{self.kills}.log"
    proc = start(self.target, self.bindings, log_path)
    rc = self._wait_and_kill(proc, log_path) if kill else proc.wait(timeout=900)
    self.check_run(before, log_path.read_text(), killed=rc is None)
    return rc

  def _wait_and_kill(self, proc: subprocess.Popen, log_path: pathlib.Path) -> int | None:
    draw = self.rng.random()
    if draw < 0.2:
      deadline = time.monotonic() + self.rng.uniform(0.5, 8.0)
    elif draw < 0.4:
      return self._kill_after_a_commit(proc)
    else:
      started = time.monotonic()
      while not PROGRESS.search(log_path.read_text()):  # training is under way
        if proc.poll() is not None:
          return proc.returncode
        if time.monotonic() - started > 300:
          self.fail("start", "the job did not start training within 300 s")
          break
        time.sleep(0.05)
      deadline = time.monotonic() + self.rng.uniform(0.0, self.max_delay)
    while time.monotonic() < deadline:
      if proc.poll() is not None:
        return proc.returncode
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None

  def _kill_after_a_commit(self, proc: subprocess.Popen) -> int | None:
    """SIGKILLs the job as soon as a bundle newer than the ones it started with commits."""
    bundles = self.root / "train" / "bundles"
    known = set(bundles.glob("[0-9]" * 10)) if bundles.exists() else set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
      if proc.poll() is not None:
        return proc.returncode
      if bundles.exists() and set(bundles.glob("[0-9]" * 10)) - known:
        break
      time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return None

  def check_run(self, before: dict | None, log: str, *, killed: bool) -> None:
    resumed = RESUMED.search(log)
    if before and before["checkpoints"]:
      expected = (before["train_step"], before["replay_size"], before["env_steps"],
                  before["episodes"])
      if resumed is None:
        if not killed or "Training from step" in log:
          self.failed_resumes += 1
          self.fail("resume", f"no resume line although bundle {expected[0]} existed")
      elif tuple(int(x) for x in resumed.groups()) != expected:
        self.failed_resumes += 1
        self.fail("resume", f"resumed {resumed.groups()} but the latest bundle held {expected}")
    after = status(self.target) if self.started() else None
    if before and after and after["checkpoints"] and after["train_step"] < before["train_step"]:
      self.fail("regress", f"train step went from {before['train_step']} to {after['train_step']}")
    if killed:
      self.kills += 1
      logged = [int(s) for s in PROGRESS.findall(log)]
      base = after["train_step"] if after and after["checkpoints"] else 0
      self.steps_lost += max(0, max(logged, default=base) - base)
      self.count_partial_writes()
    self.check_exports()
    if after is not None:
      self.check_export_grid(after)

  def started(self) -> bool:
    return (self.root / "config.gin").exists()

  def check_export_grid(self, report: dict) -> None:
    new = set(report["exports_missing"]) - self.missing_exports
    if new:
      self.missing_exports |= new
      self.fail("grid", f"exports missing at steps {sorted(new)} (committed step "
                        f"{report['train_step']})")
    self.check_index()

  def check_index(self) -> None:
    """index.json names only exports that exist."""
    policies = self.root / "policies"
    index_path = policies / "index.json"
    if index_path.exists():
      index = json.loads(index_path.read_text())
      gone = [e["path"] for e in index["exports"] if not (policies / e["path"]).is_dir()]
      if gone:
        self.bad_index += 1
        self.fail("index", f"index.json names exports that do not exist: {gone}")

  def count_partial_writes(self) -> None:
    bundles = self.root / "train" / "bundles"
    # A bundle being written is `.tmp-<step>` until its commit renames it.
    if bundles.exists() and any(re.fullmatch(r"\.tmp-\d{10}", p.name) for p in bundles.iterdir()):
      self.mid_bundle += 1
    frames = self.root / "train" / "shared" / "frames"
    # A frame replay segment being written is `.r<row>-k<index>.tmp-<pid>-<thread>`.
    if frames.exists() and any(p.name.startswith(".r") for p in frames.iterdir()):
      self.mid_segment += 1
    policies = self.root / "policies"
    # An export being assembled is `.tmp-<step>`; `.tmp-templates-<pid>` lives as long as a job.
    if policies.exists() and any(re.fullmatch(r"\.tmp-\d{10}", p.name) for p in policies.iterdir()):
      self.mid_export += 1

  def check_exports(self) -> None:
    policies = self.root / "policies"
    visible = sorted(str(p) for p in policies.glob("[0-9]" * 10)) if policies.exists() else []
    for path in visible:
      try:  # an export redone after a resume is checked again
        key = f"{path}@{(pathlib.Path(path) / 'metadata.json').stat().st_mtime_ns}"
      except FileNotFoundError:
        key = path
      if key in self.checked_exports:
        continue
      problem = self.exports.check(path, self.observation)
      if problem is not None:
        self.unreadable_exports += 1
        self.fail("export", f"{path}: {problem}")
      self.checked_exports.add(key)

  def run(self, kills: int) -> None:
    while self.kills < kills:
      rc = self.run_once(kill=True)
      if rc is not None:
        self.fail("exit", f"job exited with {rc} before it was killed")
        return
      print(f"kill {self.kills}: committed steps {status(self.target)['checkpoints']}",
            flush=True)
    # Run to completion: 50 steps past the last commit (a run-length change the job accepts).
    self.bindings["train.num_iterations"] = status(self.target)["train_step"] + 50
    rc = self.run_once(kill=False)
    final = status(self.target)
    if rc != 0 or not final["complete"]:
      self.fail("finish", f"final run exited {rc}, status {final}")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--kills", type=int, default=30, help="kills per backend")
  parser.add_argument("--backend", choices=["uniform", "reverb", "frames", "both", "all"],
                      default="both", help="both: uniform and reverb; all: the three")
  parser.add_argument("--max_delay", type=float, default=4.0,
                      help="longest time a run trains before its kill, in seconds")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None, help="where run directories go (default: a temp dir)")
  args = parser.parse_args()
  rng = random.Random(args.seed)
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="trainer-chaos-"))
  backends = {"both": ["uniform", "reverb"], "all": ["uniform", "reverb", "frames"]}.get(
      args.backend, [args.backend])
  results = []
  start_time = time.monotonic()
  exports = ExportChecker()
  for backend in backends:
    chaos = Chaos(workdir / backend, backend, rng, args.max_delay, exports)
    chaos.run(args.kills)
    results.append(chaos)
    print(f"{backend}: kills: {chaos.kills}, mid-bundle: {chaos.mid_bundle}, mid-export: "
          f"{chaos.mid_export}, mid-segment: {chaos.mid_segment}, failed resumes: "
          f"{chaos.failed_resumes}, unreadable exports: "
          f"{chaos.unreadable_exports}, grid exports missing: {len(chaos.missing_exports)}, "
          f"steps lost: {chaos.steps_lost}", flush=True)
  failures = sum(len(c.failures) for c in results)
  print(f"kills: {sum(c.kills for c in results)}, failed resumes: "
        f"{sum(c.failed_resumes for c in results)}, unreadable exports: "
        f"{sum(c.unreadable_exports for c in results)}, grid exports missing: "
        f"{sum(len(c.missing_exports) for c in results)}, wrong indexes: "
        f"{sum(c.bad_index for c in results)}, steps lost: "
        f"{sum(c.steps_lost for c in results)}, kills during a bundle write: "
        f"{sum(c.mid_bundle for c in results)}, during an export: "
        f"{sum(c.mid_export for c in results)}, during a segment write: "
        f"{sum(c.mid_segment for c in results)}, failures: {failures}, "
        f"{time.monotonic() - start_time:.0f} s ({workdir})")
  exports.close()
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
