r"""The Atari DQN job's first hour: its returns against wall-clock time, honestly labelled.

  python scripts/atari_first_hour.py RUN_DIR [--output docs/pong_first_hour.png]
      [--label 'what else the machine did']

RUN_DIR: a run of configs/dqn_atari.gin (stopped after an hour, say with
`timeout -s TERM 3600 python -m trainer.train ...`). Reads only:

- the training episodes' return: the collect summaries under train/
  (`Metrics/collect/AverageReturn`, the mean of the last 10 episodes of the
  epsilon-greedy policy, every train.summary_interval train steps), against
  the summary's wall-clock time since the job's first summary, and against
  env steps (`Metrics/collect/EnvironmentSteps`);
- the greedy evaluations of eval/returns.csv.

Prints a table: per summary, minutes, train steps, env steps (agent steps;
x4 for frames) and the return.
"""

import argparse
import glob
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RETURN_TAG = "Metrics/collect/AverageReturn"
STEPS_TAG = "Metrics/collect/EnvironmentSteps"


def read_timed(run_dir: str) -> list[dict]:
  """Per collect summary: train step, wall time, return and env steps."""
  import tensorflow as tf
  from tensorflow.python.framework import tensor_util

  tf.get_logger().setLevel("ERROR")
  rows: dict[int, dict] = {}
  for path in sorted(glob.glob(os.path.join(run_dir, "train", "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag not in (RETURN_TAG, STEPS_TAG):
          continue
        number = (value.simple_value if value.HasField("simple_value")
                  else float(tensor_util.MakeNdarray(value.tensor)))
        row = rows.setdefault(event.step, {"train_step": event.step, "time": event.wall_time})
        row["return" if value.tag == RETURN_TAG else "env_steps"] = number
  # The summary at step 0 is written before any episode ends (its return, 0, is no episode's).
  return [rows[s] for s in sorted(rows) if s > 0 and "return" in rows[s] and "env_steps" in rows[s]]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("run_dir")
  parser.add_argument("--output", default=str(REPO / "docs" / "pong_first_hour.png"))
  parser.add_argument("--label", default="")
  parser.add_argument("--start", type=float, default=None,
                      help="the job's launch (Unix time); default: its first summary")
  args = parser.parse_args()
  rows = read_timed(args.run_dir)
  if not rows:
    raise SystemExit(f"{args.run_dir} holds no collect summaries yet")
  from trainer.rundir import evals as evals_lib
  evals = evals_lib.read(args.run_dir)
  start = args.start if args.start is not None else rows[0]["time"]
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, (by_time, by_steps) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  minutes = [(r["time"] - start) / 60 for r in rows]
  by_time.plot(minutes, [r["return"] for r in rows], marker="o", markersize=3,
               label="training episodes (epsilon-greedy, mean of the last 10)")
  by_steps.plot([r["env_steps"] for r in rows], [r["return"] for r in rows], marker="o",
                markersize=3, label="training episodes (epsilon-greedy, mean of the last 10)")
  if evals:
    by_steps.plot([e["env_steps"] for e in evals], [e["average_return"] for e in evals], marker="s",
                  linestyle="none", color="black", label="greedy evaluation")
  for ax in (by_time, by_steps):
    ax.set_ylim(-21.5, 21.5)
    ax.grid(alpha=0.3)
  by_time.set_xlabel("minutes since the job's launch" if args.start else
                     "minutes since the first summary")
  by_steps.set_xlabel("agent steps (4 frames each)")
  by_time.set_ylabel("episode return (−21 … 21)")
  by_steps.legend(fontsize=8, loc="upper left")
  fig.suptitle(f"DQN on Pong (configs/dqn_atari.gin), its first hour{args.label}", fontsize=10)
  fig.tight_layout()
  fig.savefig(args.output, dpi=100)
  print("| minutes | train steps | agent steps | return (training, last 10 episodes) |")
  print("|---|---|---|---|")
  for r, m in zip(rows, minutes, strict=True):
    print(f"| {m:.1f} | {r['train_step']:,} | {r['env_steps']:,.0f} | {r['return']:.1f} |")
  for e in evals:
    print(f"greedy eval at train step {e['train_step']:,} ({e['env_steps']:,} agent steps): "
          f"{e['average_return']:.1f}")
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
