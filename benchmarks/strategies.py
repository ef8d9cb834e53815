r"""`train.strategy`: the learner under `MirroredStrategy` over 2 logical CPU devices,
against the default strategy, in one run.

  python benchmarks/strategies.py [--rounds 20] [--steps 400] [--runs 3] [--quick]

- throughput: the default DQN job built twice in this process (the CPU split
  into 2 logical devices first), once per strategy, its replay filled by a
  random policy; the cases take turns of `--steps` train steps as the job's
  loop runs them (`Replay.prepare(K)`, then `Learner.run(iterations=K)`, K =
  the config's train_steps_per_iteration). Train steps/s, and samples/s
  (train steps x train.batch_size, the global batch: each replica trains on
  its share).
- time to solve: `python -m trainer.train` with configs/dqn_cartpole.gin, seeds
  0..runs-1, with and without `train.strategy = @mirrored_strategy`
  (`mirrored_strategy.logical_cpus = 2`), interleaved: wall time to the first
  greedy eval >= 195 (as benchmarks/time_to_solve.py measures it).

On 2 cores the two logical devices share the same cores: this measures the
strategy's overhead (per-replica graphs, all-reduce of the gradients), not a
speed-up. Results are the "strategies" section of --output.
"""

import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks import common, time_to_solve  # noqa: E402
from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402
from trainer.loops.off_policy import OffPolicyLoop  # noqa: E402

MIRRORED = ["train.strategy = @mirrored_strategy", "mirrored_strategy.logical_cpus = 2"]


def _job(root: str, extra: list[str]):
  never = 10**9
  bindings = [f"train.num_iterations = {never}", "train.eval_interval = 0",
              f"train.checkpoint_interval = {never}", f"train.policy_export_interval = {never}",
              f"train.log_interval = {never}", "train.initial_collect_steps = 5000", *extra]
  spec = configure_job(root, gin_config.load(root, [str(REPO / "configs" / "dqn_cartpole.gin")],
                                             bindings))
  return spec, open_job(spec)


def throughput(rounds: int, steps: int) -> dict:
  workdir = tempfile.mkdtemp(prefix="trainer-strategies-")
  cases = {}
  spec, default_job = _job(os.path.join(workdir, "default"), [])
  _, mirrored_job = _job(os.path.join(workdir, "mirrored"), MIRRORED)
  k, batch = spec.settings.train_steps_per_iteration, spec.settings.batch_size
  with default_job as default, mirrored_job as mirrored:
    for name, job in (("default", default), ("mirrored_2_logical_cpus", mirrored)):
      OffPolicyLoop(job, job.stop).initial_collect()
      iterator = job.replay.iterator(job.replica_batch_size, job.strategy)

      def run(job=job, iterator=iterator):
        for _ in range(steps // k):
          job.replay.prepare(k)
          job.learner.run(iterations=k, iterator=iterator)

      run()  # traces its graphs before anything is timed
      cases[name] = (run, job.strategy.num_replicas_in_sync)
    seconds = {name: [] for name in cases}
    order = list(cases)
    for _ in range(rounds):
      order = order[1:] + order[:1]
      for name in order:
        start = time.perf_counter()
        cases[name][0]()
        seconds[name].append(time.perf_counter() - start)
  section = {}
  for name, (_, replicas) in cases.items():
    rate = steps // k * k * len(seconds[name]) / sum(seconds[name])
    section[name] = {"replicas": replicas, "train_steps_per_s": round(rate, 1),
                     "samples_per_s": round(rate * batch, 1)}
    print(f"{name:24s} {rate:8.0f} train steps/s, {rate * batch:9.0f} samples/s", flush=True)
  section["mirrored_over_default_steps"] = round(
      section["mirrored_2_logical_cpus"]["train_steps_per_s"]
      / section["default"]["train_steps_per_s"], 3)
  section.update(batch_size=batch, train_steps_per_call=k, steps_per_turn=steps, rounds=rounds)
  return section


def time_to_solve_both(runs: int, timeout: float) -> dict:
  workdir = tempfile.mkdtemp(prefix="trainer-strategies-solve-")
  found = {"default": [], "mirrored_2_logical_cpus": []}
  for seed in range(runs):
    for name, bindings in (("default", []), ("mirrored_2_logical_cpus", MIRRORED)):
      os.makedirs(os.path.join(workdir, name), exist_ok=True)
      result = time_to_solve.run_trainer(seed, timeout, os.path.join(workdir, name), bindings)
      found[name].append(result)
      print(f"{name} seed {seed}: solved in {result['seconds']} s at step {result['train_step']}",
            flush=True)
  section = {}
  for name, results in found.items():
    solved = [r["seconds"] for r in results if r["seconds"] is not None]
    section[name] = {"solved": len(solved), "n": len(results),
                     "median_s": round(statistics.median(solved), 1) if solved else None,
                     "seconds": [r["seconds"] for r in results],
                     "train_steps": [r["train_step"] for r in results]}
  return section


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="4 rounds, 1 run each")
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--steps", type=int, default=400, help="train steps per turn")
  parser.add_argument("--runs", type=int, default=3, help="time-to-solve runs of each")
  parser.add_argument("--timeout", type=float, default=200)
  args = parser.parse_args()
  if args.quick:
    args.rounds, args.runs = 4, 1
  logging.set_verbosity(logging.WARNING)
  tf.config.set_logical_device_configuration(  # before TensorFlow starts
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
  section = {"throughput": throughput(args.rounds, args.steps),
             "time_to_solve": time_to_solve_both(args.runs, args.timeout),
             "what": "DQN CartPole-v0 job, default strategy vs MirroredStrategy over 2 logical "
                     "CPU devices sharing 2 cores"}
  common.write_results(args, "strategies", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
