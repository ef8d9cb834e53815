r"""The learner fed from a Reverb server over loopback, against the in-process feed
and against TF-Agents' Reverb-fed `Learner`.

  python benchmarks/learner_feed.py [--rounds 20] [--steps 500] [--items 20000] [--quick]

Builds the default DQN job (CartPole, batch 64), fills its in-graph replay with
`--items` random-policy steps, and starts a Reverb server in a process of its
own (as `trainer.replay_server` is) with three replays that a random policy
fills with `--items` steps each: `sharded`, the replay server role's layout
(one byte column per step, `trainer.replay.packing`, in `replay_shards` tables
written in turn), `packed` (the same in one table) and `plain`, TF-Agents'
layout (one column per field, one table; `trainer.replay.writers` writes the
items of TF-Agents' `ReverbAddTrajectoryObserver`). All sample uniformly without a rate limiter
(this measures the feed). Then, in
rounds, each case trains `--steps` steps (cases take turns; the rate is steps
over total time, the range over five groups of rounds):

- roles_learner: the learner role's feed: `ReverbReplay` on the sharded replay
  (a batch from whichever shard has one ready), the job's Learner, one call per
  `train_steps_per_iteration` steps (20);
- roles_learner_one_table: the same on the packed replay in one table;
- roles_learner_plain: the same learner on the plain table through TF-Agents'
  dataset (what the packed layout and its one-sampler dataset are worth);
- in_process: the single-process job's feed (the in-graph buffer) at 20;
- anchor: TF-Agents' `Learner` on the plain table through
  `ReverbReplayBuffer.as_dataset` (its distributed example's feed: 3 parallel
  calls, prefetch 3), 100 steps per call (its example's pace, and kinder to it).

Per-sample CPU (client and server) is measured by iterating each Reverb
dataset alone. Results are the "learner_feed" section of --output.
"""

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import psutil  # noqa: E402
import reverb  # noqa: E402
from absl import logging  # noqa: E402
from tf_agents.policies import random_py_policy  # noqa: E402
from tf_agents.train import learner as tf_agents_learner  # noqa: E402

from benchmarks import common  # noqa: E402
from trainer.acting.collect_stats import CollectStats  # noqa: E402
from trainer.acting.collector import Collector  # noqa: E402
from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402
from trainer.loops.off_policy import OffPolicyLoop  # noqa: E402
from trainer.replay import layout  # noqa: E402
from trainer.replay import reverb as reverb_replay  # noqa: E402
from trainer.replay.packing import StepPacking  # noqa: E402
from trainer.replay.writers import per_env_writers  # noqa: E402
from trainer.roles import tables  # noqa: E402

_SHARDS = tables.replay_shards(1_000_000)  # the replay server role's default

_SERVER = """
import sys, reverb, tensorflow as tf
def table(name, signature, max_size=1_000_000):
  return reverb.Table(name, max_size=max_size, sampler=reverb.selectors.Uniform(),
                      remover=reverb.selectors.Fifo(), rate_limiter=reverb.rate_limiters.MinSize(1),
                      signature=signature)
port, width, shards = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
packed = tf.TensorSpec([2, width], tf.uint8)
sharded = [table(f"sharded.{i}", packed, 1_000_000 // shards) for i in range(shards)]
server = reverb.Server([table("packed", packed), table("plain", None), *sharded], port=port)
server.wait()
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _rate(turns: list[float], steps: int) -> float:
  return steps * len(turns) / sum(turns)


def _fill(job, address: str, items: int) -> None:
  """`items` random-policy steps into each server table, from the job's environments."""
  client = reverb.Client(address)
  spec = job.agent.collect_data_spec
  writers = [per_env_writers(client, "packed", 2, len(job.collect_envs), StepPacking(spec)),
             per_env_writers(client, layout.shard_names("sharded", _SHARDS), 2,
                             len(job.collect_envs), StepPacking(spec)),
             per_env_writers(client, "plain", 2, len(job.collect_envs))]
  env = job.collect_envs[0]
  collector = Collector(job.collect_envs, job.train_step_variable, observers=writers,
                        metrics=CollectStats(len(job.collect_envs)), summary_dir=tempfile.mkdtemp(),
                        summary_interval=0)
  collector.use(random_py_policy.RandomPyPolicy(
      env.time_step_spec(), env.action_spec(), outer_dims=(len(job.collect_envs),)))
  collector.run(steps=items)
  for writer in writers:
    writer.flush()
    writer.close()


