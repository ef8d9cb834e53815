r"""Learning targets: each config trained with several seeds, against its target return.

  python scripts/learning_targets.py [--configs dqn_cartpole,c51_cartpole] [--seeds 3]
      [--workdir DIR] [--output docs/learning_targets.md]

Runs each config's seeds as one sweep (`python -m trainer.sweep --seeds=N`,
one member at a time: on 2 cores a run uses both) in --workdir/CONFIG, from
this checkout: run it from a clone of a commit, not from a tree being edited.
For each member it reads its greedy evaluations (`eval/returns.csv`) and finds
the first at or above the target: its train step, env steps and wall time since
the member's process started (from its log under the sweep: imports, graph
building and every evaluation included). The table quotes, per config, the
medians over the seeds that reached the target, how many did, and the IQM of
the final returns with its 95 % stratified bootstrap interval (trainer.report's
estimator); `python -m trainer.report --root_dir=WORKDIR/CONFIG` draws each
config's curves. Writes the table (markdown) to --output and prints it.
"""

import argparse
import datetime
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from trainer.rundir import evals as evals_lib  # noqa: E402
from trainer.sweeps import definition as definition_lib  # noqa: E402
from trainer.sweeps import report, runner  # noqa: E402

# The return each config must reach (the greedy policy's average over its eval episodes).
TARGETS = {
    "dqn_cartpole": 195.0, "c51_cartpole": 195.0, "ppo_cartpole": 475.0,
    "sac_pendulum": -200.0, "td3_pendulum": -200.0, "ppo_pendulum": -250.0,
}
_START = re.compile(r"^--- (\S+) trainer\.sweep starts member", re.MULTILINE)
_EVAL = re.compile(r"^I(\d{4}) (\d\d:\d\d:\d\d\.\d+) .*Eval at step (\d+): average return (-?[\d.]+)")


def _clock(mmdd: str, hms: str) -> float:
  stamp = datetime.datetime.strptime(f"{datetime.date.today().year}{mmdd} {hms}", "%Y%m%d %H:%M:%S.%f")
  return stamp.timestamp()


def run_one(config: str, seeds: int, workdir: pathlib.Path, *, extra_bindings=(),
            target: float | None = None, label: str | None = None) -> list[dict]:
  """Trains `config` (and `extra_bindings`) with `seeds` seeds as one sweep
  (`python -m trainer.sweep`, one member at a time) in `workdir/label`; per
  member, its evaluations against `target` (the config's own by default). The
  figures are also appended to `workdir/runs.jsonl`."""
  label = label or config
  root = workdir / label.replace(" ", "_").replace("'", "")
  if root.exists():  # it would go on with that sweep (or refuse another) instead of training anew
    raise SystemExit(f"{root} exists: pass a new --workdir")
  result = subprocess.run(
      [sys.executable, "-m", "trainer.sweep", f"--root_dir={root}",
       f"--gin_file={REPO / 'configs' / (config + '.gin')}", f"--seeds={seeds}",
       *(f"--gin_bindings={b}" for b in extra_bindings)],
      cwd=REPO, capture_output=True, text=True)
  if result.returncode != 0:
    raise SystemExit(f"the sweep of {label} exited {result.returncode}:\n{result.stderr[-2000:]}")
  target = TARGETS[config] if target is None else target
  definition = definition_lib.load(str(root))
  runs = []
  for member in definition.members:
    evals = evals_lib.read(definition_lib.member_dir(str(root), member))
    log = (root / definition_lib.LOGS_DIR / f"{member.name}.log").read_text()
    started = _START.search(log)
    launched = datetime.datetime.fromisoformat(started.group(1)).timestamp()
    seconds = {int(m[3]): _clock(m[1], m[2]) - launched
               for m in map(_EVAL.match, log.splitlines()) if m}
    hit = next((e for e in evals if e["average_return"] >= target), None)
    outcome = runner.read_outcomes(str(root))[member.name]
    runs.append({"config": label, "target": target, "seed": member.seed,
                 "wall_s": outcome["seconds"], "final_return": evals[-1]["average_return"],
                 "best_return": max(e["average_return"] for e in evals),
                 "target_step": hit["train_step"] if hit else None,
                 "target_env_steps": hit["env_steps"] if hit else None,
                 "target_wall_s": seconds.get(hit["train_step"]) if hit else None,
                 "sweep": str(root)})
  with open(workdir / "runs.jsonl", "a") as f:  # each config's figures, as they come
    for run in runs:
      f.write(json.dumps(run) + "\n")
  return runs


def iqm_cell(runs: list[dict], key: str) -> str:
  """The IQM of `key` over `runs` with its 95 % stratified bootstrap interval (trainer.report's)."""
  point, low, high = report.iqm_interval([r[key] for r in runs], reps=2000)
  return f"{point:.1f} [{low:.1f}, {high:.1f}]"


def table(runs: list[dict]) -> str:
  lines = ["| config | target | reached | median train steps to it | median env steps to it | "
           "median wall time to it | final return: IQM [95% CI] | median run wall time |",
           "|---|---|---|---|---|---|---|---|"]
  for config in dict.fromkeys(r["config"] for r in runs):
    mine = [r for r in runs if r["config"] == config]
    hit = [r for r in mine if r["target_step"] is not None]

    def median(key, runs=hit, fmt="{:,.0f}"):
      return fmt.format(statistics.median(r[key] for r in runs)) if runs else "—"

    lines.append(
        f"| {config} | ≥ {mine[0]['target']:g} | {len(hit)}/{len(mine)} | {median('target_step')} | "
        f"{median('target_env_steps')} | {median('target_wall_s', fmt='{:.0f} s')} | "
        f"{iqm_cell(mine, 'final_return')} | {median('wall_s', mine, '{:.0f} s')} |")
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
    for r in run_one(config, args.seeds, workdir):
      runs.append(r)
      print(f"{config} seed {r['seed']}: final {r['final_return']:.1f}, best "
            f"{r['best_return']:.1f}, target at step {r['target_step']} ({r['target_env_steps']} "
            f"env steps, {r['target_wall_s'] and round(r['target_wall_s'])} s), run "
            f"{r['wall_s']:.0f} s", flush=True)
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
