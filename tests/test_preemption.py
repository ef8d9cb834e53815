"""Real training processes, really signalled and killed, then resumed."""

import re
import signal

from tests.conftest import TINY_DQN, bindings, committed_steps, run_train, start_train, status, wait_for
from trainer import errors

# Long enough that the job is still running when the signal comes.
LONG = bindings(TINY_DQN, train__num_iterations=100_000)


def _resume_to(root, total, timeout=300):
  return run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=total),
                   timeout=timeout)


def test_sigterm_commits_a_bundle_exits_75_and_the_rerun_finishes_the_total(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=LONG, log_path=tmp_path / "first.log")
  try:
    wait_for(lambda: committed_steps(root), 240, "the first committed bundle", proc)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
  finally:
    proc.kill()
  log = (tmp_path / "first.log").read_text()
  assert rc == errors.EXIT_PREEMPTED, log
  assert "Received SIGTERM" in log
  stopped = status(root)
  # The stop committed a bundle at the step where it stopped.
  assert stopped["checkpoints"][-1] == stopped["train_step"] > 0
  assert stopped["env_steps"] > 0 and stopped["replay_size"] > 0

  total = stopped["train_step"] + 40
  result = _resume_to(root, total)
  assert result.returncode == 0, result.stderr
  assert f"Resumed from step {stopped['train_step']}" in result.stderr
  assert "skipping the initial collect" in result.stderr
  assert f"Config change accepted: train.num_iterations: 100000 -> {total}" in result.stderr
  done = status(root)
  assert done["complete"] and done["train_step"] == total
  assert done["env_steps"] > stopped["env_steps"]
  assert done["episodes"] >= stopped["episodes"]

  # Already complete: exits 0 at once without training.
  again = _resume_to(root, total)
  assert again.returncode == 0
  assert "Already complete" in again.stderr
  assert status(root)["train_step"] == total


def test_sigkill_resumes_from_the_last_committed_bundle(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=LONG)
  try:
    wait_for(lambda: len(committed_steps(root)) >= 2, 240, "two committed bundles", proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
  finally:
    proc.kill()
  killed = status(root)
  step = killed["train_step"]
  assert step == killed["checkpoints"][-1] and step >= 40

  result = _resume_to(root, step + 20)
  assert result.returncode == 0, result.stderr
  assert (f"Resumed from step {step}: replay size {killed['replay_size']}, env steps "
          f"{killed['env_steps']}, episodes {killed['episodes']}") in result.stderr
  done = status(root)
  assert done["train_step"] == step + 20 and done["complete"]


def test_second_signal_exits_at_once_and_keeps_the_last_bundle(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=LONG)
  try:
    wait_for(lambda: committed_steps(root), 240, "the first committed bundle", proc)
    # Two different signals: both are delivered (two SIGTERMs could merge into one).
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=60)
  finally:
    proc.kill()
  assert rc in (128 + signal.SIGINT, 128 + signal.SIGTERM)
  step = status(root)["checkpoints"][-1]
  result = _resume_to(root, step + 20)
  assert result.returncode == 0, result.stderr
  assert f"Resumed from step {step}" in result.stderr


def test_a_second_ctrl_c_during_the_stop_says_the_code_it_exits_with(tmp_path):
  root, log = tmp_path / "run", tmp_path / "train.log"
  proc = start_train(root, gin_bindings=LONG, log_path=log)
  try:
    wait_for(lambda: "Training from step" in log.read_text(), 240, "training to start", proc)
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: "exiting with code 75" in log.read_text() or proc.poll() is not None, 240,
             "the stop to commit")
    proc.send_signal(signal.SIGINT)  # while it shuts down (or just after it exited)
    rc = proc.wait(timeout=60)
  finally:
    proc.kill()
  # Whichever came first, the last exit code the log names is the one it exited with.
  said = re.findall(r"exiting (?:now )?with code (\d+)", log.read_text())
  assert said and int(said[-1]) == rc, (rc, log.read_text()[-2000:])
  assert rc in (75, 128 + signal.SIGINT)


def test_sigterm_during_start_up_still_exits_75(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=LONG, log_path=tmp_path / "log")
  try:
    # run.lock appears while the job is being built, before any training.
    wait_for(lambda: (root / "run.lock").exists(), 120, "the run lock", proc)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
  finally:
    proc.kill()
  assert rc == errors.EXIT_PREEMPTED, (tmp_path / "log").read_text()[-3000:]
  result = _resume_to(root, 20)
  assert result.returncode == 0, result.stderr
  assert status(root)["complete"]

