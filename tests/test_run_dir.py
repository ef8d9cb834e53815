"""Damaged bundles, fallback, and one job per run directory."""

import json
import signal

from tests.conftest import TINY_DQN, bindings, committed_steps, run_train, start_train, status, wait_for
from trainer import errors


def _finished_run(tmp_path):
  root = tmp_path / "run"
  result = run_train(root, gin_bindings=bindings(TINY_DQN))
  assert result.returncode == 0, result.stderr
  assert committed_steps(root) == [20, 40, 60]
  return root


def _damage(root, step: int) -> str:
  """Truncates the largest file of bundle `step`; returns its manifest path."""
  manifest = json.loads((root / "train" / "bundles" / f"{step:010d}" / "COMMITTED").read_text())
  rel, _ = max(manifest["files"].items(), key=lambda kv: kv[1]["size"])
  path = root / rel
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  return rel


def test_damaged_latest_bundle_falls_back_and_continues(tmp_path):
  root = _finished_run(tmp_path)
  rel = _damage(root, 60)
  result = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == 0, result.stderr
  assert "Checkpoint bundle 60 is damaged" in result.stderr and rel in result.stderr
  assert "Resumed from step 40" in result.stderr
  assert committed_steps(root) == [40, 60, 80]  # 60 committed anew on the way to 80
  set_aside = [p.name for p in (root / "train" / "bundles").iterdir() if ".damaged-" in p.name]
  assert len(set_aside) == 1 and set_aside[0].startswith("0000000060")
  assert status(root)["train_step"] == 80


def test_no_bundle_verifies_is_an_error_not_a_fresh_start(tmp_path):
  root = _finished_run(tmp_path)
  for step in committed_steps(root):
    _damage(root, step)
  result = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == errors.EXIT_RUN_DIR
  assert "no checkpoint bundle" in result.stderr and "verifies" in result.stderr
  assert committed_steps(root) == [20, 40, 60]  # nothing deleted or overwritten


def test_second_job_on_a_live_run_dir_refuses_naming_the_holder(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=100_000))
  try:
    wait_for(lambda: committed_steps(root), 240, "the first bundle", proc)
    result = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=100_000))
    assert result.returncode == errors.EXIT_RUN_DIR
    assert f"pid {proc.pid}" in result.stderr and "is in use by host" in result.stderr
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    proc.kill()
  # The dead job's lock is taken over without cleanup.
  step = committed_steps(root)[-1]
  result = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=step + 20))
  assert result.returncode == 0, result.stderr
  assert f"Resumed from step {step}" in result.stderr
