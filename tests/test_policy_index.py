"""Retention and pointers of the policy directory, on real directories."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env
from trainer.policies import policy_index

pytestmark = pytest.mark.fast


def _make_exports(policy_dir, returns: dict[int, float | None]):
  for step, ret in returns.items():
    export = policy_dir / f"{step:010d}"
    export.mkdir(parents=True)
    (export / "metadata.json").write_text(json.dumps({"train_step": step,
                                                      "eval_average_return": ret}))


def test_retention_keeps_last_best_every_and_pointers(tmp_path):
  returns = {10: 5.0, 20: 50.0, 30: 9.0, 40: 7.0, 50: None, 60: 8.0, 70: 6.0}
  _make_exports(tmp_path, returns)
  retention = policy_index.Retention(keep_last=2, keep_best=1, keep_every=30)
  index = policy_index.write_index(str(tmp_path), retention)
  kept = [e["train_step"] for e in index["exports"]]
  assert kept == [20, 30, 60, 70]  # best (20), every 30th (30, 60), last two (60, 70)
  assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
      f"{s:010d}" for s in kept]
  assert index["latest"] == "0000000070" and index["best"] == "0000000020"
  assert (tmp_path / "LATEST").read_text().strip() == "0000000070"
  assert policy_index.read_pointer(str(tmp_path), "BEST") == str(tmp_path / "0000000020")


def test_pointers_never_name_a_deleted_export(tmp_path):
  _make_exports(tmp_path, {10: 100.0, 20: 1.0, 30: 2.0})
  index = policy_index.write_index(str(tmp_path), policy_index.Retention(keep_last=1, keep_best=0))
  assert [e["train_step"] for e in index["exports"]] == [10, 30]  # best is kept even at keep_best=0
  for pointer in ("LATEST", "BEST"):
    assert (tmp_path / (tmp_path / pointer).read_text().strip()).is_dir()


def test_hidden_and_foreign_directories_are_not_listed(tmp_path):
  _make_exports(tmp_path, {10: 1.0})
  (tmp_path / ".tmp-0000000020").mkdir()
  (tmp_path / "0000000030").mkdir()  # no metadata: not an export
  assert [e["train_step"] for e in policy_index.list_exports(str(tmp_path))] == [10]


def test_export_grid_follows_interval_changes_and_the_final_step():
  assert policy_index.export_grid([[0, 15]], 60) == [15, 30, 45, 60]
  assert policy_index.export_grid([[0, 15]], 59) == [15, 30, 45]
  # Resumed at 40 with exports every 25: the new grid starts above 40.
  assert policy_index.export_grid([[0, 15], [40, 25]], 100) == [15, 30, 50, 75, 100]
  assert policy_index.export_grid([[0, 30]], 70, final_step=70) == [30, 60, 70]
  assert policy_index.export_grid([], 70) == []


def test_missing_exports_tell_pruned_from_lost(tmp_path):
  _make_exports(tmp_path, {10: 1.0, 20: 2.0, 30: 3.0, 40: 4.0})
  policy_index.write_index(str(tmp_path), policy_index.Retention(keep_last=2, keep_best=0))
  assert json.loads((tmp_path / "index.json").read_text())["pruned"] == [10, 20]
  assert policy_index.missing_exports(str(tmp_path), [10, 20, 30, 40]) == []
  shutil.rmtree(tmp_path / "0000000040")  # lost, not pruned
  policy_index.write_index(str(tmp_path))
  assert policy_index.missing_exports(str(tmp_path), [10, 20, 30, 40, 50]) == [40, 50]
  (tmp_path / "index.json").write_text('{"pruned": 5}')  # hand-edited: no traceback
  assert policy_index.missing_exports(str(tmp_path), [10, 30]) == [10]
  assert policy_index.write_index(str(tmp_path))["pruned"] == []


KILL_DURING_RETENTION = r"""
import os, signal, sys
from trainer.policies import policy_index
real_delete = policy_index._delete
def delete_then_die(policy_dir, export):
  real_delete(policy_dir, export)
  os.kill(os.getpid(), signal.SIGKILL)  # the machine dies in the middle of retention
policy_index._delete = delete_then_die
policy_index.write_index(sys.argv[1], policy_index.Retention(keep_last=1, keep_best=0))
"""


def test_kill_during_retention_leaves_an_index_that_is_true(tmp_path):
  _make_exports(tmp_path, {10: 1.0, 20: 2.0})
  policy_index.write_index(str(tmp_path))  # indexed: 10, 20
  _make_exports(tmp_path, {30: 3.0})  # the newest export, renamed into place
  proc = subprocess.run([sys.executable, "-c", KILL_DURING_RETENTION, str(tmp_path)],
                        cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=60)
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  index = json.loads((tmp_path / "index.json").read_text())
  listed = [e["path"] for e in index["exports"]]
  assert all((tmp_path / name).is_dir() for name in listed), (listed, os.listdir(tmp_path))
  assert index["latest"] == "0000000030" and "0000000030" in listed
  assert (tmp_path / "LATEST").read_text().strip() == "0000000030"
