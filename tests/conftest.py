"""Shared helpers: tiny configs, the CLI in a subprocess, run-directory reads.

This module imports no TensorFlow, so `pytest -m fast` (`make test-fast`) collects without
it. A session that runs any other test splits the CPU into two logical devices before its
first test (`pytest_collection_finish`)."""

import json
import os
import pathlib
import resource
import subprocess
import sys
import time

import gin
import pytest

FAST = "fast"


def _fast_only(config: pytest.Config) -> bool:
  return config.getoption("markexpr", "").strip() == FAST


def pytest_ignore_collect(collection_path: pathlib.Path, config: pytest.Config) -> bool | None:
  """Under `-m fast`, a test module that holds no fast test is not even imported (most
  import TensorFlow at the top); a module with fast tests says `pytest.mark.fast`."""
  if _fast_only(config) and collection_path.suffix == ".py" and \
      collection_path.name.startswith("test_"):
    return "pytest.mark.fast" not in collection_path.read_text() or None
  return None


def pytest_collection_finish(session: pytest.Session) -> None:
  """Two logical CPU devices for the tests of `train.strategy = @mirrored_strategy`, which
  cannot split the CPU once TensorFlow's runtime has started (an earlier test would have
  started it). Jobs under the default strategy use the first alone. Runs in each xdist
  worker, after collection (importing TensorFlow does not start its runtime) and before
  any test. A session of fast tests alone splits nothing, and fails if collecting them
  imported TensorFlow (conftest or a test module importing it at the top)."""
  if all(item.get_closest_marker(FAST) for item in session.items):
    if "tensorflow" in sys.modules:
      raise pytest.UsageError(
          "collecting the fast tests imported tensorflow; find the import with "
          "`python -X importtime -m pytest -q -m fast --collect-only tests 2>&1 | grep -B20 tensorflow`")
    return
  import tensorflow as tf

  tf.config.set_logical_device_configuration(
      tf.config.list_physical_devices("CPU")[0],
      [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
  tf.config.list_logical_devices()  # starts the runtime: no test can split the CPU again


REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DQN_CONFIG = str(CONFIGS / "dqn_cartpole.gin")
SAC_CONFIG = str(CONFIGS / "sac_pendulum.gin")

# Shrinks the default DQN job to seconds: the real code on a small problem.
TINY_DQN = {
    "train.num_iterations": 60,
    "train.checkpoint_interval": 20,
    "train.policy_export_interval": 30,
    "train.eval_interval": 30,
    "train.eval_episodes": 1,
    "train.initial_collect_steps": 50,
    "train.batch_size": 8,
    "train.log_interval": 20,
    "train.summary_interval": 20,
    "create_dqn_agent.fc_layer_params": (16,),
    "create_uniform_replay.capacity": 2000,
    "create_gym_environment.max_episode_steps": 50,
}
REVERB_BINDINGS = {
    "train.replay_fn": "@create_reverb_replay",
    "create_reverb_replay.capacity": 2000,
}


def bindings(base: dict, **overrides) -> list[str]:
  """gin binding strings from a dict; override keys use '__' for '.'."""
  merged = dict(base)
  merged.update({k.replace("__", "."): v for k, v in overrides.items()})
  return [f"{k} = {v}" for k, v in merged.items()]


def cli_env() -> dict:
  env = dict(os.environ)
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as in a user's shell: the commands pick it
  env["PYTHONUNBUFFERED"] = "1"
  env["PYTHONPATH"] = str(REPO)
  return env


def train_cmd(root_dir, gin_files=(DQN_CONFIG,), gin_bindings=(), extra=()) -> list[str]:
  cmd = [sys.executable, "-m", "trainer.train", f"--root_dir={root_dir}"]
  cmd += [f"--gin_file={f}" for f in gin_files]
  cmd += [f"--gin_bindings={b}" for b in gin_bindings]
  return cmd + list(extra)


def run_train(root_dir, gin_files=(DQN_CONFIG,), gin_bindings=(), extra=(), timeout=300,
              max_file_bytes=None):
  """Runs the CLI to completion; `max_file_bytes` caps every file it writes (RLIMIT_FSIZE)."""

  def limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

  return subprocess.run(train_cmd(root_dir, gin_files, gin_bindings, extra), cwd=REPO,
                        env=cli_env(), capture_output=True, text=True, timeout=timeout,
                        preexec_fn=limit if max_file_bytes else None)


def start_train(root_dir, gin_files=(DQN_CONFIG,), gin_bindings=(), log_path=None):
  log = open(log_path, "w") if log_path else subprocess.DEVNULL
  return subprocess.Popen(train_cmd(root_dir, gin_files, gin_bindings), cwd=REPO, env=cli_env(),
                          stdout=log, stderr=subprocess.STDOUT, text=True)


def status(root_dir) -> dict:
  out = subprocess.run([sys.executable, "-m", "trainer.status", f"--root_dir={root_dir}", "--json"],
                       cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120, check=True)
  return json.loads(out.stdout)


def committed_steps(root_dir) -> list[int]:
  bundle_dir = pathlib.Path(root_dir) / "train" / "bundles"
  return sorted(int(p.name) for p in bundle_dir.glob("*")
                if p.name.isdigit() and (p / "COMMITTED").is_file())


def wait_for(predicate, timeout: float, what: str, proc=None) -> None:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc is not None and proc.poll() is not None:
      raise AssertionError(f"process exited with {proc.returncode} while waiting for {what}")
    time.sleep(0.05)
  raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(autouse=True)
def clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.fixture(scope="session")
def gcs_emulator():
  """A GCS emulator on 127.0.0.1 for the session (one per xdist worker)."""
  from tests.gcs_emulator import Emulator

  emulator = Emulator()
  yield emulator
  emulator.stop()


@pytest.fixture
def gcs_root(gcs_emulator, tmp_path, monkeypatch):
  """`gs://<a new bucket>/run`, with the environment (this process's and the CLI
  subprocesses') pointed at the emulator and staging under tmp_path."""
  for key, value in gcs_emulator.environment().items():
    monkeypatch.setenv(key, value)
  monkeypatch.setenv("TRAINER_STAGING_DIR", str(tmp_path / "staging"))
  return f"gs://{gcs_emulator.create_bucket()}/run"
