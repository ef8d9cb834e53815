r"""Chaos suite, object-storage mode: SIGKILL a job whose --root_dir is gs:// at random
moments, against a GCS emulator on 127.0.0.1 (tests/gcs_emulator.py), until it completes.

  python scripts/chaos_gcs.py --kills=30          # part of `make chaos`
  python scripts/chaos_gcs.py --kills=3           # the short version in `make test`

The job and its checks are scripts/chaos.py's (DQN on CartPole shrunk to seconds, a
checkpoint every 10 steps, an export every 15, two bundles kept), with the run directory
in a bucket. The kills aim at what object storage adds:
- one in five at a random moment of start-up (the lease, the pull of the newest bundle);
- one in five as soon as a bundle commits in the staging directory: its objects, then
  its marker, are being uploaded;
- one in five as soon as a new marker object appears: last_commit.json, TensorFlow's
  state file and retention (markers deleted first, then objects, then segments) follow;
- the rest at a random moment of training.
After each kill the rerun must resume from the newest marker in the bucket (the killed
job's lease is taken over at once: its process, on this host, is gone), every export in
the bucket must load and act (downloaded first), the bucket's index.json must name only
exports that exist there, and no export step at or below the committed one may be missing.
"""

import argparse
import json
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from chaos import Chaos, ExportChecker
from jobs import REPO

sys.path.insert(0, str(REPO))
from tests.gcs_emulator import Emulator  # noqa: E402
from trainer.storage.remote import RemoteRun  # noqa: E402

_STEP = re.compile(r"train/(?:bundles/(\d{10})/|checkpoints/ckpt-(\d+)\.)")


class ObjectStorageChaos(Chaos):
  """scripts/chaos.py's Chaos with the run directory in a bucket."""

  def __init__(self, url: str, staging: pathlib.Path, rng: random.Random, max_delay: float,
               exports: ExportChecker, scratch: pathlib.Path):
    super().__init__(staging, "uniform", rng, max_delay, exports)
    self.target, self.remote, self.scratch = url, RemoteRun(url), scratch
    self.mid_upload = self.mid_upkeep = 0

  def started(self) -> bool:
    return "config.gin" in self.remote.listing()

  def _markers(self) -> list[int]:
    return self.remote.marker_steps(self.remote.listing())

  def _wait_and_kill(self, proc: subprocess.Popen, log_path: pathlib.Path) -> int | None:
    if self.rng.random() < 0.25:  # 1 in 5 of all kills: right after a new marker
      known = set(self._markers())
      deadline = time.monotonic() + 300
      while time.monotonic() < deadline and proc.poll() is None:
        if set(self._markers()) - known:
          break
        time.sleep(0.005)
      if proc.poll() is not None:
        return proc.returncode
      proc.send_signal(signal.SIGKILL)
      proc.wait()
      return None
    return super()._wait_and_kill(proc, log_path)

  def count_partial_writes(self) -> None:
    super().count_partial_writes()
    listing = self.remote.listing()
    markers = self.remote.marker_steps(listing)
    local = [int(p.name) for p in (self.root / "train" / "bundles").glob("[0-9]" * 10)]
    if local and (not markers or max(local) > markers[-1]):
      self.mid_upload += 1  # committed here, not sealed there
    steps = {int(m.group(1) or m.group(2)) for rel in listing
             if ".damaged-" not in rel and (m := _STEP.match(rel))}
    if len(markers) > 2 or steps - set(markers):
      self.mid_upkeep += 1  # retention or an upload left objects for the next job to clean

  def check_exports(self) -> None:
    listing = self.remote.listing()
    for rel, obj in sorted(listing.items()):
      m = re.fullmatch(r"policies/(\d{10})/metadata\.json", rel)
      key = f"{rel}@{obj.generation}"
      if not m or key in self.checked_exports:
        continue
      local = self.scratch / m.group(1)
      shutil.rmtree(local, ignore_errors=True)
      prefix = f"policies/{m.group(1)}/"
      try:
        for name in listing:
          if name.startswith(prefix):
            self.remote.bucket.download(self.remote.name(name), str(local / name[len(prefix):]))
      except FileNotFoundError:
        continue  # deleted by retention since the listing
      problem = self.exports.check(str(local), self.observation)
      if problem is not None:
        self.unreadable_exports += 1
        self.fail("export", f"{self.target}/{prefix}: {problem}")
      self.checked_exports.add(key)

  def check_index(self) -> None:
    listing = self.remote.listing()
    if "policies/index.json" not in listing:
      return
    index = self.remote.read_json("policies/index.json")
    gone = [e["path"] for e in index["exports"]
            if f"policies/{e['path']}/metadata.json" not in listing]
    if gone:
      self.bad_index += 1
      self.fail("index", f"the bucket's index.json names exports it does not hold: {gone}")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--kills", type=int, default=30)
  parser.add_argument("--max_delay", type=float, default=4.0,
                      help="longest time a run trains before its kill, in seconds")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--workdir", default=None, help="staging and scratch (default: a temp dir)")
  args = parser.parse_args()
  workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="trainer-chaos-gcs-"))
  emulator = Emulator()
  import os
  os.environ.update(emulator.environment(), TRAINER_STAGING_DIR=str(workdir / "staging"))
  from trainer.storage import urls

  url = f"gs://{emulator.create_bucket()}/chaos"
  start_time = time.monotonic()
  exports = ExportChecker()
  try:
    chaos = ObjectStorageChaos(url, pathlib.Path(urls.staging_dir(url)), random.Random(args.seed),
                               args.max_delay, exports, workdir / "exports")
    chaos.run(args.kills)
    final = json.dumps(chaos.remote.marker_steps(chaos.remote.listing()))
  finally:
    exports.close()
    emulator.stop()
  print(f"object storage: kills: {chaos.kills}, failed resumes: {chaos.failed_resumes}, "
        f"unreadable exports: {chaos.unreadable_exports}, grid exports missing: "
        f"{len(chaos.missing_exports)}, wrong indexes: {chaos.bad_index}, steps lost: "
        f"{chaos.steps_lost}, kills during an upload: {chaos.mid_upload}, during upkeep "
        f"(last_commit, retention, leftovers): {chaos.mid_upkeep}, during a local bundle write: "
        f"{chaos.mid_bundle}, during an export: {chaos.mid_export}, final markers {final}, "
        f"failures: {len(chaos.failures)}, {time.monotonic() - start_time:.0f} s ({workdir})",
        flush=True)
  return 1 if chaos.failures else 0


if __name__ == "__main__":
  sys.exit(main())
