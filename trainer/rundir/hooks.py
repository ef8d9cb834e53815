"""What else happens when a run directory commits: a run on object storage uploads.

A job on `gs://` runs in a local staging directory (trainer.storage); the bundle store
calls these around each commit, and the storage layer registers what they do for its
staging directory. With nothing registered (every local run), they do nothing.
"""

import os
from typing import Any

_hooks: dict[str, Any] = {}


class CommitHooks:
  """`before(root_dir)`: the commit of a new bundle starts (an upload of the previous one
  must finish first: retention may delete its files). `after(bundle, keep)`: a bundle was
  committed, and the store keeps `keep`."""

  def before(self) -> None: ...

  def after(self, bundle: Any, keep: int) -> None: ...


def register(root_dir: str, hooks: CommitHooks) -> None:
  _hooks[os.path.realpath(root_dir)] = hooks


def unregister(root_dir: str) -> None:
  _hooks.pop(os.path.realpath(root_dir), None)


def _of(root_dir: str) -> CommitHooks | None:
  return _hooks.get(os.path.realpath(root_dir)) if _hooks else None


def before_commit(root_dir: str) -> None:
  hooks = _of(root_dir)
  if hooks is not None:
    hooks.before()


def after_commit(root_dir: str, bundle: Any, keep: int) -> None:
  hooks = _of(root_dir)
  if hooks is not None:
    hooks.after(bundle, keep)



