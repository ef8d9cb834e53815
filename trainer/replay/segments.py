"""Incremental persistence of a `FrameStore`: immutable, checksummed segments.

A full replay of Atari frames is 7 GB; writing it whole at every checkpoint (as
Reverb and Dopamine do) costs minutes of disk a checkpoint. Here each row's
steps are cut into segments of `segment_steps` logical steps. A segment is
written once, by a background thread, as soon as the ring fills it: a file
named by its content (`r<row>-k<index>-<sha256 prefix>.seg`) in the run's
shared directory, never changed after. A bundle's replay is then a small
description (`frames.json`: the rows' step counts and the segments they
hold) plus each row's unfinished segment (its tail, copied at the save), and
refers to the segments by name, size and SHA-256 in `shared.json`: the bundle
store verifies them with the bundle's own files and deletes a segment only when
no kept bundle refers to it (`trainer.checkpoint.bundle_store`).

A checkpoint therefore writes what was added since the previous one, plus one
tail a row; the training loop waits only for the tail's copy and write and
for a segment write already under way. Full segments may be compressed
(`codec` "zlib", in the writer thread); tails are written raw, since the loop
waits for them.
"""

import hashlib
import os
import queue
import threading
import time
import zlib

import numpy as np

from trainer.replay.frames import Field, FrameStore
from trainer.rundir import fileio

FORMAT = 1
DESCRIPTION = "frames.json"  # in the bundle's replay/
SHARED_REFS = "shared.json"  # the bundle store's name for a part's shared references
SUFFIX = ".seg"


class SegmentError(RuntimeError):
  """A segment or a saved description that cannot be used."""


CODECS = ("none", "zlib")
_ZLIB_LEVEL = 1  # Pong's frames: ~100x smaller at level 1; higher levels cost time, not bytes


def write_segment(directory: str, prefix: str, arrays: list[np.ndarray],
                  codec: str = "none") -> dict:
  """Writes `arrays` (in order; `codec` "zlib" compresses them) as one
  immutable file named by its SHA-256 (of the bytes on disk), durably
  (temporary file, fsync, rename); returns its reference."""
  digest = hashlib.sha256()
  tmp = os.path.join(directory, f".{prefix}.tmp-{os.getpid()}-{threading.get_ident()}")
  size = 0
  compressor = zlib.compressobj(_ZLIB_LEVEL) if codec == "zlib" else None
  with open(tmp, "wb") as f:
    for array in arrays:
      view = memoryview(np.ascontiguousarray(array)).cast("B")
      data = compressor.compress(view) if compressor else view
      digest.update(data)
      f.write(data)
      size += len(data) if compressor else view.nbytes
    if compressor:
      data = compressor.flush()
      digest.update(data)
      f.write(data)
      size += len(data)
    f.flush()
    os.fsync(f.fileno())
  sha = digest.hexdigest()
  name = f"{prefix}-{sha[:20]}{SUFFIX}"
  os.replace(tmp, os.path.join(directory, name))
  fileio.fsync(directory)
  return {"name": name, "size": size, "sha256": sha, "codec": codec}


def read_segment(path: str, ref: dict, arrays: list[np.ndarray]) -> None:
  """Reads the file at `path` into `arrays` (views into the ring), checking its
  size and SHA-256 against `ref` and, decoded, that it fills them exactly."""
  with open(path, "rb") as f:
    data = f.read()
  if len(data) != ref["size"]:
    raise SegmentError(f"{path} has {len(data)} bytes, its reference says {ref['size']}")
  if hashlib.sha256(data).hexdigest() != ref["sha256"]:
    raise SegmentError(f"{path} fails its checksum")
  codec = ref.get("codec", "none")
  if codec not in CODECS:
    raise SegmentError(f"{path} is encoded with {codec!r}, which this version cannot read")
  if codec == "zlib":
    try:
      data = zlib.decompress(data)
    except zlib.error as e:
      raise SegmentError(f"{path} cannot be decompressed ({e})") from e
  expected = sum(a.nbytes for a in arrays)
  if len(data) != expected:
    raise SegmentError(f"{path} holds {len(data)} bytes but its place in the ring {expected}")
  offset = 0
  for array in arrays:
    memoryview(array).cast("B")[:] = memoryview(data)[offset:offset + array.nbytes]
    offset += array.nbytes


