r"""How long the learner role stalls while the replay server checkpoints a
1M-item table, and the server's peak memory.

  python benchmarks/replay_checkpoint.py [--items 1000000] [--interval 30000] [--shards N] [--quick]

Starts `python -m trainer.replay_server` for the default DQN config with a
replay of `--items` capacity, fills it with `--items` CartPole steps (a random
policy's, collected once and written round and round through the collectors'
packed writers, until the table is full), then starts `python -m trainer.learn` alone (no collectors;
the rate limiter's slack is opened wide, so neither side waits on the other)
with a checkpoint every `--interval` train steps: each is a Reverb checkpoint
of the whole table, moved into a committed bundle. The interval leaves the
background commit (~15 s for 1M items on 2 cores) time to end before the next
checkpoint: one that comes sooner waits for it (the learner's log says how long
and warns), which is the checkpoint interval's cost, not the server's lock.

The stall is measured from outside: the script reads the train step the
learner pushes to the server after every Learner call (20 steps), 50 times a
second, and takes the longest time the step did not move within 3 s after each
checkpoint began, against the median time between moves. The learner's own log
says how long each checkpoint paused training and how long its commit took.
The server's peak memory is its VmHWM. Results: "replay_checkpoint" section
(the config's `replay_shards`), or "replay_checkpoint_<N>_shards" with --shards.
"""

import os
import pathlib
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import reverb  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import logging  # noqa: E402

from benchmarks import common  # noqa: E402
from trainer.cli import registry  # noqa: E402, F401
from trainer.config import gin_config  # noqa: E402
from trainer.loops.job import configure_job, open_job  # noqa: E402
from trainer.loops.off_policy import OffPolicyLoop  # noqa: E402
from trainer.replay import layout  # noqa: E402
from trainer.replay.packing import StepPacking  # noqa: E402
from trainer.replay.writers import per_env_writers  # noqa: E402
from trainer.roles import rolefiles, tables  # noqa: E402

CONFIG = str(REPO / "configs" / "dqn_cartpole.gin")
_PAUSED = re.compile(r"Checkpoint at step (\d+): training paused ([\d.]+) s"
                     r" \(([\d.]+) s of it waiting")
_COMMITTED = re.compile(r"Committed checkpoint bundle at step (\d+) \(replay (\d+).* in ([\d.]+) s")


def _bindings(items: int, interval: int, iterations: int) -> list[str]:
  return [f"create_uniform_replay.capacity = {items}", "train.eval_interval = 0",
          f"train.checkpoint_interval = {interval}", f"train.num_iterations = {iterations}",
          f"train.policy_export_interval = {iterations}", "train.initial_collect_steps = 1000",
          # Slack for 1M inserts without samples (and the learner's samples after).
          "rate_control.error_buffer_chunks = 100000"]


def _real_steps(n: int) -> list:
  """`n` random-policy CartPole steps, one `Trajectory` of numpy values each."""
  root = os.path.join(tempfile.mkdtemp(prefix="trainer-steps-"), "run")
  never = 10**9
  config = gin_config.load(root, [CONFIG], [
      f"train.initial_collect_steps = {n}", f"create_uniform_replay.capacity = {n}",
      f"train.checkpoint_interval = {never}", f"train.policy_export_interval = {never}",
      "train.eval_interval = 0"])
  with open_job(configure_job(root, config)) as job:
    OffPolicyLoop(job, job.stop).initial_collect()
    items = tf.nest.map_structure(lambda t: t.numpy(), job.replay.buffer.gather_all())
  rows = tf.nest.flatten(items)[0].shape[0]
  return [tf.nest.map_structure(lambda x, r=r, t=t: x[r, t], items)
          for r in range(rows) for t in range(tf.nest.flatten(items)[0].shape[1])]


def _fill(address: str, steps: list, items: int) -> float:
  client = reverb.Client(address)
  packing = StepPacking(tf.nest.map_structure(
      lambda x: tf.TensorSpec(np.shape(x), tf.as_dtype(np.asarray(x).dtype)), steps[0]))
  shards = layout.table_shards(client.server_info(), "uniform_table")
  writers = per_env_writers(client, shards, 2, 1, packing)
  start = time.monotonic()
  # No item starts at an episode's last step (~5 % of CartPole's): 10 % more
  # steps than items fill the table to its capacity (FIFO beyond it).
  for i in range(int(items * 1.1)):
    step = steps[i % len(steps)]
    writers(tf.nest.map_structure(lambda x: np.asarray(x)[None], step))
  writers.flush()
  writers.close()
  return time.monotonic() - start


