"""The commit of a checkpoint bundle at a train step, in the foreground or in a thread.

`Committer.commit(step)` runs the bundle store's protocol (`bundle_store`):
it begins bundle `step`, has the parts written into it, waits for the policy
exports queued so far (the export invariant: every export at or below a
committed step is on disk) and commits. With `background=True` it returns
once every part but the replay is written; a thread writes the replay, waits
for those exports and commits, and the next `commit` (or `wait`) waits for it
and raises what it raised. A bundle that cannot be written is abandoned (its
partial files removed, the bundle before it intact) and reported as one
`RunDirError` line naming its step.

Written against three small interfaces, so it is tested with fakes
(tests/test_committer.py): the parts (`Parts`, `bundle_parts.BundleParts`),
the store (`Store`, `bundle_store.BundleStore`) and the exports (`Exports`,
`policies.exporter.PolicyExporter`). It imports no TensorFlow.
"""

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from absl import logging

from trainer.checkpoint.bundle_store import Bundle
from trainer.errors import RunDirError
from trainer.rundir import fileio

# A background commit that the next checkpoint waits longer for is worth a warning.
COMMIT_WAIT_WARN_S = 1.0


class Parts(Protocol):
  """Writes the parts of a bundle into the directory `Store.begin` made."""

  def save(self, step: int, bundle_path: str, *, replay: bool = True) -> dict[str, Any]: ...

  def save_replay(self, bundle_path: str) -> None: ...


class Store(Protocol):
  """The bundles of a run directory, and their commit protocol."""

  def latest(self) -> Bundle | None: ...

  def begin(self, step: int) -> str: ...

  def commit(self, step: int, summary: dict[str, Any]) -> Any: ...

  def abandon(self, step: int) -> None: ...


class Exports(Protocol):
  """The policy exports being written meanwhile (`PolicyExporter`)."""

  def queued(self) -> list: ...

  def wait(self) -> None: ...

  def wait_for(self, queued: list, step: int) -> None: ...


class Committer:
  """Commits bundles of one run directory, one at a time."""

  def __init__(self, root_dir: str, store: Store, parts: Parts, exports: Exports, *,
               write_errors: tuple[type[BaseException], ...] = (OSError,),
               export_error: type[BaseException] | None = None,
               before_save: Callable[[], None] = lambda: None):
    """`write_errors`: what a part, the store or the exports raise when a bundle
    cannot be written (a full disk, permissions): reported as `RunDirError`.
    `export_error`: the one of them that means a policy export failed (it has
    `step` and `reason`). `before_save()`: called just before the parts are
    written (the counters are read then)."""
    self._root, self._store, self._parts, self._exports = root_dir, store, parts, exports
    self._write_errors = (*write_errors, *([export_error] if export_error else []))
    self._export_error = export_error
    self._before_save = before_save
    self._thread: threading.Thread | None = None
    self._error: BaseException | None = None

  def commit(self, step: int, *, background: bool = False) -> None:
    """Commits bundle `step` (no-op if one exists), after the previous one.

    Raises:
      RunDirError: the bundle (or the previous one, in the background) could not
        be written. Its partial files are removed; the bundle before it stays intact.
    """
    waiting = time.monotonic()
    self.wait()
    start = time.monotonic()  # the commit's own time starts after the wait
    waited = start - waiting
    latest = self._store.latest()
    if latest is not None and latest.step == step:
      return
    if waited > COMMIT_WAIT_WARN_S:
      # Checkpoints come faster than the replay is written: training stops for it.
      logging.warning("Checkpoint at step %d waited %.1f s for the previous bundle's replay to "
                      "be written; raise train.checkpoint_interval to train meanwhile.",
                      step, waited)
    self._before_save()
    try:
      path = self._store.begin(step)
      summary = self._parts.save(step, path, replay=not background)
      if background:
        self._thread = threading.Thread(
            target=self._commit_in_background, name=f"commit-{step}", daemon=True,
            args=(step, path, summary, self._exports.queued(), latest, start))
        self._thread.start()
        logging.info("Checkpoint at step %d: training paused %.2f s (%.2f s of it waiting for "
                     "the previous commit); the replay is written meanwhile.",
                     step, time.monotonic() - waiting, waited)
        return
      # The parts were written while the export thread worked; an export that
      # failed raises here, and nothing past it commits.
      self._exports.wait()
      self._store.commit(step, summary)
    except self._write_errors as e:
      self._store.abandon(step)
      raise self._bundle_error(e, step, latest) from e
    _log_committed(step, summary, start)

  def _commit_in_background(self, step: int, path: str, summary: dict[str, Any], exports: list,
                            latest: Bundle | None, start: float) -> None:
    try:
      self._parts.save_replay(path)
      self._exports.wait_for(exports, step)
      self._store.commit(step, summary)
    except BaseException as e:  # noqa: BLE001  (re-raised in the training thread)
      self._store.abandon(step)
      self._error = e
      if isinstance(e, self._write_errors):
        self._error = self._bundle_error(e, step, latest)
        self._error.__cause__ = e
      return
    _log_committed(step, summary, start)

  def wait(self) -> None:
    """Waits for a bundle being committed in the background; raises its error."""
    if self._thread is not None:
      self._thread.join()
      self._thread = None
    error, self._error = self._error, None
    if error is not None:
      raise error

  def close(self) -> None:
    """Waits for a background commit; its failure is logged (closing after
    another error: that one is reported)."""
    try:
      self.wait()
    except Exception as e:  # noqa: BLE001
      logging.warning("The checkpoint being written in the background failed: %s", e)

  def _bundle_error(self, error: BaseException, step: int, latest: Bundle | None) -> RunDirError:
    """The one line for a bundle that could not be written."""
    last = latest.step if latest else "none"
    if self._export_error is not None and isinstance(error, self._export_error):
      return RunDirError(
          f"cannot write the policy export of step {error.step} in {self._root} "
          f"({error.reason}); no checkpoint past it was committed (the last is {last}) "
          "and earlier exports are intact. Free space or fix permissions, then run the same "
          "command: it resumes and writes it")
    return RunDirError(
        f"cannot write checkpoint bundle {step} in {self._root} "
        f"({fileio.write_error_reason(error)}); the previous bundle ({last}) is intact. Free "
        "space or fix permissions, then run the same command to resume")


def _log_committed(step: int, summary: dict[str, Any], start: float) -> None:
  logging.info("Committed checkpoint bundle at step %d (replay %d, env steps %d) in %.2f s.",
               step, summary["replay_size"], summary["env_steps"], time.monotonic() - start)
