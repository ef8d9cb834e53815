r"""Atari DQN throughput: trainer's Pong job against TF-Agents' own Atari example (mnih15).

  python benchmarks/atari_throughput.py [--initial_steps 10000] [--train_steps 1500] [--runs 2]
      [--quick]

Two figures per side, both on Pong with the same environment:

- env frames/s: emulator frames a second during the initial random collect
  (`--initial_steps` agent steps of 4 frames each): the environment, the
  random policy and the replay's writes;
- learner steps/s: train steps a second of the training loop (4 agent steps
  collected with the epsilon-greedy policy, then one train step of batch 32),
  over train steps 200 to `--train_steps` - 100 (graph building and the first
  steps left out), each side's loop as it runs it.

- anchor: `tf_agents/examples/dqn/mnih15/dqn_train_eval_atari.py` (installed
  with tf-agents 0.19.0), its `train_eval` run as it is, with two changes:
  its `suite_atari.load` (gym 0.23's Atari, whose ROMs are downloaded at run
  time, which this project does not do) is replaced by trainer's
  `create_atari_environment('Pong')` (ale-py 0.12.1, Machado et al.'s
  preprocessing: sticky actions 0.25, frame skip 4 max-pooled, 84x84 grey,
  4-frame stacks; the same build and settings as configs/dqn_atari.gin), and
  `eval_interval` = 0 (no evaluation in the measured span). Its replay is a
  Reverb table of whole stacks (`ReverbAddTrajectoryObserver`), its Learner
  fed by `as_dataset`. Timed by wrapping `Actor.run` (the initial collect's
  call) and `Learner.run` (each loop iteration's start).
- trainer: `python -m trainer.train --gin_file=configs/dqn_atari.gin` (the
  frame replay, RMSProp with Dopamine's settings), with the initial collect,
  the total and the log interval shortened and evaluations, checkpoints and
  exports out of the measured span; timed from its log lines.

The sides alternate run by run (`--runs` each). Results: the
"atari_throughput" section of benchmarks/results.json.
"""

import argparse
import datetime
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

FRAMES_PER_STEP = 4  # frame skip
WARMUP = 200  # train steps left out at the start
_ABSL_TIME = re.compile(r"^[IWE](\d{4}) (\d\d:\d\d:\d\d\.\d+)")
_LOOP_STEP = re.compile(r"\] step (\d+)/\d+ ")


def run_anchor(work: pathlib.Path, initial_steps: int, train_steps: int) -> dict:
  """The mnih15 example's train_eval, timed from inside (module doc)."""
  from tf_agents.environments import suite_atari
  from tf_agents.examples.dqn.mnih15 import dqn_train_eval_atari as example
  from tf_agents.train import actor, learner

  from trainer.acting.atari import create_atari_environment

  def load(env_name, max_episode_steps=None, gym_env_wrappers=()):
    del env_name, max_episode_steps, gym_env_wrappers  # trainer's Pong, as configured there
    return create_atari_environment("Pong")

  suite_atari.load = load
  collect_runs, learner_calls = [], []
  actor_run, learner_run = actor.Actor.run, learner.Learner.run

  def timed_actor_run(self):
    start = time.monotonic()
    out = actor_run(self)
    if not collect_runs:
      collect_runs.append(time.monotonic() - start)
    return out

  def timed_learner_run(self, *args, **kwargs):
    learner_calls.append(time.monotonic())
    return learner_run(self, *args, **kwargs)

  actor.Actor.run, learner.Learner.run = timed_actor_run, timed_learner_run
  example.train_eval(str(work / "anchor"), initial_collect_steps=initial_steps,
                     num_iterations=train_steps, eval_interval=0)
  last = train_steps - 100
  return {"initial_collect_s": round(collect_runs[0], 2),
          "frames_per_s": round(initial_steps * FRAMES_PER_STEP / collect_runs[0], 1),
          "train_steps_per_s": round((last - WARMUP) / (learner_calls[last] -
                                                         learner_calls[WARMUP]), 2)}


def _absl_seconds(line: str) -> float | None:
  found = _ABSL_TIME.match(line)
  if not found:
    return None
  clock = datetime.datetime.strptime(found.group(2), "%H:%M:%S.%f")
  return int(found.group(1)[2:]) * 86400 + clock.hour * 3600 + clock.minute * 60 + \
      clock.second + clock.microsecond / 1e6


