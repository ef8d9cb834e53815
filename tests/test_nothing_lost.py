"""Nothing lost, nothing trusted blindly: real jobs, real files, real kills.

Every export step at or below the committed step has its export; a damaged
marker is damage (set aside, never deleted); a run that has committed never
restarts from step 0; the lock and the temporaries survive what users and
crashes leave behind.
"""

import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import (
  REPO,
  REVERB_BINDINGS,
  TINY_DQN,
  bindings,
  cli_env,
  committed_steps,
  run_train,
  start_train,
  status,
  wait_for,
)
from trainer import errors

FINISHED = bindings(TINY_DQN)  # 60 steps: bundles 20, 40, 60; exports 30, 60


def _error_lines(stderr: str) -> list[str]:
  return [line for line in stderr.splitlines() if line.startswith("trainer: error:")]


def _tree(root: pathlib.Path) -> dict:
  """Every file but the lock (which names its latest holder), with size and mtime."""
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in root.rglob("*") if p.is_file() and p.name != "run.lock"}


def _marker(root, step: int) -> pathlib.Path:
  return root / "train" / "bundles" / f"{step:010d}" / "COMMITTED"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  root = tmp_path_factory.mktemp("finished") / "run"
  result = run_train(root, gin_bindings=FINISHED)
  assert result.returncode == 0, result.stderr[-3000:]
  assert committed_steps(root) == [20, 40, 60]
  return root


@pytest.fixture
def run(finished, tmp_path):
  """A private copy of the finished run."""
  root = tmp_path / "run"
  shutil.copytree(finished, root, symlinks=True)
  return root


def test_rerun_of_a_complete_run_writes_a_missing_final_export(run):
  # As a kill right after the final bundle's commit left it with the old loop, or a
  # hand or a crash in retention took the export (TF-Agents' checkpoint of it stays).
  shutil.rmtree(run / "policies" / "0000000060")
  assert status(run)["exports_missing"] == [60]
  result = run_train(run, gin_bindings=FINISHED)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "The final export (step 60) is missing" in result.stderr
  assert "Already complete" not in result.stderr
  after = status(run)
  assert [e["train_step"] for e in after["exports"]] == [30, 60] and after["exports_missing"] == []
  assert json.loads((run / "policies" / "index.json").read_text())["latest"] == "0000000060"
  assert committed_steps(run) == [20, 40, 60]
  again = run_train(run, gin_bindings=FINISHED)
  assert again.returncode == 0 and "Already complete" in again.stderr


def test_a_bundle_commits_only_after_every_export_at_or_below_it(tmp_path):
  """Watches a live job: whenever a commit marker appears, the exports of its
  grid are already in place (the first export builds templates for seconds)."""
  root = tmp_path / "run"
  grid = 5
  proc = start_train(root, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=120, train__checkpoint_interval=10,
      train__policy_export_interval=grid, train__eval_interval=0, train__log_interval=40,
      train__keep_checkpoints=100, train__exports_keep_last=100), log_path=tmp_path / "log")
  seen, violations = set(), []
  try:
    while proc.poll() is None or len(seen) < len(committed_steps(root)):
      for step in committed_steps(root):
        if step in seen:
          continue
        seen.add(step)
        exported = {int(p.name) for p in (root / "policies").glob("[0-9]" * 10)}
        missing = [s for s in range(grid, step + 1, grid) if s not in exported]
        if missing:
          violations.append((step, missing))
      time.sleep(0.005)
  finally:
    proc.kill()
  assert proc.returncode == 0, (tmp_path / "log").read_text()[-3000:]
  assert len(seen) == 12
  assert violations == [], f"bundles committed before their exports: {violations}"
  assert status(root)["exports_missing"] == []


def test_kill_while_exports_queue_loses_no_export(tmp_path):
  root = tmp_path / "run"
  run_bindings = bindings(TINY_DQN, train__num_iterations=100_000, train__checkpoint_interval=10,
                          train__policy_export_interval=5, train__eval_interval=0,
                          train__log_interval=10, train__exports_keep_last=3)
  proc = start_train(root, gin_bindings=run_bindings, log_path=tmp_path / "log")
  try:  # the first bundle past the first export: the kill lands amid queued exports
    wait_for(lambda: len(committed_steps(root)) >= 2, 240, "two bundles", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    proc.kill()
  killed = status(root)
  assert killed["exports_missing"] == [], killed
  last = killed["train_step"]
  result = run_train(root, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=last + 10, train__checkpoint_interval=10,
      train__policy_export_interval=5, train__eval_interval=0, train__log_interval=10,
      train__exports_keep_last=3))
  assert result.returncode == 0, result.stderr[-3000:]
  final = status(run_dir := root)
  assert final["complete"] and final["exports_missing"] == [], final
  index = json.loads((run_dir / "policies" / "index.json").read_text())
  assert all((run_dir / "policies" / e["path"]).is_dir() for e in index["exports"])


