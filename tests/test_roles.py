"""The job as roles (trainer.launch): real processes on loopback, really killed."""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import reverb
import tensorflow as tf

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, committed_steps, status, wait_for
from trainer.config.settings import Settings
from trainer.errors import ConfigError
from trainer.roles import launch, replay_server, tables

ROLES_DQN = {**TINY_DQN, "train.num_iterations": 4000, "train.checkpoint_interval": 100,
             "train.policy_export_interval": 100, "train.eval_interval": 300,
             "train.log_interval": 100, "train.summary_interval": 0,
             "train.collect_steps_per_iteration": 4, "train.train_steps_per_iteration": 4}


def _launch(root, *extra, config=True):
  cmd = [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", "--collectors=2", *extra]
  if config:
    cmd += [f"--gin_file={DQN_CONFIG}", *(f"--gin_bindings={b}" for b in bindings(ROLES_DQN))]
  log = open(pathlib.Path(root).parent / f"launch-{len(os.listdir(pathlib.Path(root).parent))}.log",
             "w")
  return subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT,
                          text=True), log.name


def _beat(root, role) -> dict:
  try:
    return json.loads((pathlib.Path(root) / "roles" / f"{role}.json").read_text())
  except (OSError, ValueError):
    return {}


def _kill(root, role) -> int:
  pid = _beat(root, role)["pid"]
  os.kill(pid, signal.SIGKILL)
  return pid


def _log(root, role) -> str:
  return (pathlib.Path(root) / "roles" / "logs" / f"{role}.log").read_text()


def test_launch_survives_killed_roles_and_a_sigterm_and_completes(tmp_path):
  root = tmp_path / "run"
  proc, launch_log = _launch(root)
  wait_for(lambda: _beat(root, "learner").get("train_step", 0) >= 150, 240, "training", proc)
  # The server: restarted from the newest bundle; the collectors count on from its counters.
  wait_for(lambda: committed_steps(root), 60, "a bundle", proc)
  # A collector: restarted, it continues from its counters on the server.
  killed = _kill(root, "collector-1")
  wait_for(lambda: _beat(root, "collector-1").get("pid") not in (None, killed), 120,
           "collector 1 to restart", proc)
  # The server: restarted from the newest bundle. A collector counts on from the counters
  # that the restored replay holds: it finds them changed, or reconnects and reads them.
  logs = lambda: _log(root, "collector-0") + _log(root, "collector-1")  # noqa: E731
  _kill(root, "replay_server")
  wait_for(lambda: re.search(r"holds \d+ env steps .* not \d+: it restarted from a checkpoint"
                             r"|lost the replay server", logs()), 120,
           "a collector to count from the restored counters", proc)
  # SIGTERM: the learner commits, everything stops, 75.
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 75, pathlib.Path(launch_log).read_text()[-3000:]
  stopped_at = committed_steps(root)[-1]
  assert f"Stopped at step {stopped_at}" in _log(root, "learner")
  # Resume with the run's saved config; the learner is killed once on the way.
  proc, launch_log = _launch(root, config=False)
  wait_for(lambda: _beat(root, "learner").get("train_step", 0) >= stopped_at + 100
           and _beat(root, "learner").get("pid") != proc.pid, 240, "the resumed learner", proc)
  _kill(root, "learner")
  assert proc.wait(timeout=300) == 0, pathlib.Path(launch_log).read_text()[-3000:]
  text = pathlib.Path(launch_log).read_text()
  assert "learner killed by SIGKILL; restarting it" in text
  got = status(root)
  assert got["complete"] and got["train_step"] == 4000 and not got["exports_missing"]
  assert {r["role"] for r in got["roles"]} == {"replay_server", "learner", "collector-0",
                                               "collector-1"}
  # The env steps the evaluations recorded never went back, through every restart.
  rows = (root / "eval" / "returns.csv").read_text().splitlines()[1:]
  env_steps = [int(r.split(",")[2]) for r in rows]
  assert env_steps == sorted(env_steps) and got["env_steps"] >= 4000
  policy = tf.saved_model.load(got["exports"][-1]["path"] + "/greedy")
  assert policy is not None


def _settings(**overrides) -> Settings:
  values = {"num_iterations": 10, "checkpoint_interval": 5, "policy_export_interval": 5,
            "eval_interval": 0, "batch_size": 64, "collect_envs": 4,
            "collect_steps_per_iteration": 20, "train_steps_per_iteration": 20,
            "initial_collect_steps": 1000}
  values.update(overrides)
  return Settings(**values)


@pytest.mark.fast
def test_rate_control_defaults_to_the_single_process_ratio():
  control = tables.rate_control(_settings())
  assert control.samples_per_insert == 64.0  # 64 sequences a train step, one step per env step
  assert control.min_size_to_sample == 1000
  assert tables.rate_control(_settings(collect_steps_per_iteration=40)).samples_per_insert == 32
  assert tables.rate_control(_settings(), samples_per_insert=8).samples_per_insert == 8
  with pytest.raises(ConfigError, match="samples_per_insert"):
    tables.rate_control(_settings(), samples_per_insert=0)


@pytest.mark.fast
def test_backoff_doubles_to_its_cap():
  assert [launch.backoff(n) for n in (1, 2, 3, 6, 20)] == [1, 2, 4, 30, 30]


def test_a_restored_table_with_other_settings_is_refused():
  """Reverb restores a table with the settings it was saved with (its issues #64,
  #118, #147); the server role compares them with the config before serving."""
  signature = tf.TensorSpec([2], tf.float32)
  saved = tables.rate_control(_settings())
  with tempfile.TemporaryDirectory() as tmp:
    server = reverb.Server([tables.replay_table("t", 100, signature, saved)], port=None,
                           checkpointer=reverb.checkpointers.DefaultCheckpointer(tmp + "/a"))
    client = reverb.Client(f"localhost:{server.port}")
    client.insert(np.zeros([2], np.float32), {"t": 1.0})
    path = client.checkpoint()
    server.stop()
    changed = tables.rate_control(_settings(), samples_per_insert=8)
    server = reverb.Server(
        [tables.replay_table("t", 100, signature, changed)], port=None,
        checkpointer=reverb.checkpointers.DefaultCheckpointer(tmp + "/b",
                                                              fallback_checkpoint_path=path))
    try:
      info = reverb.Client(f"localhost:{server.port}").server_info()
      assert info["t"].current_size == 1
      assert not changed.matches(info["t"].rate_limiter_info)  # Reverb kept the saved one
      with pytest.raises(ConfigError, match="64 samples per insert"):
        replay_server._check_restored(info, "t", 100, changed, "bundle 5")
      with pytest.raises(ConfigError, match="capacity 100"):
        replay_server._check_restored(info, "t", 200, saved, "bundle 5")
      replay_server._check_restored(info, "t", 100, saved, "bundle 5")
    finally:
      server.stop()
