r"""Checkpointing a replay of 1M transitions: the training-loop stall, the
verified restore, and the peak memory of the process.

  python benchmarks/persistence.py [--transitions 1000000] [--repeats 3]

Each side runs in processes of its own (peak memory is a process's maximum
resident set), on the same synthetic transitions of the default job's data
spec (DQN on CartPole-v0; random observations, real shapes and dtypes):

- trainer: the default job (`configs/dqn_cartpole.gin`) with the in-graph
  replay's capacity set to the transition count. Stall: `Job.checkpoint()`,
  what the training loop waits for at a checkpoint step (agent, replay and
  run state written, checksummed and committed as a bundle). Restore, in a
  fresh process: `BundleStore.latest_valid()` (every file's SHA-256 checked)
  and the replay rebuilt from the bundle, its size checked against the
  bundle's summary.
- anchor: TF-Agents as its examples use it: a `TFUniformReplayBuffer`
  (batch size 1) saved with `common.Checkpointer(replay_buffer=...)`, and
  restored by constructing the checkpointer again in a fresh process (no
  verification).
"""

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import common  # noqa: E402

DQN_CONFIG = str(REPO / "configs" / "dqn_cartpole.gin")
CHUNK = 20_000  # batched steps added per flush


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _synthetic(data_spec, steps: int, rows: int, seed: int):
  """`steps` batched trajectories of `rows` rows each: MID steps, random values."""
  import numpy as np
  from tf_agents.specs import array_spec, tensor_spec
  from tf_agents.trajectories import time_step as ts
  rng = np.random.RandomState(seed)  # what TF-Agents' spec sampling expects
  traj = array_spec.sample_spec_nest(tensor_spec.to_array_spec(data_spec), rng,
                                     outer_dims=(steps, rows))
  mid = np.full((steps, rows), ts.StepType.MID, traj.step_type.dtype)
  return traj._replace(step_type=mid, next_step_type=mid.copy())


def _job_bindings(transitions: int) -> list[str]:
  return [f"create_uniform_replay.capacity = {transitions}", "train.num_iterations = 1000000",
          "train.initial_collect_steps = 0", "train.eval_interval = 0"]


def trainer_save(root: str, transitions: int, repeats: int) -> dict:
  import tensorflow as tf
  from absl import logging

  from trainer.cli import registry  # noqa: F401
  from trainer.config import gin_config
  from trainer.loops.job import configure_job, open_job
  logging.set_verbosity(logging.WARNING)
  run_config = gin_config.load(root, [DQN_CONFIG], _job_bindings(transitions))
  with open_job(configure_job(root, run_config)) as job:
    replay = job.replay
    rows = replay.num_envs
    added = 0
    while added < transitions:
      steps = min(CHUNK, (transitions - added) // rows)
      chunk = _synthetic(job.agent.collect_data_spec, steps, rows, seed=added)
      for i in range(steps):
        replay.observer(tf.nest.map_structure(lambda x, i=i: x[i], chunk))
      replay.flush()
      added += steps * rows
    size = replay.size()
    stalls = []
    for _ in range(repeats):  # a new train step each time: one bundle per step
      job.agent.train_step_counter.assign_add(1)
      start = time.monotonic()
      job.checkpoint()
      stalls.append(time.monotonic() - start)
  return {"replay_size": size, "stall_s": stalls, "peak_rss_mb": _peak_rss_mb()}


def trainer_restore(root: str, transitions: int) -> dict:
  from tf_agents.train.utils import train_utils

  from trainer.checkpoint.bundle_store import BundleStore
  from trainer.cli import registry  # noqa: F401
  from trainer.config import gin_config
  from trainer.loops.job import configure_job
  from trainer.replay.uniform import create_uniform_replay
  spec = configure_job(root, gin_config.load(root, [], []))
  env = spec.environment_fn()
  agent = spec.agent_fn(env.time_step_spec(), env.action_spec(), train_utils.create_train_step())
  start = time.monotonic()
  bundle = BundleStore(root).latest_valid()  # every file's checksum verified
  replay = create_uniform_replay(agent.collect_data_spec, sequence_length=2, root_dir=root,
                                 restore_dir=bundle.replay_dir,
                                 num_envs=spec.settings.collect_envs, capacity=transitions)
  size = replay.size()
  seconds = time.monotonic() - start
  expected = bundle.state()["summary"]["replay_size"]
  if size != expected:
    raise SystemExit(f"restored {size} transitions, the bundle says {expected}")
  return {"replay_size": size, "restore_s": seconds, "peak_rss_mb": _peak_rss_mb()}


def anchor_save(root: str, transitions: int, repeats: int) -> dict:
  import tensorflow as tf
  from tf_agents.replay_buffers import tf_uniform_replay_buffer
  from tf_agents.specs import tensor_spec
  from tf_agents.train.utils import train_utils
  from tf_agents.utils import common as tfa_common

  from trainer.acting import envs
  env = envs.create_gym_environment("CartPole-v0")
  from trainer.agents.dqn import create_dqn_agent
  agent = create_dqn_agent(env.time_step_spec(), env.action_spec(), train_utils.create_train_step())
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
      agent.collect_data_spec, batch_size=1, max_length=transitions)

  @tf.function(input_signature=[tensor_spec.add_outer_dim(
      tensor_spec.add_outer_dim(agent.collect_data_spec, 1), None)], autograph=False)
  def add(chunk):
    count = tf.shape(tf.nest.flatten(chunk)[0])[0]

    def body(i):
      with tf.control_dependencies([buffer.add_batch(tf.nest.map_structure(lambda x: x[i], chunk))]):
        return i + 1
    tf.while_loop(lambda i: i < count, body, [tf.constant(0)])

  added = 0
  while added < transitions:
    steps = min(CHUNK * 4, transitions - added)
    add(_synthetic(agent.collect_data_spec, steps, 1, seed=added))
    added += steps
  step = tf.Variable(0, dtype=tf.int64)
  checkpointer = tfa_common.Checkpointer(ckpt_dir=root, max_to_keep=1, replay_buffer=buffer)
  stalls = []
  for _ in range(repeats):
    step.assign_add(1)
    start = time.monotonic()
    checkpointer.save(global_step=step)
    stalls.append(time.monotonic() - start)
  return {"replay_size": int(buffer.num_frames()), "stall_s": stalls,
          "peak_rss_mb": _peak_rss_mb()}


