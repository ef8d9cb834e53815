r"""Learning targets: each config trained with several seeds, against its target return.

  python scripts/learning_targets.py [--configs dqn_cartpole,c51_cartpole] [--seeds 3]
      [--workdir DIR] [--output docs/learning_targets.md]

Runs `python -m trainer.train` once per (config, seed), one after another (on
2 cores a run uses both), from this checkout: run it from a clone of a commit,
not from a tree being edited. For each run it reads the greedy evaluations the
job logs (`Eval at step N: average return R`, with absl's timestamps) and
finds the first evaluation at or above the target: its train step, env steps
(from `eval/returns.csv`) and wall time since the process started (imports,
graph building and every evaluation included). The table quotes, per config,
the medians over the seeds that reached the target, how many did, and the
median final return. Writes the table (markdown) to --output and prints it.
"""

import argparse
import csv
import datetime
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
# The return each config must reach (the greedy policy's average over its eval episodes).
TARGETS = {
    "dqn_cartpole": 195.0, "c51_cartpole": 195.0, "ppo_cartpole": 475.0,
    "sac_pendulum": -200.0, "td3_pendulum": -200.0, "ppo_pendulum": -250.0,
}
_EVAL = re.compile(r"^I(\d{4}) (\d\d:\d\d:\d\d\.\d+) .*Eval at step (\d+): average return (-?[\d.]+)")


def _clock(mmdd: str, hms: str) -> float:
  stamp = datetime.datetime.strptime(f"{datetime.date.today().year}{mmdd} {hms}", "%Y%m%d %H:%M:%S.%f")
  return stamp.timestamp()


def run_one(config: str, seed: int, workdir: pathlib.Path, *, extra_bindings=(),
            target: float | None = None, label: str | None = None) -> dict:
  """Trains `config` with `train.seed = seed` (and `extra_bindings`) to its end;
  the evaluations against `target` (the config's own by default). The figures
  are also appended to `workdir/runs.jsonl` as each run ends."""
  label = label or config
  root = workdir / f"{label}-seed{seed}"
  if root.exists():  # it would resume that run (or refuse its config) instead of training anew
    raise SystemExit(f"{root} exists: pass a new --workdir")
  started = time.time()
  result = subprocess.run(
      [sys.executable, "-m", "trainer.train", f"--root_dir={root}",
       f"--gin_file={REPO / 'configs' / (config + '.gin')}", f"--gin_bindings=train.seed = {seed}",
       *(f"--gin_bindings={b}" for b in extra_bindings)],
      cwd=REPO, capture_output=True, text=True)
  wall = time.time() - started
  if result.returncode != 0:
    raise SystemExit(f"{config} seed {seed} exited {result.returncode}:\n{result.stderr[-2000:]}")
  env_steps = {}
  with open(root / "eval" / "returns.csv", newline="") as f:
    for row in csv.DictReader(f):
      env_steps[int(row["train_step"])] = int(row["env_steps"])
  evals = [(int(m[3]), float(m[4]), _clock(m[1], m[2]) - started)
           for m in map(_EVAL.match, result.stderr.splitlines()) if m]
  target = TARGETS[config] if target is None else target
  hit = next(((step, seconds) for step, ret, seconds in evals if ret >= target), None)
  run = {"config": label, "target": target, "seed": seed, "wall_s": wall,
         "final_return": evals[-1][1], "best_return": max(r for _, r, _ in evals),
         "target_step": hit[0] if hit else None,
         "target_env_steps": env_steps.get(hit[0]) if hit else None,
         "target_wall_s": hit[1] if hit else None}
  with open(workdir / "runs.jsonl", "a") as f:  # each run's figures, as they come
    f.write(json.dumps(run) + "\n")
  return run


def table(runs: list[dict]) -> str:
  lines = ["| config | target | reached | median train steps to it | median env steps to it | "
           "median wall time to it | median final return | median run wall time |",
           "|---|---|---|---|---|---|---|---|"]
  for config in dict.fromkeys(r["config"] for r in runs):
    mine = [r for r in runs if r["config"] == config]
    hit = [r for r in mine if r["target_step"] is not None]

    def median(key, runs=hit, fmt="{:,.0f}"):
      return fmt.format(statistics.median(r[key] for r in runs)) if runs else "—"

    lines.append(
        f"| {config} | ≥ {mine[0]['target']:g} | {len(hit)}/{len(mine)} | {median('target_step')} | "
        f"{median('target_env_steps')} | {median('target_wall_s', fmt='{:.0f} s')} | "
        f"{median('final_return', mine, '{:.1f}')} | {median('wall_s', mine, '{:.0f} s')} |")
  return "\n".join(lines)


def every_run(runs: list[dict]) -> str:
  def cell(value):
    return "—" if value is None else value

  rows = "\n".join(
      f"| {r['config']} | {r['seed']} | {cell(r['target_step'])} | {cell(r['target_env_steps'])} | "
      f"{'—' if r['target_wall_s'] is None else round(r['target_wall_s'])} | "
      f"{r['best_return']:.1f} | {r['final_return']:.1f} | {r['wall_s']:.0f} |" for r in runs)
  return ("| config | seed | train steps to target | env steps to target | wall s to target | "
          f"best return | final return | run wall s |\n|---|---|---|---|---|---|---|---|\n{rows}")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--configs", default=",".join(TARGETS))
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--output", default=str(REPO / "docs" / "learning_targets.md"))
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="trainer-targets-"))
  runs = []
  for config in args.configs.split(","):
    for seed in range(args.seeds):
      runs.append(run_one(config, seed, workdir))
      r = runs[-1]
      print(f"{config} seed {seed}: final {r['final_return']:.1f}, best {r['best_return']:.1f}, "
            f"target at step {r['target_step']} ({r['target_env_steps']} env steps, "
            f"{r['target_wall_s'] and round(r['target_wall_s'])} s), run {r['wall_s']:.0f} s",
            flush=True)
  text = table(runs)
  document = (
      "# Learning targets\n\nGenerated by `python scripts/learning_targets.py --configs "
      f"{args.configs} --seeds {args.seeds}` (a clone of the commit, 2 cores, one run at a time). "
      "Wall time counts from process launch: imports, graph building and every evaluation.\n\n"
      f"{text}\n\nEvery run:\n\n{every_run(runs)}\n")
  pathlib.Path(args.output).write_text(document)
  print(text)
  return 0


if __name__ == "__main__":
  sys.exit(main())
