"""The run directory's role files and what trainer.status makes of them (no
TensorFlow): a useless replay address is named with its problem; a live job's
step; a role that stopped cleanly against one that is gone."""

import json
import os
import socket
import subprocess

import pytest

from trainer.cli import status
from trainer.roles import rolefiles
from trainer.rundir import layout
from trainer.rundir.run_lock import RunLock


def _dead_pid() -> int:
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


@pytest.mark.fast
def test_a_useless_address_file_is_named_with_its_problem(tmp_path):
  root = str(tmp_path)
  assert rolefiles.server_problem(root) is None  # none written yet: simply wait
  os.makedirs(tmp_path / "roles")
  path = tmp_path / layout.SERVER_ADDRESS_FILE
  path.write_text("{not json")
  assert rolefiles.server_problem(root).startswith(f"{path} is not valid JSON (")
  path.write_text('{"pid": 12}')
  assert rolefiles.server_problem(root).startswith(f"{path} has no 'address' field; start it")
  pid = _dead_pid()
  path.write_text(json.dumps({"address": "localhost:1", "pid": pid, "since": 0,
                              "host": socket.gethostname()}))
  assert rolefiles.server_problem(root) == (
      f"the replay server recorded in {path} (pid {pid} on this host) is gone; start it "
      f"(python -m trainer.replay_server --root_dir={root} ...) or pass --replay_address")
  rolefiles.write_server_address(root, "localhost:2")  # this process: it may serve
  assert rolefiles.server_problem(root) is None


@pytest.mark.fast
def test_status_shows_the_live_step_of_the_lock_holder(tmp_path):
  root = str(tmp_path)
  assert status.live_progress(root) is None
  lock = RunLock(root)
  lock.acquire()
  try:
    assert status.live_progress(root) is None  # no step recorded yet
    lock.note_step(42)
    live = status.live_progress(root)
    assert live["train_step"] == 42 and f"pid {os.getpid()}" in live["source"]
    lock.note_step(43)  # within LIVE_EVERY_S: not rewritten
    assert status.live_progress(root)["train_step"] == 42
  finally:
    lock.release()
  assert status.live_progress(root) is None  # released: no job runs


@pytest.mark.fast
def test_a_role_that_exited_cleanly_is_stopped_and_one_killed_is_gone(tmp_path):
  root = str(tmp_path)
  rolefiles.Heartbeat(root, "collector-0").beat(force=True, env_steps=5, stopped=True)
  rolefiles.Heartbeat(root, "collector-1").beat(force=True, env_steps=5)
  beat = tmp_path / "roles" / "collector-1.json"
  beat.write_text(json.dumps({**json.loads(beat.read_text()), "pid": _dead_pid()}))
  states = {r["role"]: status.role_state(r) for r in rolefiles.read_all(root)}
  assert states == {"collector-0": "stopped", "collector-1": "gone"}