def test_damaged_commit_marker_is_set_aside_never_deleted(run, finished):
  _marker(run, 60).write_text('{"format": 1, "files": {"train/ch')  # truncated
  files_of_60 = {p.name for p in (run / "train/bundles/0000000060").iterdir()}
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Checkpoint bundle 60 is damaged" in result.stderr
  assert "Removing unfinished bundle" not in result.stderr
  assert "Resumed from step 40" in result.stderr
  aside = [p for p in (run / "train/bundles").iterdir() if ".damaged-" in p.name]
  assert len(aside) == 1 and aside[0].name.startswith("0000000060")
  kept = {p.name for p in aside[0].iterdir()}
  assert files_of_60 <= kept and {"ckpt-60.index"} <= kept  # every file, agent included
  assert "Removed exports [60]" in result.stderr  # made by the training now redone
  assert status(run)["train_step"] == 80
  # The export of step 60 is the new bundle 60's policy, not the set-aside one's.
  bundle_60 = json.loads(_marker(run, 60).read_text())["summary"]
  export_60 = json.loads((run / "policies/0000000060/metadata.json").read_text())
  assert export_60["env_steps"] == bundle_60["env_steps"]


def test_every_marker_damaged_is_exit_3_and_nothing_is_touched(run):
  for step in (20, 40, 60):
    _marker(run, step).write_text(_marker(run, step).read_text()[:40])
  before = _tree(run)
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "no checkpoint bundle" in line and "new --root_dir" in line
  assert "Training from step 0" not in result.stderr
  assert _tree(run) == before


def test_a_bad_config_on_a_damaged_run_changes_nothing(run):
  _marker(run, 60).write_text("garbage")
  before = _tree(run)
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__batch_size=5000),
                     extra=["--allow_config_change"])
  assert result.returncode == errors.EXIT_USAGE, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "exceeds the replay capacity" in line
  assert _tree(run) == before  # bundle 60 not yet set aside, TF's state file untouched


