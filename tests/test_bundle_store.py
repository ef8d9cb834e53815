"""The bundle store's commit, verify, fallback and retention, on real files (no TensorFlow)."""

import json
import os

import pytest

from trainer import errors
from trainer.checkpoint.bundle_store import BundleStore
from trainer.rundir import layout
from trainer.rundir.run_lock import run_dir_holding

pytestmark = pytest.mark.fast


def _commit(root, step: int, store: BundleStore | None = None) -> BundleStore:
  """Writes bundle `step` as a job does: agent checkpoint files, then parts, then commit."""
  store = store or BundleStore(str(root), keep=3)
  path = store.begin(step)
  prefix = layout.agent_checkpoint_prefix(str(root), step)
  for suffix in (".index", ".data-00000-of-00001"):
    with open(prefix + suffix, "w") as f:
      f.write(f"agent {step}{suffix}")
  with open(os.path.join(path, layout.STATE_JSON), "w") as f:
    json.dump({"step": step}, f)
  store.commit(step, {"train_step": step})
  return store


def _marker(root, step: int):
  return root / layout.BUNDLE_DIR / layout.step_name(step) / layout.COMMIT_MARKER


def _files(root) -> set[str]:
  return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_commit_is_a_rename_of_a_complete_directory_and_is_journaled(tmp_path):
  store = _commit(tmp_path, 10)
  bundle = store.latest_valid()
  assert bundle.step == 10 and store.verify(bundle) is None
  manifest = json.loads(_marker(tmp_path, 10).read_text())
  assert "train/bundles/0000000010/state.json" in manifest["files"]
  assert "train/checkpoints/ckpt-10.index" in manifest["files"]
  assert not list((tmp_path / layout.BUNDLE_DIR).glob(".tmp-*"))
  assert json.loads((tmp_path / layout.LAST_COMMIT_FILE).read_text())["step"] == 10


def test_interrupted_writes_and_temporaries_are_cleaned(tmp_path):
  store = _commit(tmp_path, 10)
  store.begin(20)  # killed before the commit: hidden directory, no marker
  (tmp_path / "train/checkpoints/ckpt-20.index").write_text("orphan")
  (tmp_path / "train/checkpoints/checkpoint.tmp-12345").write_text("litter")
  (tmp_path / "config.gin.tmp-999").write_text("litter")
  store.clean_partial()
  assert _files(tmp_path) == {
      "last_commit.json", "train/checkpoints/checkpoint", "train/checkpoints/ckpt-10.index",
      "train/checkpoints/ckpt-10.data-00000-of-00001", "train/bundles/0000000010/state.json",
      "train/bundles/0000000010/COMMITTED"}
  assert store.latest_valid().step == 10


@pytest.mark.parametrize("marker", ['{"files": {"tr', "[1, 2, 3]", '"text"',
                                    '{"format": 1, "step": 30, "summary": {}, "files": {}}', None])
def test_damaged_marker_is_set_aside_with_every_file(tmp_path, marker):
  store = _commit(tmp_path, 10)
  _commit(tmp_path, 20, store)
  _commit(tmp_path, 30, store)
  if marker is None:
    _marker(tmp_path, 30).unlink()
  else:
    _marker(tmp_path, 30).write_text(marker)
  before = _files(tmp_path)
  store.clean_partial()  # never deletes a numbered bundle, whatever its marker
  assert _files(tmp_path) == before
  assert [b.step for b in store.committed() if b.problem] == [30]
  assert store.latest_valid().step == 20
  aside = [p for p in (tmp_path / layout.BUNDLE_DIR).iterdir() if ".damaged-" in p.name]
  assert len(aside) == 1 and aside[0].name.startswith("0000000030")
  assert {p.name for p in aside[0].iterdir()} >= {"state.json", "ckpt-30.index",
                                                  "ckpt-30.data-00000-of-00001"}
  assert len(_files(tmp_path)) == len(before)  # moved, not deleted