def _cpu_per_sample(iterator, server: psutil.Process, batches: int, batch_size: int) -> dict:
  """Microseconds of CPU per sampled item, in this process and in the server's."""
  for _ in range(20):
    next(iterator)
  me = psutil.Process()
  mine, theirs = sum(me.cpu_times()[:2]), sum(server.cpu_times()[:2])
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  wall = time.perf_counter() - start
  n = batches * batch_size
  return {"samples_per_s": round(n / wall),
          "client_cpu_us": round((sum(me.cpu_times()[:2]) - mine) / n * 1e6, 1),
          "server_cpu_us": round((sum(server.cpu_times()[:2]) - theirs) / n * 1e6, 1)}


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="4 rounds, 5,000 items")
  parser.add_argument("--rounds", type=int, default=20)
  parser.add_argument("--steps", type=int, default=500, help="train steps per turn")
  parser.add_argument("--items", type=int, default=20_000, help="steps in each replay")
  args = parser.parse_args()
  if args.quick:
    args.rounds, args.items = 4, 5_000
  logging.set_verbosity(logging.WARNING)
  root = os.path.join(tempfile.mkdtemp(prefix="trainer-feed-"), "run")
  never = 10**9
  bindings = [f"train.num_iterations = {never}", "train.eval_interval = 0",
              f"train.checkpoint_interval = {never}", f"train.policy_export_interval = {never}",
              f"train.log_interval = {never}", f"train.initial_collect_steps = {args.items}"]
  spec = configure_job(root, gin_config.load(root, [str(REPO / "configs" / "dqn_cartpole.gin")],
                                             bindings))
  batch, per_call = spec.settings.batch_size, spec.settings.train_steps_per_iteration
  port = _free_port()
  with open_job(spec) as job:
    width = StepPacking(job.agent.collect_data_spec).width
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), str(width),
                               str(_SHARDS)])
    try:
      address = f"localhost:{port}"
      _wait_for(address)
      OffPolicyLoop(job, job.stop).initial_collect()
      _fill(job, address, args.items)
      section = _measure(args, job, address, psutil.Process(server.pid), batch, per_call)
    finally:
      server.kill()
      server.wait()
  section.update(batch_size=batch, steps_per_turn=args.steps, rounds=args.rounds,
                 items=args.items, train_steps_per_call=per_call,
                 what="agent.train steps per second (DQN CartPole, batch 64) by feed")
  common.write_results(args, "learner_feed", section)
  return 0


def _wait_for(address: str, seconds: float = 60) -> None:
  deadline = time.monotonic() + seconds
  while True:
    try:
      reverb.Client(address).server_info(5)
      return
    except Exception:  # noqa: BLE001  (not up yet)
      if time.monotonic() > deadline:
        raise
      time.sleep(0.5)


def _remote(job, address: str, table: str) -> reverb_replay.ReverbReplay:
  return reverb_replay.ReverbReplay(
      layout.ReplayLayout(table, 1_000_000, job.agent.collect_data_spec, 2),
      scratch_dir=tempfile.mkdtemp(), address=address, restore_dir=None)


def _measure(args, job, address: str, server: psutil.Process, batch: int, per_call: int) -> dict:
  sharded, packed = _remote(job, address, "sharded"), _remote(job, address, "packed")
  plain = _remote(job, address, "plain")
  assert sharded.layout.packed and not plain.layout.packed
  feeds = {"roles_learner": sharded.iterator(batch), "roles_learner_one_table":
           packed.iterator(batch), "roles_learner_plain": plain.iterator(batch),
           "in_process": job.replay.iterator(batch)}
  anchor_iterator = iter(plain.dataset(batch))  # ReverbReplayBuffer.as_dataset, as TF-Agents'
  anchor = tf_agents_learner.Learner(
      os.path.join(job.root_dir, "anchor"), job.agent.train_step_counter, job.agent,
      experience_dataset_fn=None, checkpoint_interval=0,
      summary_interval=job.settings.summary_interval)

  def ours(name):
    def run():
      for _ in range(args.steps // per_call):
        if name == "in_process":
          job.replay.prepare(per_call)
        job.learner.run(iterations=per_call, iterator=feeds[name])
    return run, args.steps // per_call * per_call

  def anchor_run():
    for _ in range(args.steps // 100):
      anchor.run(iterations=100, iterator=anchor_iterator)

  cases = {name: ours(name) for name in feeds}
  cases["anchor"] = (anchor_run, args.steps // 100 * 100)
  for run, _ in cases.values():  # every graph traced before anything is timed
    run()
  seconds = {name: [] for name in cases}
  order = list(cases)
  for _ in range(args.rounds):
    order = order[1:] + order[:1]
    for name in order:
      start = time.perf_counter()
      cases[name][0]()
      seconds[name].append(time.perf_counter() - start)
  groups = [slice(i * args.rounds // 5, max(i * args.rounds // 5 + 1, (i + 1) * args.rounds // 5))
            for i in range(5)]
  section = {}
  for name, (_, steps) in cases.items():
    rates = [_rate(seconds[name][g], steps) for g in groups]
    section[name] = {"steps_per_s": round(_rate(seconds[name], steps), 1),
                     "min_group_steps_per_s": round(min(rates), 1),
                     "max_group_steps_per_s": round(max(rates), 1)}
  anchor_rate = section["anchor"]["steps_per_s"]
  for name in cases:
    section[name]["x_anchor"] = round(section[name]["steps_per_s"] / anchor_rate, 2)
    print(f"{name:20s} {section[name]['steps_per_s']:7.0f} train steps/s "
          f"({section[name]['x_anchor']:.2f}x the anchor)", flush=True)
  section["sampling_cpu_per_item"] = {
      "sharded": _cpu_per_sample(iter(sharded.dataset(batch)), server, 300, batch),
      "packed": _cpu_per_sample(iter(packed.dataset(batch)), server, 300, batch),
      "plain": _cpu_per_sample(anchor_iterator, server, 300, batch)}
  print("sampling alone:", section["sampling_cpu_per_item"], flush=True)
  return section


if __name__ == "__main__":
  sys.exit(main())