def test_marker_that_is_not_a_manifest(run):
  _marker(run, 60).write_text("[1, 2, 3]")
  _marker(run, 40).write_text(json.dumps({"format": 1, "step": 40, "summary": {}, "files": {}}))
  out = subprocess.run([sys.executable, "-m", "trainer.status", f"--root_dir={run}"], cwd=REPO,
                       env=cli_env(), capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr
  assert "damaged         bundle 60: its commit marker holds a list" in out.stdout
  assert "damaged         bundle 40: its commit marker lists no files" in out.stdout
  assert status(run)["train_step"] == 20
  result = run_train(run, gin_bindings=bindings(TINY_DQN))
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Resumed from step 20" in result.stderr and "AttributeError" not in result.stderr
  assert committed_steps(run) == [20, 40, 60]


@pytest.mark.parametrize("loss", ["markers", "bundles"])
def test_a_run_that_committed_never_restarts_from_zero(run, loss):
  if loss == "markers":
    for step in (20, 40, 60):
      _marker(run, step).unlink()
  else:
    shutil.rmtree(run / "train" / "bundles")
  before = _tree(run)
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "new --root_dir" in line
  assert "Training from step 0" not in result.stderr
  assert _tree(run) == before


def test_complete_run_with_a_damaged_newest_bundle(run):
  state = run / "train/bundles/0000000060/state.json"
  state.write_bytes(b"\xff\xfe" + state.read_bytes()[2:])
  report = status(run)
  assert not report["complete"] and report["train_step"] == 40
  assert report["damaged_checkpoints"][0]["step"] == 60
  exported = subprocess.run(
      [sys.executable, "-m", "trainer.export", f"--root_dir={run}", f"--output={run.parent / 'x'}"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert exported.returncode == errors.EXIT_RUN_DIR, exported.stderr[-3000:]
  (line,) = [x for x in exported.stderr.splitlines() if x.startswith("trainer.export: error:")]
  assert "bundle 60 is damaged" in line and "--step=N" in line
  by_step = subprocess.run(
      [sys.executable, "-m", "trainer.export", f"--root_dir={run}", f"--output={run.parent / 'x'}",
       "--step=40"], cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
  assert by_step.returncode == 0, by_step.stderr[-3000:]
  result = run_train(run, gin_bindings=FINISHED)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "Already complete" not in result.stderr and "Resumed from step 40" in result.stderr
  assert status(run)["complete"] and committed_steps(run) == [20, 40, 60]


def test_export_beside_a_live_job(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_bindings=bindings(
      TINY_DQN, train__num_iterations=100_000, train__checkpoint_interval=2,
      train__keep_checkpoints=1, train__eval_interval=0, train__log_interval=1000),
      log_path=tmp_path / "log")
  try:
    wait_for(lambda: committed_steps(root) and (root / "policies").is_dir(), 240, "a bundle", proc)
    link = tmp_path / "link"
    link.symlink_to(root / "policies")
    into_run = subprocess.run(
        [sys.executable, "-m", "trainer.export", f"--root_dir={root}", f"--output={link}"],
        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert into_run.returncode == errors.EXIT_RUN_DIR, into_run.stderr[-3000:]
    assert "is in use by" in into_run.stderr
    # Bundles are pruned every 2 steps while these read them.
    for i in range(2):
      elsewhere = subprocess.run(
          [sys.executable, "-m", "trainer.export", f"--root_dir={root}",
           f"--output={tmp_path / f'out{i}'}"],
          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=300)
      assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
      assert "Traceback" not in elsewhere.stderr
      assert list((tmp_path / f"out{i}").glob("[0-9]" * 10))
    assert proc.poll() is None, "the job died beside the exports"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == errors.EXIT_PREEMPTED
  finally:
    proc.kill()
  log = (tmp_path / "log").read_text()
  assert "failed" not in log, log[-3000:]


def test_lock_file_that_is_a_link_or_a_directory(run, tmp_path):
  target = tmp_path / "precious.txt"
  target.write_text("do not overwrite")
  (run / "run.lock").unlink()
  (run / "run.lock").symlink_to(target)
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "is a symbolic link" in line
  assert target.read_text() == "do not overwrite"
  (run / "run.lock").unlink()
  (run / "run.lock").mkdir()
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "is a directory" in line


def test_temporaries_left_by_kills_are_cleaned(run):
  litter = [run / "train/checkpoints/checkpoint.tmp-4242", run / "config.gin.tmp-4243",
            run / "policies/index.json.tmp-4244"]
  for path in litter:
    path.write_text("left by a SIGKILL")
  result = run_train(run, gin_bindings=bindings(TINY_DQN, train__num_iterations=80))
  assert result.returncode == 0, result.stderr[-3000:]
  assert [p for p in litter if p.exists()] == []


def test_reverb_checkpoint_on_a_full_disk_is_exit_3_and_leaves_nothing(tmp_path):
  root = tmp_path / "run"
  # A Reverb checkpoint of ~1,500 items is larger than the limit; the agent's files are not.
  result = run_train(root, gin_bindings=bindings(
      TINY_DQN, **{k.replace(".", "__"): v for k, v in REVERB_BINDINGS.items()},
      train__initial_collect_steps=1500), max_file_bytes=40_000)
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  (line,) = _error_lines(result.stderr)
  assert "cannot write checkpoint bundle 20" in line and "File too large" in line
  assert "Traceback" not in result.stderr
  assert committed_steps(root) == []
  assert [p.name for p in (root / "train/bundles").iterdir()] == []
  assert list((root / "train/reverb").iterdir()) == []
  assert not list((root / "train/checkpoints").glob("ckpt-*"))


def test_sigterm_during_the_imports_exits_75(tmp_path):
  proc = subprocess.Popen(
      [sys.executable, "-m", "trainer.train", f"--root_dir={tmp_path / 'run'}",
       f"--gin_file={REPO / 'configs/dqn_cartpole.gin'}"],
      cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    sigterm_bit = 1 << (signal.SIGTERM - 1)

    def handler_installed() -> bool:
      with open(f"/proc/{proc.pid}/status") as f:
        caught = next(line for line in f if line.startswith("SigCgt:"))
      return bool(int(caught.split()[1], 16) & sigterm_bit)

    wait_for(handler_installed, 60, "a SIGTERM handler", proc)
    with open(f"/proc/{proc.pid}/maps") as f:
      tensorflow_loaded = "tensorflow" in f.read()
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert not tensorflow_loaded, "the handler came after TensorFlow was imported"
  assert proc.returncode == errors.EXIT_PREEMPTED, output[-3000:]
