"""A sweep's results with honest statistics: IQM and stratified-bootstrap confidence intervals.

The field's reporting standard (Agarwal et al. 2021, "Deep RL at the Edge of
the Statistical Precipice", the `rliable` library): per configuration, the
interquartile mean (IQM: the mean of the middle 50 % of the runs' scores,
`scipy.stats.trim_mean(x, 0.25)`) with a 95 % confidence interval from a
stratified bootstrap over the runs (percentile method), a performance profile
(the fraction of runs scoring above each threshold) and IQM curves against
environment steps. A run's scores are the greedy evaluations the job made
during training (`eval/returns.csv`): its final one and its best one.

Reads only: it runs beside a live sweep, and says which members are not
complete (their scores so far are in the curves, not in the final columns).
"""

import csv
import dataclasses
import json
import os
from typing import Any

import numpy as np

from trainer.rundir import evals
from trainer.sweeps import definition as definition_lib
from trainer.sweeps import runner

CONFIDENCE = 0.95


# --- the estimators ------------------------------------------------------------------


def iqm(scores: np.ndarray) -> float:
  """Interquartile mean of every score (rliable's `metrics.aggregate_iqm`)."""
  from scipy import stats
  return float(stats.trim_mean(np.asarray(scores, float).reshape(-1), proportiontocut=0.25))


def iqm_interval(scores: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float, float]:
  """(IQM, low, high): the 95 % stratified bootstrap interval of `scores`
  ([runs] or [runs, tasks]), as rliable's `get_interval_estimates` computes it."""
  from rliable import library as rly
  scores = np.asarray(scores, float)
  scores = scores[:, None] if scores.ndim == 1 else scores
  np.random.seed(seed)  # rliable draws from numpy's global generator
  point, interval = rly.get_interval_estimates(
      {"x": scores}, lambda x: np.array([iqm(x)]), reps=reps, confidence_interval_size=CONFIDENCE)
  return float(point["x"][0]), float(interval["x"][0, 0]), float(interval["x"][1, 0])


def performance_profile(scores: dict[str, np.ndarray], taus: np.ndarray, reps: int,
                        seed: int = 0) -> tuple[dict, dict]:
  """rliable's run-score profile: per label, the fraction of runs scoring above
  each tau, and its 95 % stratified bootstrap interval."""
  from rliable import library as rly
  np.random.seed(seed)
  return rly.create_performance_profile(
      {k: np.asarray(v, float)[:, None] for k, v in scores.items()}, taus, reps=reps,
      confidence_interval_size=CONFIDENCE)


# --- the sweep's table ----------------------------------------------------------------


@dataclasses.dataclass
class MemberResult:
  name: str
  config: int
  seed: int
  state: str  # complete, running/stopped (incomplete), failed, not started
  evals: list[dict[str, Any]]
  train_step: int
  num_iterations: int | None

  @property
  def complete(self) -> bool:
    return self.state == "complete"


def collect(root_dir: str, definition: definition_lib.Definition) -> list[MemberResult]:
  outcomes = runner.read_outcomes(root_dir)
  results = []
  for member in definition.members:
    path = definition_lib.member_dir(root_dir, member)
    step, total = runner.member_progress(path)
    if runner.is_complete(path):
      state = "complete"
    elif outcomes.get(member.name, {}).get("state") == "failed":
      state = "failed"
    elif os.path.isdir(path):
      state = "incomplete"
    else:
      state = "not started"
    results.append(MemberResult(member.name, member.config, member.seed, state,
                                evals.read(path), step, total))
  return results


def steps_to_target(evals: list[dict[str, Any]], target: float) -> int | None:
  """Env steps of the first evaluation at or above `target` (None: never)."""
  for row in evals:
    if row["average_return"] >= target and row["env_steps"] is not None:
      return row["env_steps"]
  return None


def summarize(definition: definition_lib.Definition, members: list[MemberResult],
              target: float | None, reps: int) -> list[dict[str, Any]]:
  """One row per configuration (module doc): IQMs over its complete members."""
  rows = []
  for config in definition.configs:
    mine = [m for m in members if m.config == config["index"]]
    done = [m for m in mine if m.complete and m.evals]
    row = {"config": config["index"], "label": config["label"], "values": config["values"],
           "members": len(mine), "complete": sum(m.complete for m in mine),
           "failed": [m.name for m in mine if m.state == "failed"],
           "incomplete": [m.name for m in mine if not m.complete and m.state != "failed"]}
    if done:
      final = np.array([m.evals[-1]["average_return"] for m in done])
      best = np.array([max(e["average_return"] for e in m.evals) for m in done])
      row["final"] = dict(zip(("iqm", "low", "high"), iqm_interval(final, reps), strict=False))
      row["best"] = dict(zip(("iqm", "low", "high"), iqm_interval(best, reps), strict=False))
      row["final_scores"] = final.tolist()
    if target is not None:
      reached = [steps_to_target(m.evals, target) for m in done]
      hit = [s for s in reached if s is not None]
      row["target"] = {"target": target, "reached": len(hit), "of": len(done),
                       "median_env_steps": float(np.median(hit)) if hit else None,
                       "env_steps": reached}
    rows.append(row)
  return rows


def _interval(cell: dict | None) -> str:
  return "—" if not cell else f"{cell['iqm']:.1f} [{cell['low']:.1f}, {cell['high']:.1f}]"


