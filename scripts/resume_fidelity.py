r"""Resume fidelity: does a job killed 5 times learn as well as an uninterrupted one?

  python scripts/resume_fidelity.py [--seeds 0 1 2] [--kills 5] [--num_iterations 10000]

For each seed, trains the default DQN CartPole job twice: once without
interruption, once SIGKILLed at `--kills` random moments of its training and
restarted each time. Reports the final eval average return (10 greedy
episodes at the last step) and the mean of the last three evaluations of
both, side by side, as a Markdown table (stdout and `--output` .md) and JSON.
"""

import argparse
import csv
import json
import pathlib
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

from jobs import REPO, start, status

PROGRESS = re.compile(r"\] step (\d+)/")


def _evals(root: pathlib.Path) -> list[tuple[int, float]]:
  """Evaluations of the run's committed history, one per step (reruns overwrite)."""
  rows = {}
  with open(root / "eval" / "returns.csv") as f:
    for row in csv.DictReader(f):
      rows[int(row["train_step"])] = float(row["average_return"])
  return sorted(rows.items())


def _run(root: pathlib.Path, bindings: dict, kills: int, rng: random.Random,
         window: tuple[float, float]) -> dict:
  """Trains to completion, SIGKILLing the job `kills` times at random training moments."""
  start_time, killed = time.monotonic(), 0
  while True:
    log = root.parent / f"{root.name}-{killed}.log"
    proc = start(root, bindings, log)
    if killed < kills:
      while not PROGRESS.search(log.read_text()) and proc.poll() is None:
        time.sleep(0.1)  # until training is under way (first progress line)
      try:
        proc.wait(timeout=rng.uniform(*window))
      except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed += 1
        print(f"  {root.name}: kill {killed} at committed step {status(root)['train_step']}",
              flush=True)
        continue
    if proc.wait() != 0:
      raise RuntimeError(f"{root} exited with {proc.returncode}; see {log}")
    break
  evals = _evals(root)
  return {"final_return": evals[-1][1], "last3_mean": sum(r for _, r in evals[-3:]) / 3,
          "kills": killed, "wall_s": round(time.monotonic() - start_time, 1),
          "final_step": status(root)["train_step"]}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--kills", type=int, default=5)
  parser.add_argument("--kill_window", type=float, nargs=2, default=[1.0, 10.0],
                      metavar=("MIN_S", "MAX_S"),
                      help="each kill comes this many seconds after the life's first progress line")
  parser.add_argument("--num_iterations", type=int, default=10_000)
  parser.add_argument("--checkpoint_interval", type=int, default=1_000)
  parser.add_argument("--workdir", default=None)
  parser.add_argument("--output", default=str(REPO / "docs" / "resume_fidelity"),
                      help="writes OUTPUT.md and OUTPUT.json")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="trainer-fidelity-"))
  if workdir.exists() and any(p.is_dir() for p in workdir.iterdir()):
    sys.exit(f"{workdir} already holds runs, which would be resumed, not trained afresh; "
             "pass an empty --workdir")
  rng = random.Random(1234)
  rows = []
  for seed in args.seeds:
    # Both arms checkpoint every 1,000 steps, so the killed arm resumes mid-training.
    bindings = {"train.seed": seed, "train.num_iterations": args.num_iterations,
                "train.checkpoint_interval": args.checkpoint_interval}
    row = {"seed": seed}
    for name, kills in (("uninterrupted", 0), ("killed", args.kills)):
      row[name] = _run(workdir / f"seed{seed}-{name}", bindings, kills, rng,
                       tuple(args.kill_window))
      print(f"seed {seed} {name}: {row[name]}", flush=True)
    rows.append(row)
  table = [
      f"DQN CartPole-v0, `configs/dqn_cartpole.gin` with `train.num_iterations={args.num_iterations}`, "
      f"`train.checkpoint_interval={args.checkpoint_interval}`; "
      f"eval = average return of 10 greedy episodes. The killed runs were SIGKILLed up to {args.kills} "
      f"times at random moments of training ({args.kill_window[0]:g}-{args.kill_window[1]:g} s "
      "after each life's first progress line) and restarted with the same "
      "command; `kills` is the actual count (a run that finished first got fewer).",
      "",
      "| seed | final eval, uninterrupted | final eval, killed | mean of last 3 evals, "
      "uninterrupted | mean of last 3 evals, killed | kills |",
      "|---|---|---|---|---|---|",
  ]
  for r in rows:
    u, k = r["uninterrupted"], r["killed"]
    table.append(f"| {r['seed']} | {u['final_return']:.1f} | {k['final_return']:.1f} | "
                 f"{u['last3_mean']:.1f} | {k['last3_mean']:.1f} | {k['kills']} |")
  text = "\n".join(table) + "\n"
  print(text)
  out = pathlib.Path(args.output)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".md").write_text("# Resume fidelity\n\n" + text + "\nReproduce: `python "
                                    "scripts/resume_fidelity.py`\n")
  out.with_suffix(".json").write_text(json.dumps({"rows": rows, "args": vars(args)}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
