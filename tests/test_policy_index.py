"""Retention and pointers of the policy directory, on real directories."""

import json

from trainer import policy_index


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
