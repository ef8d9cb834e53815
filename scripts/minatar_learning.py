r"""DQN on MinAtar Breakout: the runs' learning curves against the published DQN curve.

  python scripts/minatar_learning.py [RUN_DIR ...] [--window 10]
      [--output docs/minatar_breakout_dqn.png] [--frames 1000000]

RUN_DIRs default to /work/learn/minatar_breakout_s{0,1,2} (runs of
configs/dqn_minatar.gin with train.seed 0, 1, 2). Reads only (safe beside the
live jobs): per run

- the training-episode returns: the collect summaries under train/
  (`Metrics/collect/AverageReturn`, the mean return of the last 10 training
  episodes of the epsilon-greedy collect policy, written every
  train.summary_interval train steps, against `Metrics/collect/EnvironmentSteps`),
  smoothed by a moving average over the last --window summaries (10: 100
  training episodes, the size of the paper's window, but sampled 10 at a time
  from a span of --window x 5,000 env steps rather than 100 in a row);
- the greedy evaluations of eval/returns.csv (train.eval_episodes episodes each).

Draws both against env steps (= MinAtar frames) with each seed, their mean and
their range, and the published DQN curve read off its figure; prints a table
per run. A summary written again after a resume replaces the one from the job
that was stopped (TensorBoard's rule: a new event file purges the steps at and
above its first).
"""

import argparse
import glob
import os
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_RUNS = [f"/work/learn/minatar_breakout_s{seed}" for seed in range(3)]
RETURN_TAG = "Metrics/collect/AverageReturn"
STEPS_TAG = "Metrics/collect/EnvironmentSteps"
EPISODES_TAG = "Metrics/collect/NumberOfEpisodes"
COLLECT_WINDOW = 10  # episodes in AverageReturn (trainer/acting/collect_stats.py)

# The published DQN curve on Breakout: Young & Tian 2019 (arXiv:1903.03176), the figure of the
# MinAtar README, img/learning_curves.gif (github.com/kenjyoung/MinAtar, updated in commit 87c2bc8,
# 2020-02-14, "consistent with most recent paper"): "moving average of returns over 100
# episodes" of training, mean of 30 runs, against frames. No data file is published: these
# values were read off the figure (the blue "DQN" curve, axes calibrated on the tick marks),
# to about +-0.3 (the line's width and its wiggle; +-0.6 at 0.1M where it rises steeply).
# (frames, return, read-off uncertainty)
PUBLISHED_DQN = [
    (100_000, 4.5, 0.6), (200_000, 6.1, 0.3), (300_000, 7.3, 0.3), (400_000, 8.2, 0.3),
    (500_000, 8.3, 0.3), (600_000, 8.6, 0.3), (700_000, 8.7, 0.3), (800_000, 8.9, 0.3),
    (900_000, 8.8, 0.3), (1_000_000, 9.2, 0.3),
]
PUBLISHED_LABEL = ("published DQN, Young & Tian 2019 (MinAtar README figure, 30 runs,\n"
                   "100-episode moving average; read off the figure, ±0.3 to 0.6)")


def read_scalars(run_dir: str, tags: set[str]) -> dict[str, dict[int, float]]:
  """{tag: {train step: value}} from every event file under run_dir/train (not
  its subfolders: the learner's own is empty), oldest file first. A file's first
  step of a tag purges that tag's values at and above it from older files."""
  import tensorflow as tf
  from tensorflow.python.framework import tensor_util

  tf.get_logger().setLevel("ERROR")  # summary_iterator's deprecation notice

  out: dict[str, dict[int, float]] = {tag: {} for tag in tags}
  files = sorted(glob.glob(os.path.join(run_dir, "train", "events.out.tfevents.*")),
                 key=lambda f: (int(os.path.basename(f).split(".")[3]), f))  # creation time
  for path in files:
    first: dict[str, int] = {}
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag not in tags:
          continue
        if value.tag not in first:
          first[value.tag] = event.step
          out[value.tag] = {s: v for s, v in out[value.tag].items() if s < event.step}
        number = (value.simple_value if value.HasField("simple_value")
                  else float(tensor_util.MakeNdarray(value.tensor)))
        out[value.tag][event.step] = number
  return out


def training_curve(run_dir: str, window: int) -> dict[str, np.ndarray]:
  """Env steps, raw 10-episode means and their moving average over `window`
  summaries (shorter at the start), at each collect summary."""
  scalars = read_scalars(run_dir, {RETURN_TAG, STEPS_TAG, EPISODES_TAG})
  steps = sorted(set(scalars[RETURN_TAG]) & set(scalars[STEPS_TAG]))
  env_steps = np.array([scalars[STEPS_TAG][s] for s in steps])
  raw = np.array([scalars[RETURN_TAG][s] for s in steps])
  smooth = np.array([raw[max(0, i - window + 1):i + 1].mean() for i in range(len(raw))])
  episodes = np.array([scalars[EPISODES_TAG].get(s, np.nan) for s in steps])
  return {"train_step": np.array(steps), "env_steps": env_steps, "raw": raw, "smooth": smooth,
          "episodes": episodes}


def eval_curve(run_dir: str) -> list[dict]:
  """eval/returns.csv (the last row of a step counts); [] before the first evaluation."""
  from trainer.cli.plot import read_returns
  from trainer.errors import ConfigError

  try:
    return [r for r in read_returns(run_dir) if r["env_steps"] is not None]
  except ConfigError:
    return []


