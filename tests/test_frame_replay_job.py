"""The frame replay under a real pixel job (Atari Pong through ALE, small frames): a SIGTERM
commits and exits 75, the rerun resumes with the replay it saved, and the segments on disk are
exactly those the kept bundles refer to."""

import json
import signal
import subprocess
import sys

from tests.conftest import (
  CONFIGS,
  REPO,
  bindings,
  cli_env,
  committed_steps,
  run_train,
  start_train,
  status,
  wait_for,
)
from trainer import errors
from trainer.rundir import layout

ATARI = (str(CONFIGS / "dqn_atari.gin"),)
# dqn_atari.gin shrunk: 20x20 frames, a small conv net, a replay of 512 steps in segments of
# 64, so a few hundred agent steps fill segments, tails and a ring lap.
SMALL = {
    "create_atari_environment.screen_size": 20,
    "create_atari_environment.max_episode_frames": 400,  # episodes of ~100 agent steps
    "create_dqn_agent.conv_layer_params": ((8, 4, 2),),
    "create_dqn_agent.fc_layer_params": (16,),
    "create_frame_replay.capacity": 512,
    "create_frame_replay.segment_steps": 64,
    "train.initial_collect_steps": 64,
    "train.batch_size": 8,
    "train.checkpoint_interval": 40,  # 160 agent steps
    "train.policy_export_interval": 40,
    "train.eval_interval": 0,
    "train.log_interval": 40,
    "train.summary_interval": 40,
    "train.keep_checkpoints": 2,
}


def _shared_on_disk(root) -> set[str]:
  return {str(p.relative_to(root)) for p in (root / layout.SHARED_DIR).rglob("*") if p.is_file()}


def _referenced(root) -> set[str]:
  refs = set()
  for marker in (root / layout.BUNDLE_DIR).glob(f"*/{layout.COMMIT_MARKER}"):
    refs |= set(json.loads(marker.read_text())["shared"])
  return refs


def test_a_pixel_job_on_the_frame_replay_stops_on_sigterm_and_resumes_with_its_replay(tmp_path):
  root = tmp_path / "run"
  proc = start_train(root, gin_files=ATARI, log_path=tmp_path / "first.log",
                     gin_bindings=bindings(SMALL, train__num_iterations=100_000))
  try:
    wait_for(lambda: len(committed_steps(root)) >= 3, 240, "three committed bundles", proc)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=120)
  finally:
    proc.kill()
  log = (tmp_path / "first.log").read_text()
  assert rc == errors.EXIT_PREEMPTED, log[-3000:]
  stopped = status(root)
  assert stopped["replay_size"] == 512  # full: the ring went round at least once
  assert stopped["replay_bytes"] > 0
  # Retention kept 2 bundles; the segments on disk are exactly those they refer to,
  # and the newest bundle shares segments with the one before it.
  assert _shared_on_disk(root) == _referenced(root)
  markers = sorted((root / layout.BUNDLE_DIR).glob(f"*/{layout.COMMIT_MARKER}"))
  older, newer = (set(json.loads(m.read_text())["shared"]) for m in markers[-2:])
  assert older & newer

  total = stopped["train_step"] + 20
  resumed = run_train(root, gin_files=ATARI, gin_bindings=bindings(
      SMALL, train__num_iterations=total))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert (f"Resumed from step {stopped['train_step']}: replay size {stopped['replay_size']}, "
          f"env steps {stopped['env_steps']}") in resumed.stderr
  assert "skipping the initial collect" in resumed.stderr
  assert status(root)["complete"]
  assert _shared_on_disk(root) == _referenced(root)
  shown = subprocess.run([sys.executable, "-m", "trainer.status", f"--root_dir={root}"],
                         cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
  assert "replay size     512 items, " in shown.stdout and " MiB on disk" in shown.stdout


def test_a_damaged_segment_falls_back_to_the_bundle_before_it(tmp_path):
  root = tmp_path / "run"
  first = run_train(root, gin_files=ATARI, gin_bindings=bindings(SMALL, train__num_iterations=80))
  assert first.returncode == 0, first.stderr[-3000:]
  markers = sorted((root / layout.BUNDLE_DIR).glob(f"*/{layout.COMMIT_MARKER}"))
  older, newer = (set(json.loads(m.read_text())["shared"]) for m in markers[-2:])
  victim = root / sorted(newer - older)[0]  # a segment only the newest bundle refers to
  data = bytearray(victim.read_bytes())
  data[len(data) // 2] ^= 0xFF
  victim.write_bytes(bytes(data))
  resumed = run_train(root, gin_files=ATARI, gin_bindings=bindings(SMALL, train__num_iterations=100))
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"{victim.relative_to(root)} fails its checksum" in resumed.stderr
  assert "Resumed from step 40" in resumed.stderr
  assert status(root)["complete"]
  assert list((root / layout.BUNDLE_DIR).glob("0000000080.damaged-*"))


def _launch(root, total, log):
  cmd = [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", f"--gin_file={ATARI[0]}",
         "--collectors=1",
         *(f"--gin_bindings={b}" for b in bindings(SMALL, train__num_iterations=total,
                                                   replay_shards__shards=2))]
  with open(log, "w") as f:
    return subprocess.run(cmd, cwd=REPO, env=cli_env(), stdout=f, stderr=subprocess.STDOUT,
                          timeout=600).returncode


def test_the_roles_run_a_pixel_job_on_the_frame_layout_and_resume_its_replay(tmp_path):
  """dqn_atari.gin as roles: the server's tables hold a frame a step (the learner rebuilds the
  stacks), the job completes, and a rerun to a larger total restores the server's replay in
  that layout and trains on."""
  root = tmp_path / "run"
  assert _launch(root, 40, tmp_path / "first.log") == errors.EXIT_OK, (
      (tmp_path / "first.log").read_text()[-3000:])
  first = status(root)
  assert first["complete"] and first["train_step"] == 40 and first["replay_size"] > 0, first
  server_log = (root / "roles" / "logs" / "replay_server.log").read_text()
  assert "4-frame stacks stored a frame a step" in server_log, server_log[-2000:]
  assert _launch(root, 80, tmp_path / "second.log") == errors.EXIT_OK, (
      (tmp_path / "second.log").read_text()[-3000:])
  learner_log = (root / "roles" / "logs" / "learner.log").read_text()
  assert "Resumed from step 40: replay size" in learner_log, learner_log[-2000:]
  restored = (root / "roles" / "logs" / "replay_server.log").read_text()
  assert "Table uniform_table.0 and" in restored and "Table uniform_table.1 and" in restored
  second = status(root)
  assert second["complete"] and second["train_step"] == 80
  assert second["replay_size"] > first["replay_size"]
  assert committed_steps(root)[-1] == 80
