r"""How long a policy export stalls the training loop.

  python benchmarks/export_stall.py [--exports 20] [--output benchmarks/export_stall.json]

Runs the default DQN job (network as shipped, shortened) with an export every
`--interval` train steps and records, per export, the time the training loop
waited (`Job.export_stalls`: a snapshot of the policy's variables and queueing;
the SavedModels are written by a background thread, whose first export also
builds the templates). The anchor, measured in the
same process on the same agent: synchronous `PolicySaver.save` of the greedy and
the collect policy, which is what an export costs when written in the loop.
"""

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import logging  # noqa: E402
from tf_agents.policies import policy_saver  # noqa: E402

from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402


def _summary(values_s: list[float]) -> dict:
  ms = sorted(v * 1000 for v in values_s)
  return {"n": len(ms), "median_ms": round(statistics.median(ms), 2),
          "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2), "max_ms": round(ms[-1], 2),
          "min_ms": round(ms[0], 2)}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--exports", type=int, default=20)
  parser.add_argument("--interval", type=int, default=500,
                      help="train steps between exports (~1 s of training)")
  parser.add_argument("--output", default=str(REPO / "benchmarks" / "export_stall.json"))
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  root = tempfile.mkdtemp(prefix="trainer-export-stall-")
  steps = args.exports * args.interval
  bindings = [f"train.num_iterations = {steps}", f"train.policy_export_interval = {args.interval}",
              f"train.checkpoint_interval = {steps}", "train.eval_interval = 0",
              "train.initial_collect_steps = 500", f"train.log_interval = {steps}",
              f"train.exports_keep_last = {args.exports + 1}"]
  run_config = gin_config.load(root, [str(REPO / "configs" / "dqn_cartpole.gin")], bindings)
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
    stalls = job.export_stalls
    anchor = []
    savers = [policy_saver.PolicySaver(p, batch_size=None)
              for p in (job.agent.policy, job.agent.collect_policy)]
    for i in range(5):
      start = time.monotonic()
      for j, saver in enumerate(savers):
        saver.save(os.path.join(root, "anchor", f"{i}-{j}"))
      anchor.append(time.monotonic() - start)
  result = {
      "figure": "training-loop stall per policy export (greedy + collect + serving forms)",
      "trainer": _summary(stalls),
      "anchor_sync_policysaver_save": _summary(anchor),
      "command": "python benchmarks/export_stall.py " + " ".join(sys.argv[1:]),
      "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                  "python": platform.python_version()},
  }
  result["ratio_median"] = round(result["trainer"]["median_ms"] /
                                 result["anchor_sync_policysaver_save"]["median_ms"], 4)
  print(json.dumps(result, indent=2))
  pathlib.Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
