r"""Wall time to solve CartPole: trainer's default job against TF-Agents' own example.

  python benchmarks/time_to_solve.py [--runs 5] [--timeout 300] [--quick]

"Solved" is the first evaluation after step 0 whose average return over 10
greedy episodes of CartPole-v0 is >= 195. The clock starts when the process is
launched (imports, graph building and every evaluation count) and stops at the
log line of that evaluation; the process is then killed.

- anchor: `python -m tf_agents.examples.dqn.dqn_train_eval`, unmodified, from
  the installed package (Reverb replay, 1 collect step and 1 train step per
  iteration, 10 greedy episodes every 1,000 train steps, starting at step 0).
- trainer: `python -m trainer.train --gin_file=configs/dqn_cartpole.gin`
  with `train.seed` set per run (10 greedy episodes every
  `train.eval_interval` train steps).
- trainer, example's hyperparameters (`--example_hparams`): the same job with
  the agent's learning rate set back to the example's (1e-3; every other
  DQN setting already is the example's), to tell the engineering's share of
  the speed-up from the tuned learning rate's.

They alternate run by run so that machine noise falls on all alike.
Results are written as the "time_to_solve" section of --output.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

SOLVED = 195.0
_TRAINER_EVAL = re.compile(r"Eval at step (\d+): average return ([\d.]+)")
_ANCHOR_RETURN = re.compile(r"AverageReturn = ([\d.]+)")
# Where the default config departs from dqn_train_eval's agent settings.
EXAMPLE_HPARAMS = ("create_dqn_agent.learning_rate = 1e-3",)


def _watch(cmd: list[str], parse, timeout: float, log_path: str) -> dict:
  """Runs `cmd` until `parse(line)` returns a solved step; returns what was seen."""
  start = time.monotonic()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  timer = threading.Timer(timeout, proc.kill)
  timer.start()
  result = {"seconds": None, "train_step": None, "evals": []}
  try:
    with open(log_path, "w") as log:
      for line in proc.stdout:
        log.write(line)
        seen = parse(line)
        if seen is None:
          continue
        step, average_return = seen
        result["evals"].append([step, average_return, round(time.monotonic() - start, 2)])
        if step > 0 and average_return >= SOLVED:
          result.update(seconds=round(time.monotonic() - start, 2), train_step=step)
          break
  finally:
    timer.cancel()
    proc.kill()
    proc.wait()
  return result


def run_trainer(seed: int, timeout: float, workdir: str, bindings: list[str]) -> dict:
  root = os.path.join(workdir, f"trainer-{seed}")
  cmd = [sys.executable, "-m", "trainer.train", f"--root_dir={root}",
         f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
         f"--gin_bindings=train.seed = {seed}"] + [f"--gin_bindings={b}" for b in bindings]

  def parse(line):
    m = _TRAINER_EVAL.search(line)
    return (int(m.group(1)), float(m.group(2))) if m else None

  try:
    return _watch(cmd, parse, timeout, root + ".log")
  finally:
    shutil.rmtree(root, ignore_errors=True)


def run_anchor(run: int, timeout: float, workdir: str) -> dict:
  root = os.path.join(workdir, f"anchor-{run}")
  cmd = [sys.executable, "-m", "tf_agents.examples.dqn.dqn_train_eval", f"--root_dir={root}"]
  # The example logs each eval's AverageReturn without its step; it evaluates at
  # step 0 and then every 1,000 train steps (its eval_interval flag's default).
  count = {"evals": 0}

  def parse(line):
    m = _ANCHOR_RETURN.search(line)
    if not m:
      return None
    step = 1000 * count["evals"]
    count["evals"] += 1
    return step, float(m.group(1))

  try:
    return _watch(cmd, parse, timeout, root + ".log")
  finally:
    shutil.rmtree(root, ignore_errors=True)


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="1 run each, 120 s timeout")
  parser.add_argument("--runs", type=int, default=5, help="runs of each (trainer: seeds 0..N-1)")
  parser.add_argument("--timeout", type=float, default=300, help="seconds before a run counts as unsolved")
  parser.add_argument("--which", choices=("both", "trainer", "anchor"), default="both")
  parser.add_argument("--gin_bindings", action="append", default=[],
                      help="extra bindings for trainer runs (to compare settings)")
  parser.add_argument("--example_hparams", action="store_true",
                      help="also run trainer with the example's learning rate")
  args = parser.parse_args()
  if args.quick:
    args.runs, args.timeout = 1, 120
  workdir = tempfile.mkdtemp(prefix="trainer-time-to-solve-")
  trainer_runs, anchor_runs, example_runs = [], [], []
  for i in range(args.runs):
    if args.which in ("both", "anchor"):
      anchor_runs.append(run_anchor(i, args.timeout, workdir))
      print(f"anchor  run {i}: {anchor_runs[-1]['seconds']} s at step "
            f"{anchor_runs[-1]['train_step']}", flush=True)
    if args.which in ("both", "trainer"):
      trainer_runs.append(run_trainer(i, args.timeout, workdir, args.gin_bindings))
      print(f"trainer seed {i}: {trainer_runs[-1]['seconds']} s at step "
            f"{trainer_runs[-1]['train_step']}", flush=True)
    if args.example_hparams:
      example_runs.append(run_trainer(i, args.timeout, workdir,
                                      args.gin_bindings + list(EXAMPLE_HPARAMS)))
      print(f"trainer (example's hyperparameters) seed {i}: {example_runs[-1]['seconds']} s "
            f"at step {example_runs[-1]['train_step']}", flush=True)
  section = {
      "what": "wall seconds from launch to the first eval (10 greedy episodes, after step 0) "
              f"with average return >= {SOLVED} on CartPole-v0",
      "timeout_s": args.timeout, "trainer_bindings": args.gin_bindings,
      "trainer": common.describe_runs(trainer_runs), "anchor": common.describe_runs(anchor_runs),
  }
  if example_runs:
    section["trainer_example_hparams"] = common.describe_runs(example_runs)
    section["example_hparams"] = list(EXAMPLE_HPARAMS)
  a = section["anchor"].get("median_s")
  for side, key in (("trainer", "speedup"), ("trainer_example_hparams", "speedup_example_hparams")):
    t = section.get(side, {}).get("median_s")
    if anchor_runs and t and a:
      section[key] = round(a / t, 2)
  print(common.dumps(section))
  if args.which == "both" and not args.gin_bindings:
    common.write_results(args, "time_to_solve", section)
  shutil.rmtree(workdir, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