class SegmentedRing:
  """Writes a `FrameStore`'s full segments as they fill; saves and loads the rest.

  `lock` guards the store and the writer's records: the observer adds under
  it, and a save copies the tails and takes the segments it refers to under it.
  A save must come from the thread that adds (the loop's: the job's commit in
  the foreground): were steps added while it waits for the writer, a writer
  that lags by most of a lap could read slots that newer steps overwrote.
  """

  def __init__(self, store: FrameStore, directory: str, rel_dir: str, segment_steps: int,
               codec: str = "none"):
    if store.row_capacity % segment_steps or store.row_capacity < 2 * segment_steps:
      raise ValueError(f"a row of {store.row_capacity} steps is not a multiple of two or more "
                       f"segments of {segment_steps}")
    self.store, self.segment_steps, self.codec = store, segment_steps, codec
    self._dir, self._rel_dir = directory, rel_dir
    self.lock = threading.Lock()
    self._written: dict[tuple[int, int], dict] = {}  # (row, segment) -> reference
    self._referenced: set[str] = set()  # names a save referred to: never deleted here
    self._queue: queue.Queue = queue.Queue()
    self._error: BaseException | None = None
    self._thread: threading.Thread | None = None
    self.bytes_written = 0  # segments and tails, since this process started
    self.segments_written, self.segment_seconds = 0, 0.0  # the writer thread's work

  # --- writing as the ring fills -------------------------------------------------

  def added(self) -> None:
    """After each added step: queues every segment the step completed."""
    for row, total in enumerate(self.store.totals):
      if total % self.segment_steps == 0:
        self._enqueue((row, int(total) // self.segment_steps - 1))

  def _enqueue(self, item: tuple[int, int]) -> None:
    if self._thread is None:
      os.makedirs(self._dir, exist_ok=True)
      self._thread = threading.Thread(target=self._work, name="segment-writer", daemon=True)
      self._thread.start()
    self._queue.put(item)

  def _work(self) -> None:
    while (item := self._queue.get()) is not None:
      try:
        if self._error is None:
          self._write(*item)
      except BaseException as e:  # re-raised by the next save
        self._error = e
      finally:
        self._queue.task_done()
    self._queue.task_done()

  def _write(self, row: int, k: int) -> None:
    s = self.segment_steps
    start = time.monotonic()
    # The views are read as they are: the ring overwrites this span's slots
    # only `row_capacity - segment_steps` steps after it completes (a row holds
    # two or more segments), and a save's tail restores any it did overwrite.
    ref = write_segment(self._dir, f"r{row}-k{k}", self.store.row_span(row, k * s, (k + 1) * s),
                        self.codec)
    self.bytes_written += ref["size"]
    self.segments_written += 1
    self.segment_seconds += time.monotonic() - start
    with self.lock:
      self._written[(row, k)] = ref
      self._forget_old(row)

  def _forget_old(self, row: int) -> None:
    """Drops the segments that left the ring; deletes those no save referred to
    (the bundle store deletes the others once no kept bundle does)."""
    first = self.store.oldest(row) // self.segment_steps
    for key in [key for key in self._written if key[0] == row and key[1] < first]:
      ref = self._written.pop(key)
      if ref["name"] not in self._referenced:
        try:
          os.remove(os.path.join(self._dir, ref["name"]))
        except FileNotFoundError:
          pass

  def drain(self) -> None:
    """Waits until every full segment so far is written."""
    self._queue.join()

  # --- saving and loading --------------------------------------------------------

  def save(self, target_dir: str, config: dict) -> None:
    """Writes the description, the tails and the shared references into
    `target_dir` (new), after waiting for the segments it refers to (those
    queued: one a row at most, at the loop's pace)."""
    s = self.segment_steps
    with self.lock:
      totals = [int(t) for t in self.store.totals]
      tails = {r: [np.array(a) for a in self.store.row_span(r, t - t % s, t)]
               for r, t in enumerate(totals) if t % s}
      wanted = [(r, k) for r, total in enumerate(totals)
                for k in range(max(0, total - self.store.row_capacity) // s, total // s)]
      # Taken now, so that the writer's `_forget_old` deletes none of them meanwhile;
      # the ones still queued are the newest, which stay in the ring.
      taken = {key: self._written[key] for key in wanted if key in self._written}
      self._referenced.update(ref["name"] for ref in taken.values())
    self._queue.join()
    if self._error is not None:
      raise self._error
    os.makedirs(target_dir)
    segments: dict[str, list] = {str(r): [] for r in range(len(totals))}
    shared = {}
    with self.lock:
      for r, k in wanted:
        ref = taken.get((r, k)) or self._written[(r, k)]
        self._referenced.add(ref["name"])
        segments[str(r)].append([k, ref])
        shared[f"{self._rel_dir}/{ref['name']}"] = {"size": ref["size"],
                                                    "sha256": ref["sha256"]}
    tail_refs = {str(r): [t // s, write_segment(target_dir, f"tail-r{r}", tails[r])]
                 for r, t in enumerate(totals) if t % s}
    self.bytes_written += sum(ref["size"] for _, ref in tail_refs.values())
    fileio.atomic_write_json(os.path.join(target_dir, DESCRIPTION), {
        "format": FORMAT, **config, "segment_steps": s, "totals": totals,
        "segments": segments, "tails": tail_refs})
    fileio.atomic_write_json(os.path.join(target_dir, SHARED_REFS), shared)

  def load(self, source_dir: str, config: dict) -> None:
    """Fills the store from a saved description, every file checked."""
    try:
      description = fileio.read_json(os.path.join(source_dir, DESCRIPTION))
    except (OSError, ValueError) as e:
      raise SegmentError(f"cannot read {DESCRIPTION} in {source_dir}: {e}") from e
    saved = {key: description.get(key) for key in (*config, "segment_steps")}
    if saved != {**config, "segment_steps": self.segment_steps}:
      changed = sorted(k for k in saved if saved[k] != {**config, "segment_steps":
                                                         self.segment_steps}[k])
      raise SegmentError(f"the saved frame replay differs from the configured one in {changed}")
    s = self.segment_steps
    for r, total in enumerate(description["totals"]):
      for k, ref in description["segments"][str(r)]:
        read_segment(os.path.join(self._dir, ref["name"]), ref,
                     self.store.row_span(r, k * s, (k + 1) * s))
        self._written[(r, k)] = ref
        self._referenced.add(ref["name"])
      if str(r) in description["tails"]:
        k, ref = description["tails"][str(r)]
        read_segment(os.path.join(source_dir, ref["name"]), ref,
                     self.store.row_span(r, k * s, total))
      self.store.totals[r] = total

  def close(self) -> None:
    if self._thread is not None:
      self._queue.put(None)
      self._thread.join()
      self._thread = None


def describe(fields: list[Field], frame_stack: int, rows: int, row_capacity: int) -> dict:
  """What a saved replay must share with the configured one to be loaded."""
  return {"fields": [f.to_json() for f in fields], "frame_stack": frame_stack, "rows": rows,
          "row_capacity": row_capacity}


def saved_bytes(source_dir: str) -> int:
  """Bytes of a saved replay: its segments (shared) and its own files."""
  shared = fileio.read_json(os.path.join(source_dir, SHARED_REFS))
  own = sum(os.path.getsize(os.path.join(source_dir, n)) for n in os.listdir(source_dir))
  return own + sum(entry["size"] for entry in shared.values())

