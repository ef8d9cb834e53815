"""Writes that fail for lack of space, for real: a per-process file-size limit.

Python ignores SIGXFSZ, so a write past RLIMIT_FSIZE fails with EFBIG, as a
full disk fails with ENOSPC: the job sees a real I/O error from the kernel.
"""

import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import reverb
import tensorflow as tf

from tests.conftest import DQN_CONFIG, REPO, TINY_DQN, bindings, cli_env, committed_steps, run_train, status
from trainer import errors
from trainer.replay.base import ReplaySaveError
from trainer.replay.layout import ReplayLayout
from trainer.replay.reverb import ReverbReplay
from trainer.rundir import layout

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


# Roles: a replay of ~6,200 items checkpoints to ~240 KB files; exports are ~80 KB.
ROLES = bindings(TINY_DQN, train__initial_collect_steps=6000, train__eval_interval=0,
                 create_uniform_replay__capacity=100_000)


def run_launch(root, gin_bindings, max_file_bytes=None):
  """trainer.launch with one collector; `max_file_bytes` caps every file each role writes."""

  def limit():
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

  cmd = [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
         "--collectors=1", *[f"--gin_bindings={b}" for b in gin_bindings]]
  return subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                        timeout=300, preexec_fn=limit if max_file_bytes else None)


def test_roles_failed_server_checkpoint_stops_launch_with_3_and_leaves_nothing_partial(tmp_path):
  """The replay server writes the replay's checkpoint: a full disk there is the
  learner's one line and exit 3, and launch stops instead of restarting it."""
  root = tmp_path / "run"
  first = run_launch(root, [*ROLES, "train.num_iterations = 20"])
  assert first.returncode == 0, first.stderr[-3000:]
  assert committed_steps(root) == [20]
  manifest = (root / "train/bundles/0000000020/COMMITTED").read_text()

  full = run_launch(root, ROLES, max_file_bytes=150_000)
  assert full.returncode == errors.EXIT_RUN_DIR, full.stderr[-3000:]
  error = [line for line in full.stderr.splitlines() if "error:" in line]
  assert len(error) == 1, error
  assert "cannot write checkpoint bundle 40" in error[0]
  assert "the previous bundle (20) is intact. Free space" in error[0]
  assert "Traceback" not in full.stderr and "Restarting learner" not in full.stderr
  assert committed_steps(root) == [20]
  assert not [p.name for p in (root / "train/bundles").iterdir() if p.name != "0000000020"]
  assert os.listdir(root / layout.REVERB_SERVER_DIR) == []  # the server's partial checkpoint
  assert (root / "train/bundles/0000000020/COMMITTED").read_text() == manifest

  again = run_launch(root, ROLES)
  assert again.returncode == 0, again.stderr[-3000:]
  assert "Resumed from step 20" in again.stderr
  assert status(root)["complete"]


@pytest.fixture
def full_scratch(tmp_path):
  """The replay server role's scratch dir on a 64 KB tmpfs: a real ENOSPC."""
  scratch = tmp_path / "run" / layout.REVERB_SERVER_DIR
  scratch.mkdir(parents=True)
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(scratch)],
                         capture_output=True, text=True)
  if mount.returncode:
    pytest.skip(f"cannot mount a tmpfs here (needs root): {mount.stderr.strip()}")
  try:
    yield scratch
  finally:
    subprocess.run(["umount", str(scratch)], check=True)


def test_reverb_checkpoint_on_a_full_disk_is_a_save_error_and_leaves_nothing(full_scratch):
  """A full disk fails Reverb's checkpoint with RESOURCE_EXHAUSTED, which its
  client raises as IndexError (a file too large is a RuntimeError)."""
  spec = tf.TensorSpec([256], tf.float32)
  table = reverb.Table("t", max_size=100, sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(),
                       rate_limiter=reverb.rate_limiters.MinSize(1),
                       signature=tf.TensorSpec([1, 256], tf.float32))
  server = reverb.Server([table], port=None,
                         checkpointer=reverb.checkpointers.DefaultCheckpointer(str(full_scratch)))
  replay = None
  try:
    client = reverb.Client(f"localhost:{server.port}")
    for _ in range(100):  # ~100 KB that does not compress
      client.insert(np.random.rand(1, 256).astype(np.float32), {"t": 1.0})
    run_dir = full_scratch.parents[1]
    replay = ReverbReplay(ReplayLayout("t", 100, spec, 1),
                          scratch_dir=str(run_dir / layout.REVERB_SCRATCH_DIR),
                          address=f"localhost:{server.port}", restore_dir=None, run_dir=str(run_dir))
    with pytest.raises(ReplaySaveError, match="No space left on device"):
      replay.save(str(run_dir / "bundle" / "replay"))
    assert os.listdir(full_scratch) == []
  finally:
    if replay is not None:
      replay.close()
    server.stop()
