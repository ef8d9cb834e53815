"""The commit protocol (trainer/checkpoint/committer.py) on fake parts, a fake
store and fake exports: the foreground and background commits, the export
invariant, the error mapping. No TensorFlow; a real job's commits:
tests/test_restore.py and tests/test_disk_full.py."""

import subprocess
import sys
import threading

import pytest

from tests.conftest import REPO
from trainer.checkpoint.bundle_store import Bundle
from trainer.checkpoint.committer import Committer
from trainer.errors import RunDirError

pytestmark = pytest.mark.fast


class FakeStore:
  """Bundles in memory: `begin` hands out a path, `commit` seals it."""

  def __init__(self, committed=()):
    self.committed = list(committed)
    self.begun: list[int] = []
    self.abandoned: list[int] = []

  def latest(self) -> Bundle | None:
    return Bundle(self.committed[-1], f"bundles/{self.committed[-1]}", {}) if self.committed else None

  def begin(self, step: int) -> str:
    self.begun.append(step)
    return f"bundles/.tmp-{step}"

  def commit(self, step: int, summary: dict) -> None:
    assert summary["step"] == step
    self.committed.append(step)

  def abandon(self, step: int) -> None:
    self.abandoned.append(step)


class FakeParts:
  """Records what is written; `replay_gate` holds the replay's write back."""

  def __init__(self):
    self.saved: list[tuple[int, bool]] = []
    self.replays: list[str] = []
    self.replay_gate = threading.Event()
    self.replay_gate.set()
    self.replay_error: BaseException | None = None

  def save(self, step: int, bundle_path: str, *, replay: bool = True) -> dict:
    self.saved.append((step, replay))
    if replay:
      self.save_replay(bundle_path)
    return {"step": step, "replay_size": 10, "env_steps": 100}

  def save_replay(self, bundle_path: str) -> None:
    assert self.replay_gate.wait(30), "the replay's write was never released"
    if self.replay_error is not None:
      raise self.replay_error
    self.replays.append(bundle_path)


class FakeExportError(RunDirError):
  def __init__(self, step: int, reason: str):
    super().__init__(f"export {step} failed")
    self.step, self.reason = step, reason


class FakeExports:
  def __init__(self):
    self.failed_step: int | None = None
    self.waits = 0

  def queued(self) -> list:
    return ["queued"]

  def wait(self) -> None:
    self.waits += 1
    if self.failed_step is not None:
      raise FakeExportError(self.failed_step, "No space left on device")

  def wait_for(self, queued: list, step: int) -> None:
    assert queued == ["queued"]
    self.wait()


def _committer(store, parts, exports, refreshed=None):
  return Committer("/runs/a", store, parts, exports, write_errors=(OSError,),
                   export_error=FakeExportError,
                   before_save=lambda: refreshed.append(True) if refreshed is not None else None)


def test_a_foreground_commit_writes_every_part_waits_for_the_exports_then_commits():
  store, parts, exports, refreshed = FakeStore(), FakeParts(), FakeExports(), []
  _committer(store, parts, exports, refreshed).commit(20)
  assert store.committed == [20] and parts.saved == [(20, True)]
  assert parts.replays == ["bundles/.tmp-20"] and exports.waits == 1 and refreshed == [True]


def test_a_background_commit_returns_before_the_replay_and_the_next_one_waits_for_it():
  store, parts, exports = FakeStore(), FakeParts(), FakeExports()
  committer = _committer(store, parts, exports)
  parts.replay_gate.clear()
  committer.commit(20, background=True)
  assert parts.saved == [(20, False)] and store.committed == []  # the replay is held back
  threading.Timer(0.2, parts.replay_gate.set).start()
  committer.commit(40)  # waits for bundle 20 first
  assert store.committed == [20, 40]
  assert parts.replays == ["bundles/.tmp-20", "bundles/.tmp-40"]


def test_a_failed_export_abandons_the_bundle_and_names_the_step():
  store, parts, exports = FakeStore([10]), FakeParts(), FakeExports()
  exports.failed_step = 15
  with pytest.raises(RunDirError, match=r"^cannot write the policy export of step 15 in /runs/a "
                     r"\(No space left on device\); no checkpoint past it was committed \(the "
                     r"last is 10\)") as raised:
    _committer(store, parts, exports).commit(20)
  assert isinstance(raised.value.__cause__, FakeExportError)
  assert store.committed == [10] and store.abandoned == [20]


def test_a_failed_part_abandons_the_bundle_and_names_the_step():
  store, parts, exports = FakeStore(), FakeParts(), FakeExports()
  parts.replay_error = OSError(28, "No space left on device")
  with pytest.raises(RunDirError, match=r"^cannot write checkpoint bundle 20 in /runs/a \(No "
                     r"space left on device\); the previous bundle \(none\) is intact"):
    _committer(store, parts, exports).commit(20)
  assert store.committed == [] and store.abandoned == [20]


def test_a_background_failure_is_raised_once_at_the_next_wait():
  store, parts, exports = FakeStore([10]), FakeParts(), FakeExports()
  committer = _committer(store, parts, exports)
  parts.replay_error = OSError(28, "No space left on device")
  committer.commit(20, background=True)  # returns: the failure comes in the thread
  with pytest.raises(RunDirError, match=r"cannot write checkpoint bundle 20 .*bundle \(10\) is "
                     "intact"):
    committer.commit(30)
  assert store.committed == [10] and store.abandoned == [20] and store.begun == [20]
  committer.wait()  # reported once
  parts.replay_error = None
  committer.commit(30)
  assert store.committed == [10, 30]


def test_a_bundle_at_this_step_makes_the_commit_a_no_op():
  store, parts, exports, refreshed = FakeStore([20]), FakeParts(), FakeExports(), []
  _committer(store, parts, exports, refreshed).commit(20)
  assert store.begun == [] and parts.saved == [] and exports.waits == 0 and refreshed == []


def test_the_committer_loads_no_tensorflow():
  check = ("import sys, trainer.checkpoint.committer; "
           "sys.exit('tensorflow' in sys.modules)")
  assert subprocess.run([sys.executable, "-c", check], cwd=REPO).returncode == 0
