r"""Learner train steps per second fed from replay, against the fixed-batch limit.

  python benchmarks/learner_throughput.py [--repeats 10] [--steps 2000] [--quick]

Builds the default DQN job (CartPole, batch 64, network as shipped), fills its
TFUniform replay with a random policy, then times, each `--repeats` times:

- limit: a `tf.function` loop of `agent.train` on one fixed batch (no sampling);
- trainer: as the job's loop does it, `Replay.prepare(K)` (the call's batches
  sampled in one go) then the job's `Learner.run(iterations=K)`
  (`trainer.learning.Learner`) reading them in its graph, for K = the default
  config's train_steps_per_iteration and K = 100;
- anchor: TF-Agents' `Learner` on the same agent, fed the TF-Agents way,
  `iter(buffer.as_dataset(...))` with 3 parallel calls and prefetch 3, at K = 100.

Both Learners write the agent's summaries at the default config's interval.

The cases take turns, round by round; a case's fraction of the limit is the
median over rounds of its rate over the limit's rate in the same round.
Collection is not included (see time_to_solve.py for whole jobs). Results are
the "learner_throughput" section of --output.
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
from tf_agents.train import learner as tf_agents_learner  # noqa: E402

from benchmarks import common  # noqa: E402
from trainer import config, pipeline  # noqa: E402


def _rate(fn, steps: int) -> float:
  start = time.perf_counter()
  fn()
  return steps / (time.perf_counter() - start)


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="2 repeats of 500 steps")
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--steps", type=int, default=2000, help="train steps per measurement")
  args = parser.parse_args()
  if args.quick:
    args.repeats, args.steps = 2, 500
  logging.set_verbosity(logging.WARNING)
  root = os.path.join(tempfile.mkdtemp(prefix="trainer-learner-"), "run")
  never = 10**9
  bindings = [f"train.num_iterations = {never}", "train.eval_interval = 0",
              f"train.checkpoint_interval = {never}", f"train.policy_export_interval = {never}",
              f"train.log_interval = {never}",
              "train.initial_collect_steps = 5000"]
  run_config = config.load(root, [str(REPO / "configs" / "dqn_cartpole.gin")], bindings)
  spec = pipeline.configure_job(root, run_config)
  batch_size, per_call = spec.settings.batch_size, spec.settings.train_steps_per_iteration
  figures = {"limit": [], f"trainer_k{per_call}": [], "trainer_k100": [], "anchor_k100": []}
  with pipeline.open_job(spec) as job:
    job.initial_collect()
    learner, replay, agent = job._learner, job.replay, job.agent  # noqa: SLF001
    experience, _ = next(iter(replay.dataset(batch_size)))

    @tf.function
    def train_on_one_batch(n):
      for _ in tf.range(n):
        agent.train(experience)

    sampled = replay.iterator(batch_size)
    dataset = iter(replay.dataset(batch_size))
    # The anchor: TF-Agents' own Learner, on the same agent.
    anchor = tf_agents_learner.Learner(os.path.join(root, "anchor"), job.agent.train_step_counter,
                                       agent, experience_dataset_fn=None, checkpoint_interval=0,
                                       summary_interval=spec.settings.summary_interval)

    def trainer_run(k):
      def run():  # as the job's loop does: prepare the replay, then one Learner call
        for _ in range(args.steps // k):
          replay.prepare(k)
          learner.run(iterations=k, iterator=sampled)
      return run

    def anchor_run(k):
      def run():
        for _ in range(args.steps // k):
          anchor.run(iterations=k, iterator=dataset)
      return run

    cases = {
        "limit": (lambda: train_on_one_batch(tf.constant(args.steps)), args.steps),
        f"trainer_k{per_call}": (trainer_run(per_call), args.steps // per_call * per_call),
        "trainer_k100": (trainer_run(100), args.steps // 100 * 100),
        "anchor_k100": (anchor_run(100), args.steps // 100 * 100),
    }
    for fn, _ in cases.values():  # Traces every graph before anything is timed.
      fn()
    for _ in range(args.repeats):  # Interleaved, so that noise falls on all alike.
      for name, (fn, steps) in cases.items():
        figures[name].append(_rate(fn, steps))
        print(f"{name:16s} {figures[name][-1]:8.0f} steps/s", flush=True)
  section = {name: common.describe(values, unit="steps_per_s") for name, values in figures.items()}
  for name in figures:
    # Against the limit measured in the same round: this machine's speed drifts
    # by half between rounds, and a ratio of medians would mix rounds.
    fractions = [rate / limit for rate, limit in zip(figures[name], figures["limit"], strict=True)]
    section[name]["fraction_of_limit"] = round(statistics.median(fractions), 3)
    section[name]["fractions_of_limit"] = [round(f, 3) for f in fractions]
  section.update(batch_size=batch_size, steps_per_measurement=args.steps,
                 what="agent.train steps per second (DQN CartPole, batch 64), collection excluded")
  print(common.dumps({k: v.get("median_steps_per_s", v) if isinstance(v, dict) else v
                      for k, v in section.items()}))
  common.write_results(args, "learner_throughput", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
