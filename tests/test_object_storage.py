"""gs:// run directories, the storage layer on a real GCS emulator (no TensorFlow): the
lease, the commit protocol (objects, then the marker), fallback past damage, leftovers,
retention and shared segments uploaded once."""

import hashlib
import json
import os
import shutil
import socket
import subprocess

import pytest

from trainer import errors
from trainer.checkpoint.bundle_store import BundleStore
from trainer.rundir import hooks, layout
from trainer.storage import lease as lease_lib
from trainer.storage import transfer, urls
from trainer.storage.lease import Lease
from trainer.storage.mirror import Mirror
from trainer.storage.remote import RemoteRun

pytestmark = pytest.mark.fast

SEGMENT = "train/shared/frames/seg-0"


def test_urls_name_the_bucket_and_refuse_what_is_not_a_run(monkeypatch, tmp_path):
  assert urls.split("gs://bkt/a/b/") == ("bkt", "a/b")
  for bad, words in [("gs://bkt", "names a whole bucket"), ("gs://B_x/run", "not a bucket"),
                     ("gs://bkt/a//b", "empty, '.' or '..'")]:
    with pytest.raises(ValueError, match=words):
      urls.split(bad)
  monkeypatch.setenv(urls.STAGING_ENV, str(tmp_path))
  one, two = urls.staging_dir("gs://bkt/a/run"), urls.staging_dir("gs://bkt/a_run")
  assert one.startswith(str(tmp_path)) and one != two
  assert urls.staging_dir("gs://bkt/a/run/") == one


def _exited_pid() -> int:
  proc = subprocess.Popen(["true"])
  proc.wait()
  return proc.pid


def _put_lease(run: RemoteRun, **record) -> None:
  run.bucket.write(run.name(lease_lib.LEASE_FILE), json.dumps(
      {"since": "2026-01-01T00:00:00", **record}).encode())


def test_lease_refuses_a_second_job_naming_it_and_takes_over_the_dead(gcs_root, monkeypatch):
  run = RemoteRun(gcs_root)
  name = run.name(lease_lib.LEASE_FILE)
  first = Lease(run.bucket, name, run.url)
  first.acquire()
  with pytest.raises(errors.RunDirError) as refused:
    Lease(run.bucket, name, run.url).acquire()
  assert f"in use by host {socket.gethostname()}, pid {os.getpid()}" in str(refused.value)
  assert "stop that job first, or use another --root_dir" in str(refused.value)
  first.release()
  assert run.bucket.stat(name) is None  # released: deleted

  # A lease of a process of this host that is gone is taken over at once.
  _put_lease(run, host=socket.gethostname(), pid=_exited_pid(), machine=lease_lib._MACHINE)
  taker = Lease(run.bucket, name, run.url)
  taker.acquire()
  assert json.loads(run.bucket.read(name)[0])["pid"] == os.getpid()
  taker.release()
  # ... but not one of another boot or pid namespace under the same host name: its pids
  # are not ours to judge (refused while it is renewed).
  _put_lease(run, host=socket.gethostname(), pid=_exited_pid(), machine="another-boot/1")
  with pytest.raises(errors.RunDirError, match="in use by host"):
    Lease(run.bucket, name, run.url).acquire()
  run.bucket.delete(name)

  # Another host's lease: refused while renewed, taken once older than its TTL.
  monkeypatch.setenv(lease_lib.TTL_ENV, "1")
  _put_lease(run, host="elsewhere", pid=1)
  import time
  time.sleep(1.2)
  late = Lease(run.bucket, name, run.url)
  late.acquire()
  late.release()


def test_a_holder_whose_lease_is_taken_stops_and_cannot_seal(gcs_root, monkeypatch):
  monkeypatch.setenv(lease_lib.TTL_ENV, "0.8")
  run = RemoteRun(gcs_root)
  name = run.name(lease_lib.LEASE_FILE)
  lost = []
  holder = Lease(run.bucket, name, run.url, on_lost=lost.append)
  holder.acquire()
  _put_lease(run, host="elsewhere", pid=1)  # another job took it over
  with pytest.raises(errors.RunDirError, match="lost the lease"):
    holder.check()
  import time
  deadline = time.monotonic() + 5
  while not lost and time.monotonic() < deadline:
    time.sleep(0.05)
  assert lost and "another job took it over" in lost[0]
  holder.release()  # its release leaves the new holder's lease alone
  assert json.loads(run.bucket.read(name)[0])["host"] == "elsewhere"