def _mean_and_range(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray):
  """Mean, min and max over runs on `grid` (linear interpolation; only where every run has data)."""
  end = min(x[-1] for x, _ in curves)
  grid = grid[grid <= end]
  table = np.array([np.interp(grid, x, y) for x, y in curves])
  return grid, table.mean(axis=0), table.min(axis=0), table.max(axis=0)


def plot(runs: dict[str, dict], output: str, window: int, frames: int) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  n = len(runs)
  reached = min(int(r["train"]["env_steps"][-1]) for r in runs.values())
  # The last summary comes every 5,000 train steps: a run complete at 1M env steps has its
  # last one a few thousand short of it.
  state = (f"complete: {n} seeds, 1M env steps each (last summary at ≥ {reached:,})"
           if reached >= 0.99 * frames else
           f"in progress: {n} seeds, each at ≥ {reached:,} of {frames:,} env steps")
  fig, (train_ax, eval_ax) = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  grid = np.linspace(0, frames, 401)

  for i, (name, run) in enumerate(runs.items()):
    t = run["train"]
    train_ax.plot(t["env_steps"], t["smooth"], color=colors[i + 1], linewidth=1, alpha=0.7,
                  label=name)
  if n > 1:
    x, mean, low, high = _mean_and_range(
        [(r["train"]["env_steps"], r["train"]["smooth"]) for r in runs.values()], grid)
    train_ax.fill_between(x, low, high, color="gray", alpha=0.25, label=f"range of the {n} seeds")
    train_ax.plot(x, mean, color="black", linewidth=2.2, label=f"mean of the {n} seeds")
  px, py, pe = (np.array(c) for c in zip(*PUBLISHED_DQN, strict=True))
  train_ax.errorbar(px, py, yerr=pe, color=colors[0], marker="s", markersize=5, linestyle="--",
                    linewidth=1.2, capsize=3, label=PUBLISHED_LABEL)
  spacing = np.median(np.concatenate([np.diff(r["train"]["env_steps"]) for r in runs.values()]))
  train_ax.set_title(f"Training episodes (ε-greedy, ε → 0.1): moving average of {window} summaries\n"
                     f"of the last {COLLECT_WINDOW} episodes each ({window * COLLECT_WINDOW} episodes "
                     f"over {window * spacing:,.0f} env steps)")
  train_ax.set_ylabel("return per episode (bricks broken)")

  evaluated = {name: r["eval"] for name, r in runs.items() if r["eval"]}
  for i, (name, rows) in enumerate(runs.items()):
    rows = rows["eval"]
    if rows:
      eval_ax.plot([r["env_steps"] for r in rows], [r["average_return"] for r in rows],
                   color=colors[i + 1], linewidth=1, alpha=0.7, marker="o", markersize=3,
                   label=name)
  if len(evaluated) > 1:
    curves = [(np.array([r["env_steps"] for r in rows], float),
               np.array([r["average_return"] for r in rows])) for rows in evaluated.values()]
    start = max(x[0] for x, _ in curves)
    x, mean, low, high = _mean_and_range(curves, grid[grid >= start])
    if len(x):
      eval_ax.fill_between(x, low, high, color="gray", alpha=0.25,
                           label=f"range of the {len(evaluated)} seeds")
      eval_ax.plot(x, mean, color="black", linewidth=2.2,
                   label=f"mean of the {len(evaluated)} seeds")
  if not evaluated:
    eval_ax.text(0.5, 0.5, "no evaluation yet", transform=eval_ax.transAxes, ha="center")
  eval_ax.set_title("Greedy evaluations (10 episodes each, every 50,000 train steps);\n"
                    "the paper reports no greedy evaluation")

  for ax in (train_ax, eval_ax):
    ax.set_xlim(0, frames * 1.02)
    ax.set_xlabel("environment steps (= MinAtar frames)")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if v else "0"))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7.5, loc="best")
  train_ax.set_ylim(bottom=0)
  fig.suptitle(f"DQN on MinAtar Breakout (configs/dqn_minatar.gin) — {state}")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=100)
  plt.close(fig)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("runs", nargs="*", default=DEFAULT_RUNS)
  parser.add_argument("--window", type=int, default=10,
                      help="collect summaries in the moving average (each: 10 episodes)")
  parser.add_argument("--output", default=str(REPO / "docs" / "minatar_breakout_dqn.png"))
  parser.add_argument("--frames", type=int, default=1_000_000,
                      help="the env steps the runs aim at (the x axis' end)")
  args = parser.parse_args()
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  runs = {}
  for run_dir in args.runs:
    name = os.path.basename(os.path.normpath(run_dir))
    train = training_curve(run_dir, args.window)
    if not len(train["env_steps"]):
      raise SystemExit(f"{run_dir}: no {RETURN_TAG} summary yet")
    runs[name] = {"train": train, "eval": eval_curve(run_dir)}
  plot(runs, args.output, args.window, args.frames)
  print(f"| run | train step | env steps | episodes | training return, last {args.window} "
        f"summaries ({args.window * COLLECT_WINDOW} episodes) | last greedy eval (env steps) |")
  print("|---|---|---|---|---|---|")
  for name, run in runs.items():
    t, e = run["train"], run["eval"]
    last_eval = (f"{e[-1]['average_return']:.2f} ({e[-1]['env_steps']:,})" if e else "none yet")
    print(f"| {name} | {t['train_step'][-1]:,} | {int(t['env_steps'][-1]):,} | "
          f"{int(t['episodes'][-1]):,} | {t['smooth'][-1]:.2f} | {last_eval} |")
  frames, published, _ = PUBLISHED_DQN[-1]
  print(f"published DQN (Young & Tian 2019, read off its figure) at {frames:,} frames: "
        f"{published:.1f} ± 0.3")
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
