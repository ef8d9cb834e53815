r"""Collection scaling of the roles: env steps per second with 1, 2, 4, 8 collectors.

  python benchmarks/roles.py [--collectors 1,2,4,8] [--window 20] [--quick]

For each count, `python -m trainer.launch` runs the default DQN config on
CartPole-v0 with every environment step sleeping 10 ms
(`create_gym_environment.step_seconds = 0.01`, a stand-in for a slow
simulator), one environment per collector, and a rate limiter that does not
hold the collectors back (`rate_control.samples_per_insert = 0.001`: this
measures collection, not the collect:train ratio). Once every collector writes
with the learner's policy, the script reads the collectors' counters on the
replay server (exact: what reached the replay) at the start and the end of a
`--window`-second window; the rate is the env steps in between over its
length. Then it stops the job (SIGTERM).

A collector alone does at most ~100 env steps/s here (10 ms of sleep a step);
8 collectors on this machine's 2 cores share them with the learner and the
server. Results are the "roles_collection" section of --output.

Then, time to solve: wall time from launch to the first greedy evaluation
>= 195 on CartPole-v0 (the default config, no sleep), `trainer.launch
--collectors=2` against `trainer.train`, seeds 0 to `--solve_runs`-1,
interleaved ("roles_time_to_solve" section).
"""

import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import reverb  # noqa: E402

from benchmarks import common, time_to_solve  # noqa: E402
from trainer.roles import auth, rolefiles, tables  # noqa: E402

STEP_SECONDS = 0.01
BINDINGS = (
    f"create_gym_environment.step_seconds = {STEP_SECONDS}",
    "train.collect_envs = 1",
    "train.collect_steps_per_iteration = 20",
    "rate_control.samples_per_insert = 0.001",
    "train.num_iterations = 100000000",
    "train.eval_interval = 0",
    "train.initial_collect_steps = 200",
    "train.checkpoint_interval = 100000000",
    "train.policy_export_interval = 100000000",
)


def measure(collectors: int, window: float, workdir: pathlib.Path) -> dict:
  root = workdir / f"collectors-{collectors}"
  log = open(workdir / f"collectors-{collectors}.log", "w")  # noqa: SIM115
  proc = subprocess.Popen(
      [sys.executable, "-m", "trainer.launch", f"--root_dir={root}",
       f"--collectors={collectors}", f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
       *(f"--gin_bindings={b}" for b in BINDINGS)],
      cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # every collector acts with the learner's policy
      ready = [b for b in rolefiles.read_all(str(root))
               if b["role"].startswith("collector-") and b.get("policy_step")]
      if len(ready) == collectors:
        break
      if proc.poll() is not None:
        raise SystemExit(f"launch exited {proc.returncode}; see {log.name}")
      time.sleep(1.0)
    client = reverb.Client(rolefiles.server_address(str(root)))
    key = auth.job_key(str(root))

    def env_steps() -> int:
      return sum(c[0] for c in tables.read_counters(client, key).signed.values())

    start, first = time.monotonic(), env_steps()
    time.sleep(window)
    end, last = time.monotonic(), env_steps()
  finally:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=300)
  rate = (last - first) / (end - start)
  print(f"{collectors} collector(s): {rate:.0f} env steps/s", flush=True)
  return {"collectors": collectors, "env_steps_per_s": rate, "window_s": end - start}


def solve_as_roles(seed: int, timeout: float, workdir: pathlib.Path) -> dict:
  root = workdir / f"solve-roles-{seed}"
  cmd = [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", "--collectors=2",
         f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
         f"--gin_bindings=train.seed = {seed}"]

  def parse(line):
    m = time_to_solve._TRAINER_EVAL.search(line)  # noqa: SLF001  (the same eval line)
    return (int(m.group(1)), float(m.group(2))) if m else None

  result = time_to_solve._watch(cmd, parse, timeout, str(root) + ".log")  # noqa: SLF001
  time.sleep(15)  # the roles stop after launch (their parent-death signal)
  return result


def time_to_solve_both(runs: int, timeout: float, workdir: pathlib.Path) -> dict:
  single, roles = [], []
  for seed in range(runs):
    single.append(time_to_solve.run_trainer(seed, timeout, str(workdir), []))
    roles.append(solve_as_roles(seed, timeout, workdir))
    print(f"seed {seed}: single process {single[-1]['seconds']} s, roles "
          f"{roles[-1]['seconds']} s", flush=True)
  return {"single_process": common.describe_runs(single), "roles_2_collectors":
          common.describe_runs(roles)}


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="1 and 2 collectors, 5 s windows")
  parser.add_argument("--collectors", default="1,2,4,8")
  parser.add_argument("--window", type=float, default=20.0)
  parser.add_argument("--solve_runs", type=int, default=3)
  parser.add_argument("--solve_timeout", type=float, default=300.0)
  parser.add_argument("--skip_collection", action="store_true")
  args = parser.parse_args()
  counts = [1, 2] if args.quick else [int(c) for c in args.collectors.split(",")]
  window = 5.0 if args.quick else args.window
  workdir = pathlib.Path(tempfile.mkdtemp(prefix="trainer-bench-roles-"))
  if not args.skip_collection:
    runs = [measure(n, window, workdir) for n in counts]
    base = runs[0]["env_steps_per_s"]
    for run in runs:
      run["speedup"] = run["env_steps_per_s"] / base
    common.write_results(args, "roles_collection", {
        "step_seconds": STEP_SECONDS, "runs": runs,
        "ideal_one_collector_env_steps_per_s": 1 / STEP_SECONDS})
  solve_runs = 1 if args.quick else args.solve_runs
  common.write_results(args, "roles_time_to_solve",
                       time_to_solve_both(solve_runs, args.solve_timeout, workdir))
  return 0


if __name__ == "__main__":
  sys.exit(main())