def test_no_bundle_verifies_or_all_are_gone_is_an_error(tmp_path):
  store = _commit(tmp_path, 10)
  _commit(tmp_path, 20, store)
  for step in (10, 20):
    _marker(tmp_path, step).write_text("{")
  before = _files(tmp_path)
  with pytest.raises(errors.RunDirError, match="no checkpoint bundle .* verifies"):
    store.latest_valid()
  assert _files(tmp_path) == before
  for _ in range(2):  # every bundle deleted: the journal still tells
    store.delete(store.committed()[0])
  with pytest.raises(errors.RunDirError, match="committed checkpoint bundle 20 before"):
    store.latest_valid()


def test_checksum_failure_falls_back(tmp_path):
  store = _commit(tmp_path, 10)
  _commit(tmp_path, 20, store)
  (tmp_path / "train/checkpoints/ckpt-20.index").write_text("bit rot")
  bundle, damaged = store.newest_verified()
  assert bundle.step == 10 and [(b.step, "checksum" in p or "bytes" in p) for b, p in damaged] == [
      (20, True)]


def test_retention_keeps_the_newest_and_hides_before_deleting(tmp_path):
  store = BundleStore(str(tmp_path), keep=2)
  for step in (10, 20, 30, 40):
    _commit(tmp_path, step, store)
  assert [b.step for b in store.committed()] == [30, 40]
  assert not list((tmp_path / "train/checkpoints").glob("ckpt-10.*"))
  state = (tmp_path / "train/checkpoints/checkpoint").read_text()
  assert 'model_checkpoint_path: "ckpt-40"' in state


@pytest.mark.parametrize("summary", [{"train_step": "30"}, {"train_step": 30, "env_steps": "1"},
                                     {"train_step": 30, "export_schedule": [[0]]},
                                     {"train_step": 30, "last_eval_return": "high"}])
def test_malformed_summary_is_damage(tmp_path, summary):
  store = _commit(tmp_path, 10)
  _commit(tmp_path, 30, store)
  manifest = json.loads(_marker(tmp_path, 30).read_text())
  _marker(tmp_path, 30).write_text(json.dumps({**manifest, "summary": summary}))
  bundle, damaged = store.newest_verified()
  assert bundle.step == 10 and [b.step for b, _ in damaged] == [30]


def test_a_file_where_a_bundle_should_be_is_set_aside(tmp_path):
  store = _commit(tmp_path, 10)
  (tmp_path / layout.BUNDLE_DIR / layout.step_name(20)).write_text("not a bundle")
  assert store.latest_valid().step == 10
  (aside,) = [p for p in (tmp_path / layout.BUNDLE_DIR).iterdir() if ".damaged-" in p.name]
  assert (aside / layout.step_name(20)).read_text() == "not a bundle"


def test_a_run_is_found_by_its_config_or_its_lock(tmp_path):
  run = tmp_path / "run"
  (run / "policies").mkdir(parents=True)
  (run / "run.lock").write_text("{}")  # a new job: lock taken, config not written yet
  link = tmp_path / "link"
  link.symlink_to(run / "policies")
  assert run_dir_holding(str(link), str(tmp_path / "other")) == str(run.resolve())
  assert run_dir_holding(str(tmp_path / "elsewhere"), str(run)) is None


@pytest.mark.fast
def test_committing_loads_no_tensorflow(tmp_path):
  """The store is read and written by `trainer.status` and the fast tests, which
  load no TensorFlow; its checkpoint state file is written without it."""
  import pathlib
  import subprocess
  import sys
  code = ("import sys, pathlib; from tests.test_bundle_store import _commit; "
          f"root = pathlib.Path({str(tmp_path)!r}); store = _commit(root, 10); "
          "_commit(root, 20, store); store.point_tf_state_at(10); "
          "assert 'tensorflow' not in sys.modules, 'the bundle store imported tensorflow'")
  result = subprocess.run([sys.executable, "-c", code], cwd=pathlib.Path(__file__).parents[1],
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]

