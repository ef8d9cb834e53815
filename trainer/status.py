r"""Summarises a run directory without touching it (and without loading TensorFlow).

  python -m trainer.status --root_dir=DIR [--json]
"""

import json
import os
import sys
from typing import Any

from absl import app, flags

from trainer import layout, policy_index
from trainer.bundle import BundleStore

flags.DEFINE_string("root_dir", None, "Run directory to summarise.")
flags.DEFINE_bool("json", False, "Print JSON instead of text.")
FLAGS = flags.FLAGS


def run_status(root_dir: str) -> dict[str, Any]:
  """The run's state as of its latest committed bundle."""
  bundles = BundleStore(root_dir).committed()
  summary = bundles[-1].manifest.get("summary", {}) if bundles else {}
  train_step = summary.get("train_step", 0)
  num_iterations = summary.get("num_iterations")
  return {
      "root_dir": root_dir,
      "train_step": train_step,
      "num_iterations": num_iterations,
      "env_steps": summary.get("env_steps", 0),
      "episodes": summary.get("episodes", 0),
      "replay_size": summary.get("replay_size", 0),
      "checkpoints": [b.step for b in bundles],
      "exports": [{"train_step": e["train_step"], "path": e["path"]}
                  for e in policy_index.list_exports(os.path.join(root_dir, layout.POLICY_DIR))],
      "last_eval_return": summary.get("last_eval_return"),
      "complete": bool(num_iterations) and train_step >= num_iterations,
  }


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.root_dir:
    sys.stderr.write("trainer.status: error: --root_dir is required\n")
    return 2
  status = run_status(FLAGS.root_dir)
  if FLAGS.json:
    print(json.dumps(status, indent=2))
    return 0
  last_eval = status["last_eval_return"]
  print(f"run directory   {status['root_dir']}")
  print(f"train step      {status['train_step']} / {status['num_iterations'] or '?'}"
        f"{'  (complete)' if status['complete'] else ''}")
  print(f"env steps       {status['env_steps']}")
  print(f"episodes        {status['episodes']}")
  print(f"replay size     {status['replay_size']}")
  print(f"last eval       {'n/a' if last_eval is None else f'{last_eval:.2f}'}")
  print(f"checkpoints     {status['checkpoints']}")
  print(f"exports         {[e['train_step'] for e in status['exports']]}")
  return 0


if __name__ == "__main__":
  app.run(main)