class _StepWatch(threading.Thread):
  """The learner's pushed train step, read from the server 50 times a second."""

  def __init__(self, address: str):
    super().__init__(daemon=True)
    self._client = reverb.Client(address)
    self.moves: list[tuple[float, int]] = []  # (time, new step)
    self.done = threading.Event()

  def run(self) -> None:
    last = None
    while not self.done.is_set():
      try:
        sample = next(self._client.sample(tables.VARIABLES_TABLE, 1))[0]
        step = int(sample.data[2])  # the train step (trainer.roles.weights' layout)
      except Exception:  # noqa: BLE001  (nothing pushed yet)
        step = None
      if step is not None and step != last:
        self.moves.append((time.monotonic(), step))
        last = step
      time.sleep(0.02)


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="100,000 items, interval 4,000")
  parser.add_argument("--items", type=int, default=1_000_000)
  parser.add_argument("--interval", type=int, default=30_000)
  parser.add_argument("--checkpoints", type=int, default=3)
  parser.add_argument("--shards", type=int, default=None,
                      help="replay_shards.shards (default: the config's)")
  args = parser.parse_args()
  if args.quick:
    args.items, args.interval = 100_000, 4_000
  logging.set_verbosity(logging.WARNING)
  iterations = args.interval * (args.checkpoints + 1)
  work = pathlib.Path(tempfile.mkdtemp(prefix="trainer-bench-ckpt-"))
  root = work / "run"
  flags = [f"--root_dir={root}", f"--gin_file={CONFIG}",
           *(f"--gin_bindings={b}" for b in _bindings(args.items, args.interval, iterations)),
           *([f"--gin_bindings=replay_shards.shards = {args.shards}"] if args.shards else [])]
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  steps = _real_steps(20_000)
  server_log = open(work / "server.log", "w")  # noqa: SIM115
  server = subprocess.Popen([sys.executable, "-m", "trainer.replay_server", *flags], cwd=REPO,
                            env=env, stdout=server_log, stderr=subprocess.STDOUT)
  learner = None
  try:
    while (address := rolefiles.server_address(str(root))) is None:
      if server.poll() is not None:
        raise SystemExit(f"the replay server exited {server.returncode}; see {server_log.name}")
      time.sleep(0.5)
    fill_s = _fill(address, steps, args.items)
    info = reverb.Client(address).server_info()
    size = layout.replay_size(info, "uniform_table")
    shards = len(layout.table_shards(info, "uniform_table"))
    print(f"filled {size:,} items in {fill_s:.0f} s", flush=True)
    watch = _StepWatch(address)
    watch.start()
    learner_log = work / "learner.log"
    with open(learner_log, "w") as log:
      learner = subprocess.Popen([sys.executable, "-m", "trainer.learn", *flags],
                                 cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
      code = learner.wait(timeout=3600)
    watch.done.set()
    watch.join()
    with open(f"/proc/{server.pid}/status") as f:
      peak_mb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
  finally:
    for proc in (learner, server):
      if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
  text = learner_log.read_text()
  if code != 0:
    raise SystemExit(f"the learner exited {code}; see {learner_log}")
  paused = {int(s): (float(t), float(w)) for s, t, w in _PAUSED.findall(text)}
  committed = {int(s): (int(n), float(t)) for s, n, t in _COMMITTED.findall(text)}
  section = _stalls(watch.moves, paused, committed, args.interval)
  section.update(items=args.items, replay_size=size, shards=shards, fill_s=round(fill_s, 1),
                 server_peak_rss_mb=round(peak_mb), checkpoint_interval=args.interval,
                 learner_log=str(learner_log))
  print(common.dumps({k: v for k, v in section.items() if k != "moves"}), flush=True)
  common.write_results(args, "replay_checkpoint" if args.shards is None
                       else f"replay_checkpoint_{args.shards}_shards", section)
  return 0


def _stalls(moves, paused: dict, committed: dict, interval: int) -> dict:
  """The longest time without a new train step after each background checkpoint
  began, against the median time between moves."""
  gaps = [(t1 - t0, s0) for (t0, s0), (t1, _) in zip(moves, moves[1:], strict=False)]
  typical = statistics.median(g for g, _ in gaps)
  per_checkpoint = []
  for step in sorted(paused):
    after = [g for g, s in gaps if step - 2 * 20 <= s <= step + 3 * 1000]  # ~3 s of training
    per_checkpoint.append({
        "step": step, "paused_s": paused[step][0], "waited_for_previous_commit_s": paused[step][1],
        "commit_s": committed.get(step, (None, None))[1],
        "replay_items": committed.get(step, (None, None))[0],
        "longest_gap_s": round(max(after), 3) if after else None})
  longest = max((c["longest_gap_s"] or 0) for c in per_checkpoint) if per_checkpoint else None
  return {"typical_gap_s": round(typical, 3), "longest_gap_after_checkpoint_s": longest,
          "checkpoints": per_checkpoint, "interval": interval}


if __name__ == "__main__":
  sys.exit(main())
