"""The roles' pure logic and Reverb's restore of table settings. The roles as real
processes, really killed: tests/test_chaos.py (trainer.launch) and tests/test_cluster.py
(the Slurm script)."""

import csv
import dataclasses
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import reverb
import tensorflow as tf

from tests.conftest import DQN_CONFIG, REPO, cli_env
from trainer.config.settings import Settings
from trainer.errors import ConfigError
from trainer.replay.layout import ReplayLayout, replay_tables
from trainer.roles import replay_server, tables


def _settings(**overrides) -> Settings:
  values = {"num_iterations": 10, "checkpoint_interval": 5, "policy_export_interval": 5,
            "eval_interval": 0, "batch_size": 64, "collect_envs": 4,
            "collect_steps_per_iteration": 20, "train_steps_per_iteration": 20,
            "initial_collect_steps": 1000}
  values.update(overrides)
  return Settings(**values)


def test_rate_control_defaults_to_the_single_process_ratio():
  control = tables.rate_control(_settings())
  assert control.samples_per_insert == 64.0  # 64 sequences a train step, one step per env step
  assert control.min_size_to_sample == 1000
  assert tables.rate_control(_settings(collect_steps_per_iteration=40)).samples_per_insert == 32
  assert tables.rate_control(_settings(), samples_per_insert=8).samples_per_insert == 8
  with pytest.raises(ConfigError, match="samples_per_insert"):
    tables.rate_control(_settings(), samples_per_insert=0)


def test_a_restored_table_with_other_settings_is_refused():
  """Reverb restores a table with the settings it was saved with (its issues #64,
  #118, #147); the server role compares them with the config before serving,
  shard by shard, and a bundle's shard that the config lacks stops Reverb's load."""
  signature = tf.TensorSpec([2], tf.float32)
  saved = tables.rate_control(_settings())
  layout = ReplayLayout("t", 100, signature, 1, shards=2, control=saved)

  def start(path, shards, control, capacity=100):
    return reverb.Server(
        replay_tables("t", capacity, shards, signature, control), port=None,
        checkpointer=reverb.checkpointers.DefaultCheckpointer(
            path, fallback_checkpoint_path=checkpoint))

  with tempfile.TemporaryDirectory() as tmp:
    checkpoint = None
    server = start(tmp + "/a", 2, saved)
    client = reverb.Client(f"localhost:{server.port}")
    client.insert(np.zeros([2], np.float32), {"t.1": 1.0})
    checkpoint = client.checkpoint()
    server.stop()
    changed = tables.rate_control(_settings(), samples_per_insert=8)
    server = start(tmp + "/b", 2, changed)
    try:
      info = reverb.Client(f"localhost:{server.port}").server_info()
      assert info["t.1"].current_size == 1
      assert not changed.per_shard(2).matches(info["t.1"].rate_limiter_info)  # Reverb kept it
      with pytest.raises(ConfigError, match="64 samples per insert"):
        replay_server._check_restored(info, dataclasses.replace(layout, control=changed), "b")
      with pytest.raises(ConfigError, match="capacity 100 in 2 table.* capacity 200"):
        replay_server._check_restored(info, dataclasses.replace(layout, capacity=200), "b")
      replay_server._check_restored(info, layout, "bundle 5")
    finally:
      server.stop()
    server = start(tmp + "/c", 4, saved)  # more shards: two restored, two new
    try:
      info = reverb.Client(f"localhost:{server.port}").server_info()
      with pytest.raises(ConfigError, match=r"in 4 table.*of \[25, 50\].*replay_shards.shards"):
        replay_server._check_restored(info, dataclasses.replace(layout, shards=4), "b")
    finally:
      server.stop()
    fewer = ReplayLayout("t", 100, signature, 1, control=saved)  # Reverb refuses to load t.0, t.1
    with pytest.raises(ConfigError, match=r"holds table 't\.[01]'.*replay_shards.shards"):
      replay_server.start_server(
          replay_tables("t", 100, 1, signature, saved), fewer, 0,
          reverb.checkpointers.DefaultCheckpointer(tmp + "/d", fallback_checkpoint_path=checkpoint))


# The default DQN job shrunk to seconds, as roles; a checkpoint only at the end, so
# nothing but the evaluation itself refreshes the counters before it.
_TINY_ROLES = {
    "train.num_iterations": 120, "train.checkpoint_interval": 120,
    "train.policy_export_interval": 120, "train.eval_interval": 40, "train.eval_episodes": 1,
    "train.log_interval": 40, "train.summary_interval": 0, "train.initial_collect_steps": 50,
    "train.batch_size": 8, "train.collect_steps_per_iteration": 4,
    "train.train_steps_per_iteration": 4, "create_dqn_agent.fc_layer_params": "(16,)",
    "create_uniform_replay.capacity": 5000, "create_gym_environment.max_episode_steps": 50,
}


def test_each_evaluation_of_a_roles_run_records_the_env_steps_of_its_moment(tmp_path):
  """The learner's env steps are the collectors' counters on the server: each
  returns.csv row has those read at its evaluation, as its log line says, not
  those of the previous progress line or checkpoint."""
  root = tmp_path / "run"
  out = subprocess.run(
      [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
       "--collectors=1", *(f"--gin_bindings={k} = {v}" for k, v in _TINY_ROLES.items())],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  log = (root / "roles" / "logs" / "learner.log").read_text()
  logged = [(int(s), int(e)) for s, e in
            re.findall(r"Eval at step (\d+): average return \S+ over 1 episodes, env steps (\d+)", log)]
  progress = {int(s): int(e) for s, e in re.findall(r"step (\d+)/120 .*\| env steps (\d+)", log)}
  with open(root / "eval" / "returns.csv") as f:
    rows = [(int(r["train_step"]), int(r["env_steps"])) for r in csv.DictReader(f)]
  assert [s for s, _ in rows] == [40, 80, 120], rows
  assert rows == logged, (rows, logged)
  assert rows[0][1] > 0, rows
  env_steps = [e for _, e in rows]
  assert env_steps == sorted(env_steps), rows
  for step, steps in rows:  # read between the previous progress line and this step's
    assert progress.get(step - 40, 0) <= steps <= progress[step], (rows, progress)


def test_the_server_binds_a_port_it_picks_and_picks_again_if_it_was_taken():
  """No one else chooses the port, so none can lose it before the bind: a pick
  that another process took meanwhile is another pick."""
  import socket

  import portpicker

  taken = socket.socket()
  taken.bind(("", 0))
  taken.listen()
  busy, free = taken.getsockname()[1], portpicker.pick_unused_port()
  picks = iter([busy, free])
  tried = []

  def start(port):
    tried.append(port)
    layout = ReplayLayout("t", 10, tf.TensorSpec([], tf.int32), 1,
                          control=tables.rate_control(_settings()))
    with tempfile.TemporaryDirectory() as tmp:
      return replay_server.start_server([reverb.Table.queue("t", 10)], layout, port,
                                        reverb.checkpointers.DefaultCheckpointer(tmp))

  server = replay_server.bind_server(start, 0, pick_port=lambda: next(picks))
  try:
    assert tried == [busy, free] and server.port == free
    assert reverb.Client(f"localhost:{free}").server_info(5)
  finally:
    server.stop()
    taken.close()
