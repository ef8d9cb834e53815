"""A role built with another network than the replay server's tables: refused at
connect, exit 2, one line and the differences, never a shape-mismatch traceback.
Real roles (python -m trainer.replay_server, .learn, .collect) on loopback."""

import signal
import subprocess
import sys

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, wait_for
from trainer import errors
from trainer.roles import rolefiles
from trainer.rundir import layout

NARROW = bindings(TINY_DQN)  # fc_layer_params (16,)
WIDE = bindings(TINY_DQN, create_dqn_agent__fc_layer_params=(32,))


def _cmd(module: str, root, gin_bindings, *extra) -> list[str]:
  return [sys.executable, "-m", module, f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
          *[f"--gin_bindings={b}" for b in gin_bindings], *extra]


def _start(module: str, root, gin_bindings, log, *extra) -> subprocess.Popen:
  return subprocess.Popen(_cmd(module, root, gin_bindings, *extra), cwd=REPO, env=cli_env(),
                          stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)  # noqa: SIM115


def _run(module: str, root, gin_bindings, *extra) -> subprocess.CompletedProcess:
  return subprocess.run(_cmd(module, root, gin_bindings, *extra), cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=180)


def _serve(root, gin_bindings, log) -> subprocess.Popen:
  server = _start("trainer.replay_server", root, gin_bindings, log, "--host=localhost")
  wait_for(lambda: rolefiles.server_address(str(root)), 120, "the replay server", server)
  return server


def _stop(*procs: subprocess.Popen) -> None:
  for proc in procs:
    proc.send_signal(signal.SIGTERM)
  for proc in procs:
    try:
      proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


def _errors(stderr: str, prog: str) -> tuple[list[str], list[str]]:
  """The error lines, and the detail lines under them."""
  lines = stderr.splitlines()
  error = [i for i, line in enumerate(lines) if line.startswith(f"{prog}: error:")]
  details = [line.strip() for line in lines[error[0] + 1:] if line.startswith("  ")] if error else []
  return [lines[i] for i in error], details


def test_a_collector_with_another_network_is_refused_with_the_config_diff(tmp_path):
  root = tmp_path / "run"
  server = _serve(root, NARROW, tmp_path / "server.log")
  learner = _start("trainer.learn", root, NARROW, tmp_path / "learner.log")
  try:
    # The learner saves the run's config, then waits for the collectors.
    wait_for(lambda: (root / layout.CONFIG_FILE).is_file(), 120, "the learner", learner)
    wide = _run("trainer.collect", root, WIDE, "--task=0")
  finally:
    _stop(learner, server)
  assert wide.returncode == errors.EXIT_USAGE, wide.stderr[-3000:]
  assert "Traceback" not in wide.stderr
  error, details = _errors(wide.stderr, "trainer.collect")
  assert len(error) == 1, wide.stderr[-3000:]
  assert "collector 0's policy network differs from the one the replay server's" in error[0]
  assert "[4, 32] here, float32[4, 16] on the server" in error[0]
  assert details[0] == "create_dqn_agent.fc_layer_params: (16,) -> (32,)"
  assert any("kernel" in d and "float32[16, 2] on the server" in d for d in details), details


def test_a_learner_against_a_server_of_another_network_is_refused_writing_nothing(tmp_path):
  root = tmp_path / "run"
  server = _serve(root, WIDE, tmp_path / "server.log")
  try:
    narrow = _run("trainer.learn", root, NARROW)
  finally:
    _stop(server)
  assert narrow.returncode == errors.EXIT_USAGE, narrow.stderr[-3000:]
  assert "Traceback" not in narrow.stderr
  error, _ = _errors(narrow.stderr, "trainer.learn")
  assert len(error) == 1, narrow.stderr[-3000:]
  assert "the learner's policy network differs" in error[0]
  assert "float32[4, 16] here, float32[4, 32] on the server" in error[0]
  assert not (root / layout.CONFIG_FILE).exists()
  assert not (root / "train" / "bundles").exists()

