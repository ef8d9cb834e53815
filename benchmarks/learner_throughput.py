r"""Learner train steps per second fed from replay, against the fixed-batch limit.

  python benchmarks/learner_throughput.py [--rounds 40] [--steps 500] [--quick]

Builds the default DQN job (CartPole, batch 64, network as shipped), fills its
TFUniform replay with a random policy, then times, in each of `--rounds` rounds:

- limit: a `tf.function` loop of `agent.train` on one fixed batch (no sampling);
- trainer: as the job's loop does it, `Replay.prepare(K)` (the call's batches
  sampled in one go) then the job's `Learner.run(iterations=K)`
  (`trainer.learning.learner.Learner`) reading them in its graph, for K = the default
  config's train_steps_per_iteration and K = 100;
- anchor: TF-Agents' `Learner` on the same agent, fed the TF-Agents way,
  `iter(buffer.as_dataset(...))` with 3 parallel calls and prefetch 3, at K = 100.

Both Learners write the agent's summaries at the default config's interval.

The cases take turns, `--steps` train steps each, round after round (this
machine's speed drifts by half over seconds, so short turns let every case
see the same slow spells); a case's rate is its steps over its total time,
and its fraction of the limit is that rate over the limit's. The range is
over five groups of consecutive rounds.

Collection is not included (see time_to_solve.py for whole jobs). Results are
the "learner_throughput" section of --output.
"""

import os
import pathlib
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
from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402
from trainer.loops.off_policy import OffPolicyLoop  # noqa: E402


def _rate(turns: list[float], steps_per_turn: int) -> float:
  """Train steps per second over timed turns."""
  return steps_per_turn * len(turns) / sum(turns)


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="10 rounds")
  parser.add_argument("--rounds", type=int, default=40)
  parser.add_argument("--steps", type=int, default=500, help="train steps per turn")
  args = parser.parse_args()
  if args.quick:
    args.rounds = 10
  logging.set_verbosity(logging.WARNING)
  root = os.path.join(tempfile.mkdtemp(prefix="trainer-learner-"), "run")
  never = 10**9
  bindings = [f"train.num_iterations = {never}", "train.eval_interval = 0",
              f"train.checkpoint_interval = {never}", f"train.policy_export_interval = {never}",
              f"train.log_interval = {never}",
              "train.initial_collect_steps = 5000"]
  run_config = gin_config.load(root, [str(REPO / "configs" / "dqn_cartpole.gin")], bindings)
  spec = configure_job(root, run_config)
  batch_size, per_call = spec.settings.batch_size, spec.settings.train_steps_per_iteration
  with open_job(spec) as job:
    OffPolicyLoop(job, job.stop).initial_collect()
    learner, replay, agent = job.learner, job.replay, job.agent
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
    seconds = {name: [] for name in cases}
    order = list(cases)
    for _ in range(args.rounds):
      order = order[1:] + order[:1]  # no case always follows the same one
      for name in order:
        fn, _ = cases[name]
        start = time.perf_counter()
        fn()
        seconds[name].append(time.perf_counter() - start)
  groups = [slice(i * args.rounds // 5, (i + 1) * args.rounds // 5) for i in range(5)]
  section = {}
  for name, (_, steps) in cases.items():
    def fraction(part, name=name, steps=steps):
      return _rate(seconds[name][part], steps) / _rate(seconds["limit"][part], args.steps)
    rates = [_rate(seconds[name][g], steps) for g in groups]
    section[name] = {
        "steps_per_s": round(_rate(seconds[name], steps), 1),
        "min_group_steps_per_s": round(min(rates), 1),
        "max_group_steps_per_s": round(max(rates), 1),
        "fraction_of_limit": round(fraction(slice(None)), 3),
        "fractions_of_limit_by_group": [round(fraction(g), 3) for g in groups]}
    print(f"{name:16s} {section[name]['steps_per_s']:8.0f} steps/s, "
          f"{section[name]['fraction_of_limit']:.0%} of the limit "
          f"(by group: {section[name]['fractions_of_limit_by_group']})", flush=True)
  section.update(batch_size=batch_size, steps_per_turn=args.steps, rounds=args.rounds,
                 what="agent.train steps per second (DQN CartPole, batch 64), collection excluded")
  common.write_results(args, "learner_throughput", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
