"""Writes that fail for lack of space, for real: a per-process file-size limit.

Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG, as a
full disk fails with ENOSPC: the job sees a real I/O error from the kernel.
"""

import json

from tests.conftest import TINY_DQN, bindings, committed_steps, run_train, status
from trainer import errors

# A 100k-transition uniform replay checkpoint is ~4.8 MB; exports are ~80 KB.
BIG_REPLAY = bindings(TINY_DQN, create_uniform_replay__capacity=100_000)
ONE_MB = 1 << 20


def test_failed_checkpoint_keeps_the_previous_bundle_and_exits_non_zero(tmp_path):
  root = tmp_path / "run"
  first = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=20,
                                                create_uniform_replay__capacity=100_000))
  assert first.returncode == 0, first.stderr
  assert committed_steps(root) == [20]
  manifest = (root / "train/bundles/0000000020/COMMITTED").read_text()

  full = run_train(root, gin_bindings=BIG_REPLAY, max_file_bytes=ONE_MB)
  assert full.returncode == errors.EXIT_RUN_DIR, full.stderr[-3000:]
  error = [line for line in full.stderr.splitlines() if line.startswith("trainer: error:")]
  assert len(error) == 1
  assert "cannot write checkpoint bundle 40" in error[0]
  assert "the previous bundle (20) is intact" in error[0]
  assert committed_steps(root) == [20]
  assert not (root / "train/bundles/0000000040").exists()
  assert not list((root / "train/checkpoints").glob("ckpt-40.*"))
  assert (root / "train/bundles/0000000020/COMMITTED").read_text() == manifest
  assert [e["train_step"] for e in status(root)["exports"]] == [20, 30]  # 30 came before 40

  # With space again, the same command resumes from the intact bundle and finishes.
  again = run_train(root, gin_bindings=BIG_REPLAY)
  assert again.returncode == 0, again.stderr
  assert "Resumed from step 20" in again.stderr
  assert status(root)["complete"]


def test_failed_export_stops_before_the_next_bundle_and_the_rerun_writes_it(tmp_path):
  root = tmp_path / "run"
  # Bundles (~50 KB with a 1,000-step replay) fit under 60 KB; a SavedModel (~70 KB) does not.
  small = bindings(TINY_DQN, create_uniform_replay__capacity=1000)
  result = run_train(root, gin_bindings=small, max_file_bytes=60_000)
  assert result.returncode == errors.EXIT_RUN_DIR, result.stderr[-3000:]
  error = [line for line in result.stderr.splitlines() if line.startswith("trainer: error:")]
  assert len(error) == 1
  assert "cannot write the policy export of step 30" in error[0]
  assert "no checkpoint past it was committed (the last is 20)" in error[0]
  assert committed_steps(root) == [20]  # bundle 40 would have outrun export 30
  names = [p.name for p in (root / "policies").iterdir()]
  assert not [n for n in names if n.isdigit() or n.startswith(".")], names  # nothing partial
  index = json.loads((root / "policies" / "index.json").read_text())
  assert index["exports"] == [] and index["latest"] is None

  # With space again, the rerun trains through step 30 again and writes its export.
  again = run_train(root, gin_bindings=small)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resumed from step 20" in again.stderr
  final = status(root)
  assert final["complete"] and [e["train_step"] for e in final["exports"]] == [30, 60]
  assert final["exports_missing"] == []
