"""trainer.launch as real processes on one run directory: a second launch, and a
second replay server started by hand, are refused before they write anything;
the first job goes on (a clean stop, then a rerun to its end). Its supervision logic:
tests/test_supervisor.py."""

import json
import os
import signal
import subprocess
import sys

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, status, wait_for
from trainer import errors
from trainer.roles import rolefiles


def _launch_cmd(root, total) -> list[str]:
  return [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
          "--collectors=1",
          *(f"--gin_bindings={b}" for b in bindings(TINY_DQN, train__num_iterations=total,
                                                    train__checkpoint_interval=200,
                                                    train__policy_export_interval=200))]


def _snapshot(root) -> dict:
  """What a second launch or server would change: the address, the role files'
  writers, the server's scratch directory, the logs."""
  roles = root / "roles"
  beats = {p.name: json.loads(p.read_text())["pid"] for p in roles.glob("*.json")
           if p.name != "replay_address.json"}
  return {"address": (roles / "replay_address.json").read_text(), "beat_pids": beats,
          "scratch": os.stat(root / "train" / "reverb_server").st_ino,
          "logs": sorted(p.name for p in (roles / "logs").iterdir()),
          "log_inodes": sorted(p.stat().st_ino for p in (roles / "logs").iterdir())}


def test_a_second_launch_or_server_on_a_live_run_is_refused_and_changes_nothing(tmp_path):
  root = tmp_path / "run"
  with open(tmp_path / "first.log", "w") as log:
    first = subprocess.Popen(_launch_cmd(root, 100_000), cwd=REPO, env=cli_env(), stdout=log,
                             stderr=subprocess.STDOUT)
  try:
    wait_for(lambda: (rolefiles.read(str(root), rolefiles.LEARNER) or {}).get("train_step", 0)
             > 0 and (root / "roles" / "collector-0.json").exists(), 300,
             "the first launch training", first)
    before = _snapshot(root)
    second = subprocess.run(_launch_cmd(root, 100_000), cwd=REPO, env=cli_env(),
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == errors.EXIT_RUN_DIR, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainer.launch: error: run directory"), lines
    assert "in use by a trainer.launch (host" in lines[0] and f"pid {first.pid}" in lines[0]
    server = subprocess.run(
        [sys.executable, "-m", "trainer.replay_server", f"--root_dir={root}", "--port=0"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=180)
    assert server.returncode == errors.EXIT_RUN_DIR, server.stderr[-2000:]
    error = [line for line in server.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "in use by a replay server (host" in error[0], server.stderr[-2000:]
    server_pid = json.loads((root / "roles" / "replay_address.json").read_text())["pid"]
    assert f"pid {server_pid}" in error[0]
    assert _snapshot(root) == before
    for name in before["logs"]:  # nothing of the refused commands in the live job's logs
      text = (root / "roles" / "logs" / name).read_text()
      assert "in use by" not in text, name
    first.send_signal(signal.SIGTERM)  # the live job goes on to a clean stop ...
    assert first.wait(timeout=300) == errors.EXIT_PREEMPTED, (
        (tmp_path / "first.log").read_text()[-3000:])
  finally:
    first.kill()
  total = status(root)["train_step"] + 100  # ... and, rerun, to its end
  rerun = subprocess.run(_launch_cmd(root, total), cwd=REPO, env=cli_env(), capture_output=True,
                         text=True, timeout=600)
  assert rerun.returncode == errors.EXIT_OK, rerun.stderr[-3000:]
  final = status(root)
  assert final["complete"] and final["train_step"] == total
  # Every role exited cleanly: "stopped", never "gone" (a collector blocked in a Reverb write
  # used to miss its SIGTERM until launch killed it) nor "not alive".
  states = {r["role"]: r["state"] for r in final["roles"]}
  assert "did not stop within" not in rerun.stderr, rerun.stderr[-1500:]
  assert states == {"replay_server": "stopped", "learner": "stopped",
                    "collector-0": "stopped"}, rerun.stderr[-1500:]
