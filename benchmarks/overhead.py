r"""The framework's overhead against a bare `Learner.run` loop on the same agent and data.

  python benchmarks/overhead.py [--repeats 5] [--steps 10000]

Per repeat, in one process, on the default job (`configs/dqn_cartpole.gin`;
evaluations off: an evaluation is work the user asked for, not overhead),
after the initial collect and a warm-up of 1,000 train steps, two loops take
turns in blocks of 200 train steps on the same agent and replay:

- trainer: `OffPolicyLoop.train`, the job's loop: collection, the Learner with the
  job's triggers (checkpoints and exports at the configured rate per train
  step of the job's own, with the export's background thread; progress lines;
  summaries) and its bookkeeping;
- bare: the same collection (a `Collector` over as many environments, the
  same chunk), the same replay feed (`Replay.prepare`) and the same Learner
  class without triggers (the same summary interval and steps per `run`
  call).

Overhead = (sum of the trainer blocks) / (sum of the bare blocks) - 1; the
median over block pairs of trainer / bare - 1 is reported beside it (it
leaves out the rare blocks with a checkpoint or an export, so it is the
per-step cost of the loop's bookkeeping alone).
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

from absl import logging  # noqa: E402

from benchmarks import common  # noqa: E402
from trainer.acting.collect_stats import CollectStats  # noqa: E402
from trainer.acting.collector import Collector  # noqa: E402
from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.learning import learner  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402
from trainer.loops.off_policy import OffPolicyLoop  # noqa: E402

WARMUP = 1000
_TRIGGERED = ("checkpoint_interval", "policy_export_interval", "log_interval")
# Train steps per timed block. The two loops alternate block by block, short
# blocks, so that this machine's slow spells (seconds long) fall on both alike.
BLOCK = 200


def measure(steps: int, workdir: str, repeat: int) -> dict:
  root = os.path.join(workdir, f"run-{repeat}")
  gin_files = [str(REPO / "configs" / "dqn_cartpole.gin")]
  base = [f"train.num_iterations = {10**9}", "train.eval_interval = 0", f"train.seed = {repeat}"]
  defaults = configure_job(root, gin_config.load(root, gin_files, base)).settings
  # The two loops advance one train step counter, so the job's triggers would
  # see twice as many steps as the job trains: at twice the configured
  # intervals they fire as often per step of the job's own as in a real run.
  doubled = [f"train.{name} = {2 * getattr(defaults, name)}" for name in _TRIGGERED]
  spec = configure_job(root, gin_config.load(root, gin_files, base + doubled))
  settings = spec.settings
  with open_job(spec) as job:
    loop = OffPolicyLoop(job, job.stop)
    # The bare loop: the same collection into the same replay, then a Learner
    # without triggers on the same agent; no checkpoints, exports or bookkeeping.
    environments = [spec.environment_fn() for _ in range(settings.collect_envs)]
    step = job.agent.train_step_counter
    collector = Collector(environments, step, observers=[job.replay.observer],
                          metrics=CollectStats(len(environments)),
                          summary_dir=os.path.join(root, "bare"),
                          summary_interval=settings.summary_interval)
    collector.use(job.agent.collect_policy)
    bare = learner.Learner(os.path.join(root, "bare"), step, job.agent,
                            experience_dataset_fn=None, checkpoint_interval=0,
                            summary_interval=settings.summary_interval)
    iterator = job.replay.iterator(settings.batch_size)
    k = settings.train_steps_per_iteration

    def bare_block():
      for _ in range(BLOCK // k):
        collector.run(settings.collect_steps_per_iteration)
        job.replay.prepare(k)
        bare.run(iterations=k, iterator=iterator)

    def trainer_block():
      loop.train(until_step=int(step.numpy()) + BLOCK)

    loop.initial_collect()
    loop.train(until_step=WARMUP)  # traces the job's graphs
    for _ in range(WARMUP // BLOCK):
      bare_block()  # and the bare loop's
    blocks = {"trainer": [], "bare": []}
    order = [("trainer", trainer_block), ("bare", bare_block)]
    for _ in range(steps // BLOCK):
      order.reverse()  # neither loop always goes first
      for name, block in order:
        begin = time.monotonic()
        block()
        blocks[name].append(time.monotonic() - begin)
  trainer_s, bare_s = sum(blocks["trainer"]), sum(blocks["bare"])
  pairs = [t / b - 1 for t, b in zip(blocks["trainer"], blocks["bare"], strict=True)]
  return {"train_steps": steps // BLOCK * BLOCK, "trainer_s": trainer_s, "bare_s": bare_s,
          "overhead": trainer_s / bare_s - 1, "median_pair_overhead": statistics.median(pairs),
          "blocks": blocks}


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="1 repeat of 2,000 steps each")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--steps", type=int, default=10_000,
                      help="measured train steps per loop and repeat")
  args = parser.parse_args()
  if args.quick:
    args.repeats, args.steps = 1, 2000
  logging.set_verbosity(logging.WARNING)
  workdir = tempfile.mkdtemp(prefix="trainer-overhead-")
  runs = []
  for repeat in range(args.repeats):
    runs.append(measure(args.steps, workdir, repeat))
    print(f"repeat {repeat}: overhead {runs[-1]['overhead']:+.1%} (trainer "
          f"{runs[-1]['trainer_s']:.2f} s, bare {runs[-1]['bare_s']:.2f} s; median pair "
          f"{runs[-1]['median_pair_overhead']:+.1%})", flush=True)
  overheads = [r["overhead"] for r in runs]
  section = {
      "steps": args.steps, "repeats": args.repeats,
      "trainer_s": common.describe([r["trainer_s"] for r in runs]),
      "bare_s": common.describe([r["bare_s"] for r in runs]),
      "overhead": common.describe(overheads, unit="fraction"),
      "median_overhead_pct": round(100 * statistics.median(overheads), 2),
      "median_pair_overhead_pct": round(
          100 * statistics.median(r["median_pair_overhead"] for r in runs), 2),
  }
  print(common.dumps(section))
  common.write_results(args, "overhead", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
