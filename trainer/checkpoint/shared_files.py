"""Immutable files that several checkpoint bundles refer to (`DIR/train/shared/`).

A part that writes a file once and lets later bundles refer to it (the frame
replay's segments) lists it in a `shared.json` in the bundle: {path from DIR:
{size, sha256}}, checksummed by its writer as it wrote it (rehashing gigabytes
at every commit would cost the commit seconds). The bundle store lists the
files in the bundle's manifest with its own, so `verify` checks them alike,
and deletes one only when no bundle refers to it any more.
"""

import glob
import os
from typing import Any

from absl import logging

from trainer.errors import RunDirError
from trainer.rundir import fileio, layout


class SharedFiles:
  """The shared files of one run directory, and which bundles refer to them."""

  def __init__(self, root_dir: str, bundle_root: str):
    self._root, self._bundle_root = root_dir, bundle_root

  def entries(self, bundle_dir: str) -> dict[str, Any]:
    """The manifest entries of the shared files that the parts written into
    `bundle_dir` refer to: each present, with its size, or the commit fails."""
    shared: dict[str, Any] = {}
    for dirpath, _, names in os.walk(bundle_dir):
      if layout.SHARED_REFS in names:
        shared.update(fileio.read_json(os.path.join(dirpath, layout.SHARED_REFS)))
    for rel, entry in shared.items():
      if not _is_shared(rel):
        raise RunDirError(f"a bundle part refers to {rel}, outside {layout.SHARED_DIR}")
      path = os.path.join(self._root, rel)
      if not os.path.isfile(path) or os.path.getsize(path) != entry["size"]:
        raise RunDirError(f"shared file {rel} is missing or not {entry['size']} bytes; the "
                          "bundle is not committed")
    return {rel: {"size": e["size"], "sha256": e["sha256"]} for rel, e in shared.items()}

  def referenced(self) -> set[str]:
    """Shared files that a committed bundle, or a damaged one set aside whose
    marker still reads, refers to."""
    referenced = set()
    for marker in glob.glob(os.path.join(self._bundle_root, "[0-9]*", layout.COMMIT_MARKER)):
      try:
        shared = fileio.read_json(marker).get("shared", [])
      except (OSError, ValueError, AttributeError):
        continue
      referenced.update(rel for rel in shared if isinstance(rel, str))
    return referenced

  def remove(self, candidates: set[str]) -> None:
    """Deletes those of `candidates` (paths from DIR) that no bundle refers to;
    only files under the shared directory (a manifest is data, not a command)."""
    for rel in sorted(candidates - self.referenced()):
      if not _is_shared(rel):
        continue
      try:
        os.remove(os.path.join(self._root, rel))
      except FileNotFoundError:
        pass

  def remove_orphans(self) -> None:
    """Deletes every shared file no bundle refers to: what a crash left (a
    file under its temporary name, one written after the last commit, the rest
    of a pruned bundle's). Only under the run's lock, before anything writes."""
    top = os.path.join(self._root, layout.SHARED_DIR)
    present = {os.path.relpath(os.path.join(dirpath, n), self._root)
               for dirpath, _, names in os.walk(top) for n in names}
    orphans = present - self.referenced()
    if orphans:
      logging.info("Removing %d shared files no bundle refers to (left by an interrupted job).",
                   len(orphans))
      self.remove(orphans)


def _is_shared(rel) -> bool:
  """A path from DIR to a file under the shared directory, nowhere else."""
  return (isinstance(rel, str) and rel.startswith(layout.SHARED_DIR + "/")
          and ".." not in rel.split("/"))