def markdown(rows: list[dict[str, Any]], target: float | None, reps: int) -> str:
  head = ["configuration", "final eval: IQM [95% CI]", "best eval: IQM [95% CI]"]
  if target is not None:
    head.append(f"env steps to {target:g} (median; reached)")
  head.append("members complete / failed")
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for row in rows:
    cells = [f"c{row['config']}: {row['label']}", _interval(row.get("final")),
             _interval(row.get("best"))]
    if target is not None:
      t = row["target"]
      median = "—" if t["median_env_steps"] is None else f"{t['median_env_steps']:,.0f}"
      cells.append(f"{median}; {t['reached']}/{t['of']}")
    cells.append(f"{row['complete']}/{row['members']} / {len(row['failed'])}")
    lines.append("| " + " | ".join(cells) + " |")
  notes = [f"IQM over each configuration's complete members; 95 % stratified bootstrap "
           f"intervals ({reps:,} resamples, rliable)."]
  pending = [name for row in rows for name in row["incomplete"]]
  failed = [name for row in rows for name in row["failed"]]
  if pending:
    notes.append(f"Not complete (not in the final and best columns; in the curves so far): "
                 f"{', '.join(pending)}.")
  if failed:
    notes.append(f"Failed: {', '.join(failed)} (logs/NAME.log).")
  return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def write_csv(path: str, rows: list[dict[str, Any]]) -> None:
  fields = ["config", "label", "final_iqm", "final_low", "final_high", "best_iqm", "best_low",
            "best_high", "target", "target_reached", "target_of", "median_env_steps_to_target",
            "members", "complete", "failed", "incomplete"]
  with open(path, "w", newline="") as f:
    out = csv.DictWriter(f, fields)
    out.writeheader()
    for row in rows:
      t = row.get("target") or {}
      out.writerow({
          "config": row["config"], "label": row["label"],
          **{f"{part}_{k}": row.get(part, {}).get(k) for part in ("final", "best")
             for k in ("iqm", "low", "high")},
          "target": t.get("target"), "target_reached": t.get("reached"),
          "target_of": t.get("of"), "median_env_steps_to_target": t.get("median_env_steps"),
          "members": row["members"], "complete": row["complete"],
          "failed": " ".join(row["failed"]), "incomplete": " ".join(row["incomplete"])})


def write_json(path: str, rows: list[dict[str, Any]], members: list[MemberResult]) -> None:
  with open(path, "w") as f:
    json.dump({"configs": rows, "members": [dataclasses.asdict(m) for m in members]}, f,
              indent=2, default=str)


# --- the pictures ---------------------------------------------------------------------


def curve(members: list[MemberResult], reps: int) -> list[dict[str, float]]:
  """The IQM over `members` at each train step every one of them evaluated, against
  the median of their env steps there, with its 95 % interval."""
  if not members or not all(m.evals for m in members):
    return []
  common = sorted(set.intersection(*({e["train_step"] for e in m.evals} for m in members)))
  points = []
  for step in common:
    rows = [next(e for e in m.evals if e["train_step"] == step) for m in members]
    scores = np.array([r["average_return"] for r in rows])
    env = [r["env_steps"] for r in rows if r["env_steps"] is not None]
    value, low, high = iqm_interval(scores, reps)
    points.append({"train_step": step, "env_steps": float(np.median(env)) if env else step,
                   "iqm": value, "low": low, "high": high})
  return points


def plot_curves(path: str, definition: definition_lib.Definition,
                members: list[MemberResult], reps: int, title: str) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 5))
  for config in definition.configs:
    mine = [m for m in members if m.config == config["index"] and m.evals]
    points = curve(mine, reps)
    if not points:
      continue
    x = [p["env_steps"] for p in points]
    line, = ax.plot(x, [p["iqm"] for p in points], marker="o", markersize=3, linewidth=2,
                    label=f"c{config['index']}: {config['label']} ({len(mine)} runs)")
    ax.fill_between(x, [p["low"] for p in points], [p["high"] for p in points],
                    color=line.get_color(), alpha=0.2)
  ax.set_xlabel("environment steps")
  ax.set_ylabel("IQM of the greedy evaluation's return")
  ax.set_title(f"{title}\nIQM over runs, 95 % stratified bootstrap interval shaded", fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_profile(path: str, definition: definition_lib.Definition,
                 members: list[MemberResult], reps: int, title: str) -> bool:
  """The performance profile of the final evaluations; False if no configuration
  has a complete member yet."""
  scores = {}
  for config in definition.configs:
    final = [m.evals[-1]["average_return"] for m in members
             if m.config == config["index"] and m.complete and m.evals]
    if final:
      scores[f"c{config['index']}: {config['label']} ({len(final)} runs)"] = np.array(final)
  if not scores:
    return False
  every = np.concatenate(list(scores.values()))
  low, high = float(every.min()), float(every.max())
  taus = np.linspace(low - 0.05 * (high - low or 1), high + 0.05 * (high - low or 1), 101)
  profiles, intervals = performance_profile(scores, taus, reps)
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(8, 5))
  for label in scores:
    line, = ax.plot(taus, profiles[label], linewidth=2, label=label)
    ax.fill_between(taus, intervals[label][0], intervals[label][1], color=line.get_color(),
                    alpha=0.2)
  ax.set_xlabel("final evaluation's return (τ)")
  ax.set_ylabel("fraction of runs with return > τ")
  ax.set_ylim(-0.02, 1.02)
  ax.set_title(f"{title}\nperformance profile, 95 % stratified bootstrap interval shaded",
               fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="best")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True