def run_trainer(work: pathlib.Path, initial_steps: int, train_steps: int) -> dict:
  """trainer.train on configs/dqn_atari.gin, timed from its log (module doc)."""
  root = work / "trainer"
  bindings = [f"train.initial_collect_steps={initial_steps}",
              f"train.num_iterations={train_steps}", "train.eval_interval=0",
              f"train.checkpoint_interval={train_steps}",
              f"train.policy_export_interval={train_steps}", "train.log_interval=100",
              "train.summary_interval=1000"]
  cmd = [sys.executable, "-m", "trainer.train", f"--root_dir={root}",
         f"--gin_file={REPO / 'configs' / 'dqn_atari.gin'}",
         *(f"--gin_bindings={b}" for b in bindings)]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
  if out.returncode:
    raise SystemExit(f"trainer.train exited {out.returncode}: {out.stderr[-2000:]}")
  collect_start = train_start = None
  at_step = {}
  for line in out.stderr.splitlines():
    seconds = _absl_seconds(line)
    if seconds is None:
      continue
    if "Initial collect: random policy" in line:
      collect_start = seconds
    elif "Training from step 0" in line:
      train_start = seconds
    elif (found := _LOOP_STEP.search(line)):
      at_step[int(found.group(1))] = seconds
  last = train_steps - 100
  collect_s = train_start - collect_start
  return {"initial_collect_s": round(collect_s, 2),
          "frames_per_s": round(initial_steps * FRAMES_PER_STEP / collect_s, 1),
          "train_steps_per_s": round((last - WARMUP) / (at_step[last] - at_step[WARMUP]), 2)}


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="2,000 initial steps, 500 train steps, "
                                  "1 run each")
  parser.add_argument("--initial_steps", type=int, default=10_000)
  parser.add_argument("--train_steps", type=int, default=1_500)
  parser.add_argument("--runs", type=int, default=2)
  parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--work", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.part == "anchor":
    result = run_anchor(pathlib.Path(args.work), args.initial_steps, args.train_steps)
    print("PART " + json.dumps(result), flush=True)
    return 0
  if args.quick:
    args.initial_steps, args.train_steps, args.runs = 2_000, 500, 1
  sides = {"anchor": [], "trainer": []}
  for run in range(args.runs):
    with tempfile.TemporaryDirectory(prefix="trainer-bench-atari-") as tmp:
      work = pathlib.Path(tmp)
      for side in ("anchor", "trainer") if run % 2 == 0 else ("trainer", "anchor"):
        print(f"run {run}: {side}", flush=True)
        if side == "trainer":
          sides[side].append(run_trainer(work, args.initial_steps, args.train_steps))
        else:
          out = subprocess.run(
              [sys.executable, __file__, "--part=anchor", f"--work={work}",
               f"--initial_steps={args.initial_steps}", f"--train_steps={args.train_steps}"],
              cwd=REPO, capture_output=True, text=True,
              env=dict(os.environ, PYTHONPATH=str(REPO)))
          if out.returncode:
            raise SystemExit(f"the anchor exited {out.returncode}: {out.stderr[-3000:]}")
          sides[side].append(json.loads(next(
              x for x in out.stdout.splitlines() if x.startswith("PART "))[5:]))
        print("  " + json.dumps(sides[side][-1]), flush=True)

  def summary(runs: list[dict]) -> dict:
    return {"runs": runs,
            "frames_per_s": statistics.median(r["frames_per_s"] for r in runs),
            "train_steps_per_s": statistics.median(r["train_steps_per_s"] for r in runs)}

  anchor, trainer = summary(sides["anchor"]), summary(sides["trainer"])
  section = {"initial_steps": args.initial_steps, "train_steps": args.train_steps,
             "anchor": anchor, "trainer": trainer,
             "frames_ratio": round(trainer["frames_per_s"] / anchor["frames_per_s"], 3),
             "train_ratio": round(trainer["train_steps_per_s"] / anchor["train_steps_per_s"], 3)}
  print(common.dumps(section), flush=True)
  common.write_results(args, "atari_throughput", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
