"""The chaos suite's short version: a few random SIGKILLs, then run to completion."""

import subprocess
import sys

from tests.conftest import REPO, cli_env


def test_chaos_short(tmp_path):
  out = subprocess.run(
      [sys.executable, "scripts/chaos.py", "--kills=2", "--backend=both", "--seed=1",
       f"--workdir={tmp_path}", "--max_delay=3"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900)
  summary = out.stdout.strip().splitlines()[-1]
  assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
  assert summary.startswith("kills: 4, failed resumes: 0, unreadable exports: 0, grid exports "
                            "missing: 0, wrong indexes: 0"), summary
  assert "failures: 0" in summary


def test_chaos_roles_short(tmp_path):
  """Roles mode: a collector, the server and the learner (seed 1's draws) SIGKILLed at random
  moments of a job run by trainer.launch; SIGTERM; the rerun completes."""
  out = subprocess.run(
      [sys.executable, "scripts/chaos_roles.py", "--kills=3", "--seed=1", f"--workdir={tmp_path}"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900)
  summary = out.stdout.strip().splitlines()[-1]
  assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
  assert "kills: 3 " in summary and "failures: 0" in summary, summary


def test_chaos_object_storage_short(tmp_path):
  """Object-storage mode: a gs:// job (GCS emulator) SIGKILLed during start-up, uploads,
  marker writes or training (seed 2's draws), then run to completion."""
  out = subprocess.run(
      [sys.executable, "scripts/chaos_gcs.py", "--kills=1", "--seed=2", f"--workdir={tmp_path}",
       "--max_delay=3"],
      cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=900)
  summary = out.stdout.strip().splitlines()[-1]
  assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
  assert summary.startswith("object storage: kills: 1, failed resumes: 0, unreadable exports: 0, "
                            "grid exports missing: 0, wrong indexes: 0"), summary
  assert "failures: 0" in summary