class _Recorder:
  """Wraps a bucket: the order of the writes."""

  def __init__(self, bucket):
    self.bucket, self.writes = bucket, []

  def __getattr__(self, name):
    return getattr(self.bucket, name)

  def upload(self, path, name):
    self.writes.append(name)
    self.bucket.upload(path, name)

  def write(self, name, data, **kwargs):
    self.writes.append(name)
    return self.bucket.write(name, data, **kwargs)


def _commit(staging: str, store: BundleStore, step: int, *, segment: bool = True) -> None:
  """A bundle as a job writes one: agent checkpoint, parts, a shared segment it refers to."""
  path = store.begin(step)
  prefix = layout.agent_checkpoint_prefix(staging, step)
  for suffix in (".index", ".data-00000-of-00001"):
    with open(prefix + suffix, "w") as f:
      f.write(f"agent {step}{suffix}")
  with open(os.path.join(path, layout.STATE_JSON), "w") as f:
    json.dump({"step": step}, f)
  if segment:
    seg = os.path.join(staging, SEGMENT)
    os.makedirs(os.path.dirname(seg), exist_ok=True)
    if not os.path.exists(seg):
      with open(seg, "wb") as f:
        f.write(b"frames" * 1000)
    data = open(seg, "rb").read()
    with open(os.path.join(path, layout.SHARED_REFS), "w") as f:
      json.dump({SEGMENT: {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}, f)
  store.commit(step, {"train_step": step})


def _mirrored(gcs_root, tmp_path):
  run = RemoteRun(gcs_root)
  recorder = _Recorder(run.bucket)
  run.bucket = recorder
  staging = str(tmp_path / "stage")
  os.makedirs(staging)
  mirror = Mirror(run, staging)
  hooks.register(staging, mirror)
  return run, recorder, staging, mirror


def test_each_commit_uploads_its_objects_then_the_marker_and_prunes_markers_first(gcs_root,
                                                                                   tmp_path):
  run, recorder, staging, mirror = _mirrored(gcs_root, tmp_path)
  store = BundleStore(staging, keep=2)
  os.makedirs(os.path.join(staging, "policies/0000000010"))
  with open(os.path.join(staging, "policies/0000000010/metadata.json"), "w") as f:
    f.write("{}")
  with open(os.path.join(staging, "policies/LATEST"), "w") as f:
    f.write("0000000010\n")
  try:
    for step in (10, 20, 30):
      _commit(staging, store, step)
    mirror.wait()
  finally:
    hooks.unregister(staging)
    mirror.close()
  writes = [w[len(run.prefix) + 1:] for w in recorder.writes]
  marker = writes.index("train/bundles/0000000010/COMMITTED")
  # Every object of bundle 10 (and the export, then its pointer) before its marker; the
  # journal after it.
  assert {"train/bundles/0000000010/state.json", "train/checkpoints/ckpt-10.index",
          SEGMENT, "policies/0000000010/metadata.json", "policies/LATEST"} <= set(writes[:marker])
  assert writes.index("policies/0000000010/metadata.json") < writes.index("policies/LATEST")
  assert writes.index(layout.LAST_COMMIT_FILE) > marker
  assert writes.count(SEGMENT) == 1  # immutable: uploaded once for the three bundles
  listing = run.listing()
  assert run.marker_steps(listing) == [20, 30]  # retention: keep=2
  assert not [rel for rel in listing if "bundles/0000000010" in rel or "ckpt-10." in rel]
  assert SEGMENT in listing
  assert [u["step"] for u in mirror.uploads] == [10, 20, 30]
  assert mirror.uploads[1]["shared_bytes"] == 0 < mirror.uploads[0]["shared_bytes"]


def _two_sealed_bundles(gcs_root, tmp_path) -> RemoteRun:
  """Bundles 10 and 20 committed in a staging directory and sealed in the bucket."""
  run, _, staging, mirror = _mirrored(gcs_root, tmp_path)
  store = BundleStore(staging, keep=3)
  try:
    for step in (10, 20):
      _commit(staging, store, step)
  finally:
    hooks.unregister(staging)
    mirror.close()
  return run


def test_resume_pulls_the_newest_bundle_that_verifies_and_sets_damage_aside(gcs_root, tmp_path):
  run = _two_sealed_bundles(gcs_root, tmp_path)
  # Bundle 20's state damaged in the bucket (same size), and an interrupted upload of 30.
  state = "train/bundles/0000000020/state.json"
  size = run.listing()[state].size
  run.bucket.write(run.name(state), b"x" * size)
  run.bucket.write(run.name("train/bundles/0000000030/state.json"), b"{}")
  run.bucket.write(run.name("train/checkpoints/ckpt-30.index"), b"half")

  target = str(tmp_path / "again")
  step, _ = transfer.pull_for_resume(run, target)
  assert step == 10
  local = BundleStore(target)
  assert [b.step for b in local.committed()] == [10] and local.verify(local.latest()) is None
  listing = run.listing()
  assert run.marker_steps(listing) == [10]
  aside = [rel for rel in listing if ".damaged-" in rel]
  assert any(rel.endswith("/state.json") for rel in aside)
  assert any(rel.endswith("/COMMITTED") for rel in aside)  # every object kept
  assert not [rel for rel in listing if "0000000030" in rel or "ckpt-30" in rel]
  assert SEGMENT in listing  # bundle 10 (and the damaged 20) refer to it


def test_a_resume_on_the_same_machine_reuses_staged_segments_that_verify(gcs_root, tmp_path):
  run, recorder, staging, mirror = _mirrored(gcs_root, tmp_path)
  store = BundleStore(staging, keep=3)
  try:
    _commit(staging, store, 10)
  finally:
    hooks.unregister(staging)
    mirror.close()
  downloads = []
  real = run.bucket.bucket.download
  run.bucket.bucket.download = lambda name, path: (downloads.append(name), real(name, path))
  with open(os.path.join(staging, "stale-litter"), "w") as f:
    f.write("from a killed job")
  assert transfer.pull_for_resume(run, staging)[0] == 10
  assert not os.path.exists(os.path.join(staging, "stale-litter"))
  assert run.name(SEGMENT) not in downloads  # staged before, intact
  with open(os.path.join(staging, SEGMENT), "wb") as f:
    f.write(b"X" * 6000)  # damaged here: downloaded again
  assert transfer.pull_for_resume(run, staging)[0] == 10
  assert run.name(SEGMENT) in downloads


def test_side_files_deleted_here_are_deleted_there_and_pointers_go_last(gcs_root, tmp_path):
  run, recorder, staging, mirror = _mirrored(gcs_root, tmp_path)
  hooks.unregister(staging)
  export = os.path.join(staging, "policies/0000000010")
  os.makedirs(export)
  with open(os.path.join(export, "metadata.json"), "w") as f:
    f.write("{}")
  with open(os.path.join(staging, "policies/.tmp-0000000020"), "w") as f:
    f.write("being written")
  mirror.sync()
  assert "policies/0000000010/metadata.json" in run.listing()
  assert not [rel for rel in run.listing() if ".tmp-" in rel]
  os.remove(os.path.join(export, "metadata.json"))
  mirror.sync()
  assert "policies/0000000010/metadata.json" not in run.listing()
  mirror.close()


def test_evaluations_copied_mid_append_read_without_the_cut_row(tmp_path):
  """The mirror may upload eval/returns.csv while a row is being appended."""
  from trainer.rundir import evals

  (tmp_path / "eval").mkdir()
  (tmp_path / "eval" / "returns.csv").write_text(
      "train_step,average_return,env_steps\n10,9.5,100\n20,12.0,200\n30")
  assert [r["train_step"] for r in evals.read(str(tmp_path))] == [10, 20]


def test_a_bad_gs_root_dir_is_one_line_naming_the_fix(gcs_root):
  import sys

  from tests.conftest import REPO, cli_env

  for url, code, words in [("gs://b", 2, "'b' is not a bucket name; pass --root_dir=gs://BUCKET/PATH"),
                           ("gs://no-such-bucket/run", 3, "there is no bucket gs://no-such-bucket: "
                            "create it (gcloud storage buckets create gs://no-such-bucket)"),
                           (gcs_root, 2, f"no run at {gcs_root} (no objects there)")]:
    out = subprocess.run([sys.executable, "-m", "trainer.status", f"--root_dir={url}"], cwd=REPO,
                         env=cli_env(), capture_output=True, text=True, timeout=60)
    lines = [line for line in out.stderr.splitlines() if "Warning" not in line
             and "warnings.warn" not in line]
    assert out.returncode == code and len(lines) == 1 and words in lines[0], out.stderr


def test_a_lease_write_that_landed_but_whose_reply_was_lost_is_adopted(gcs_root):
  run = RemoteRun(gcs_root)
  name = run.name(lease_lib.LEASE_FILE)
  lease = Lease(run.bucket, name, run.url)
  # The client's retry of our own create finds the object our first try wrote.
  run.bucket.write(name, json.dumps({"host": "h", "pid": 1, "since": "t",
                                     "token": lease.token}).encode())
  lease.acquire()
  lease.check()
  lease.release()
  assert run.bucket.stat(name) is None


def test_pointers_never_name_an_export_the_same_sync_deleted(gcs_root, tmp_path):
  run, _, staging, mirror = _mirrored(gcs_root, tmp_path)
  hooks.unregister(staging)
  for step in ("0000000010", "0000000020"):
    os.makedirs(os.path.join(staging, "policies", step))
    with open(os.path.join(staging, "policies", step, "metadata.json"), "w") as f:
      f.write("{}")
  latest = os.path.join(staging, "policies", "LATEST")
  with open(latest, "w") as f:
    f.write("0000000010\n")
  mirror.sync()
  # Retention removed export 10 after the pointers were read: it stays until they change.
  shutil.rmtree(os.path.join(staging, "policies", "0000000010"))
  mirror.sync()
  assert "policies/0000000010/metadata.json" in run.listing()
  with open(latest, "w") as f:
    f.write("0000000020\n")
  mirror.sync()
  assert "policies/0000000010/metadata.json" not in run.listing()
  mirror.close()


def test_a_step_whose_marker_does_not_read_keeps_its_objects(gcs_root, tmp_path):
  run = _two_sealed_bundles(gcs_root, tmp_path)
  run.bucket.write(run.name("train/bundles/0000000010/COMMITTED"), b"not json")
  assert transfer.pull_for_resume(run, str(tmp_path / "again"))[0] == 20
  listing = run.listing()
  assert "train/bundles/0000000010/state.json" in listing  # damaged, not a leftover
  assert "train/checkpoints/ckpt-10.index" in listing


def test_an_export_is_whole_in_the_bucket_once_its_metadata_is_there(gcs_root, tmp_path):
  """A bucket has no rename: an export's metadata.json goes up last, and an export cut short
  (no metadata) is neither pulled nor kept: the resumed job writes it again."""
  run, recorder, staging, mirror = _mirrored(gcs_root, tmp_path)
  hooks.unregister(staging)
  export = os.path.join(staging, "policies/0000000030")
  os.makedirs(os.path.join(export, "greedy"))
  for rel in ("metadata.json", "greedy/saved_model.pb"):
    with open(os.path.join(export, rel), "w") as f:
      f.write("x")
  mirror.sync()
  mirror.close()
  writes = [w[len(run.prefix) + 1:] for w in recorder.writes]
  assert writes.index("policies/0000000030/greedy/saved_model.pb") < writes.index(
      "policies/0000000030/metadata.json")
  run.bucket.delete(run.name("policies/0000000030/metadata.json"))  # as if killed before it
  target = tmp_path / "again"
  transfer.pull_for_resume(run, str(target))
  assert not (target / "policies" / "0000000030").exists()
  assert not [rel for rel in run.listing() if rel.startswith("policies/0000000030/")]


def test_an_export_retention_deletes_goes_metadata_first(gcs_root, tmp_path):
  run, _, staging, mirror = _mirrored(gcs_root, tmp_path)
  hooks.unregister(staging)
  export = os.path.join(staging, "policies/0000000015")
  os.makedirs(os.path.join(export, "collect"))
  for rel in ("metadata.json", "collect/saved_model.pb"):
    with open(os.path.join(export, rel), "w") as f:
      f.write("x")
  mirror.sync()
  deleted = []
  real = run.bucket.bucket.delete
  run.bucket.bucket.delete = lambda name, **kw: (deleted.append(name), real(name, **kw))
  shutil.rmtree(export)  # the exporter's retention
  mirror.sync()
  mirror.close()
  assert [d[len(run.prefix) + 1:] for d in deleted] == [
      "policies/0000000015/metadata.json", "policies/0000000015/collect/saved_model.pb"]
