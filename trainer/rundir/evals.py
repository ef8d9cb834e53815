"""A run's greedy evaluations as `trainer.acting.evaluator` writes them (`eval/returns.csv`),
read back without TensorFlow: for `trainer.plot`, `trainer.report` and the scripts."""

import csv
import os
from typing import Any

from trainer.rundir import layout


def read(root_dir: str) -> list[dict[str, Any]]:
  """The run's evaluations in train-step order, each {"train_step", "average_return",
  "env_steps"} (`env_steps` None for rows written before the file recorded it); a step
  evaluated again after a resume keeps its last row; a row cut short is skipped. [] if the
  run has none yet."""
  by_step = {}
  try:
    with open(os.path.join(root_dir, layout.EVAL_RETURNS_FILE), newline="") as f:
      for row in csv.DictReader(f):
        env_steps = row.get("env_steps")
        try:
          by_step[int(row["train_step"])] = {
              "train_step": int(row["train_step"]),
              "average_return": float(row["average_return"]),
              "env_steps": int(env_steps) if env_steps else None}
        except (TypeError, ValueError):
          continue  # a row cut short (a kill mid-append, or a copy taken mid-append)
  except FileNotFoundError:
    return []
  return [by_step[step] for step in sorted(by_step)]