def anchor_restore(root: str, transitions: int) -> dict:
  from tf_agents.replay_buffers import tf_uniform_replay_buffer
  from tf_agents.train.utils import train_utils
  from tf_agents.utils import common as tfa_common

  from trainer.acting import envs
  from trainer.agents.dqn import create_dqn_agent
  env = envs.create_gym_environment("CartPole-v0")
  agent = create_dqn_agent(env.time_step_spec(), env.action_spec(), train_utils.create_train_step())
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
      agent.collect_data_spec, batch_size=1, max_length=transitions)
  start = time.monotonic()
  tfa_common.Checkpointer(ckpt_dir=root, max_to_keep=1, replay_buffer=buffer)
  size = int(buffer.num_frames())
  return {"replay_size": size, "restore_s": time.monotonic() - start,
          "peak_rss_mb": _peak_rss_mb()}


ROLES = {"trainer_save": trainer_save, "trainer_restore": trainer_restore,
         "anchor_save": anchor_save, "anchor_restore": anchor_restore}


def _role(name: str, root: str, transitions: int, repeats: int) -> dict:
  cmd = [sys.executable, __file__, f"--role={name}", f"--root={root}",
         f"--transitions={transitions}", f"--repeats={repeats}"]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
  if out.returncode:
    raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="100,000 transitions, 1 repeat")
  parser.add_argument("--transitions", type=int, default=1_000_000)
  parser.add_argument("--repeats", type=int, default=3, help="checkpoints per save process")
  parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
  parser.add_argument("--root", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.role:
    save = args.role.endswith("save")
    result = ROLES[args.role](args.root, args.transitions, *([args.repeats] if save else []))
    print(json.dumps(result))
    return 0
  if args.quick:
    args.transitions, args.repeats = 100_000, 1
  workdir = tempfile.mkdtemp(prefix="trainer-persistence-")
  sides = {}
  try:
    for side in ("anchor", "trainer"):
      root = os.path.join(workdir, side)
      saved = _role(f"{side}_save", root, args.transitions, args.repeats)
      restored = _role(f"{side}_restore", root, args.transitions, args.repeats)
      sides[side] = {
          "replay_size": saved["replay_size"],
          "stall": common.describe(saved["stall_s"]),
          "restore": common.describe([restored["restore_s"]]),
          "restored_size": restored["replay_size"],
          "peak_rss_mb": round(max(saved["peak_rss_mb"], restored["peak_rss_mb"]), 1),
      }
      print(f"{side}: {common.dumps(sides[side])}", flush=True)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  section = {"transitions": args.transitions, "repeats": args.repeats, **sides}
  print(common.dumps(section))
  common.write_results(args, "persistence", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
