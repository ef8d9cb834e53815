"""Where the roles of a job find each other, and say that they live: `DIR/roles/`.

- `replay_address.json`: the replay server's address (`host:port`), pid and
  host, written by the server when it serves; the learner and the collectors
  read it unless given `--replay_address` (`server_problem` says why one they
  cannot reach is of no use).
- `<role>.json`: each role's heartbeat (pid, host, time, and its figures: the
  collectors' env steps), rewritten every few seconds; `trainer.status` reads them.

Plain JSON files on the run directory's (shared) filesystem: nothing here needs
TensorFlow, so `trainer.launch` and `trainer.status` read them cheaply.
"""

import os
import socket
import time
from typing import Any

from trainer.rundir import fileio, layout

SERVER = "replay_server"
LEARNER = "learner"
HEARTBEAT_S = 2.0  # how often a role rewrites its heartbeat
STALE_S = 30.0  # a heartbeat older than this: the role is not alive
MAX_COLLECTORS = 64  # collector tasks a job may have (the server holds a counter table each)


def collector(task: int) -> str:
  return f"collector-{task}"


def _path(root_dir: str, name: str) -> str:
  return os.path.join(root_dir, layout.ROLES_DIR, f"{name}.json")


def write_server_address(root_dir: str, address: str) -> None:
  os.makedirs(os.path.join(root_dir, layout.ROLES_DIR), exist_ok=True)
  fileio.atomic_write_json(os.path.join(root_dir, layout.SERVER_ADDRESS_FILE),
                           {"address": address, "pid": os.getpid(), "since": time.time(),
                            "host": socket.gethostname()})


def _server_record(root_dir: str) -> dict[str, Any]:
  """What the replay server last wrote of itself, or {}."""
  try:
    record = fileio.read_json(os.path.join(root_dir, layout.SERVER_ADDRESS_FILE))
  except (OSError, ValueError):
    return {}
  return record if isinstance(record, dict) else {}


def server_incarnation(root_dir: str) -> tuple | None:
  """Which server process wrote the address (pid, start time): a new one after a restart."""
  record = _server_record(root_dir)
  return (record["pid"], record["since"]) if {"pid", "since"} <= record.keys() else None


def server_address(root_dir: str) -> str | None:
  """The address the replay server last wrote, or None."""
  return _server_record(root_dir).get("address")


def server_problem(root_dir: str) -> str | None:
  """Why the address file names no server to wait for, or None (none written
  yet, or one that may be serving): unreadable, no address, or a server that
  ran on this host and is gone."""
  path = os.path.join(root_dir, layout.SERVER_ADDRESS_FILE)
  start = (f"start it (python -m trainer.replay_server --root_dir={root_dir} ...) or pass "
           "--replay_address")
  try:
    record = fileio.read_json(path)
  except FileNotFoundError:
    return None
  except ValueError as e:
    return f"{path} is not valid JSON ({e}); {start}: the server rewrites it"
  except OSError as e:
    return f"{path} cannot be read ({e.strerror}); {start}"
  if not isinstance(record, dict) or not isinstance(record.get("address"), str):
    return f"{path} has no 'address' field; {start}: the server rewrites it"
  if record.get("host") == socket.gethostname() and not _may_run(record):
    return (f"the replay server recorded in {path} (pid {record.get('pid')} on this host) is "
            f"gone; {start}")
  return None


class Heartbeat:
  """Rewrites `DIR/roles/<role>.json` at most every `HEARTBEAT_S` seconds."""

  def __init__(self, root_dir: str, role: str):
    self._path = _path(root_dir, role)
    self._role = role
    self._last = 0.0
    os.makedirs(os.path.dirname(self._path), exist_ok=True)

  def beat(self, force: bool = False, **figures: Any) -> None:
    now = time.time()
    if not force and now - self._last < HEARTBEAT_S:
      return
    self._last = now
    try:
      fileio.atomic_write_json(self._path, {"role": self._role, "pid": os.getpid(),
                                            "host": socket.gethostname(), "time": now, **figures})
    except OSError:
      pass  # a heartbeat is advice; a full disk is reported by what writes the run's state


def read(root_dir: str, role: str) -> dict[str, Any] | None:
  """`role`'s newest heartbeat, with `alive` (fresh, not stopped, its process
  not gone), `gone` (its process, on this host, ended without its final
  heartbeat) and `age_s`; None if it has none."""
  try:
    beat = fileio.read_json(_path(root_dir, role))
    age = time.time() - float(beat["time"])
  except (OSError, ValueError, KeyError, TypeError):
    return None
  # Gone: on this host, its process ended without its final (stopped) heartbeat.
  gone = not beat.get("stopped") and not _may_run(beat)
  alive = age < STALE_S and not beat.get("stopped") and not gone
  return {**beat, "age_s": round(age, 1), "alive": alive, "gone": gone}


def read_all(root_dir: str) -> list[dict[str, Any]]:
  """Every role's newest heartbeat (`read`), in name order."""
  try:
    names = sorted(os.listdir(os.path.join(root_dir, layout.ROLES_DIR)))
  except OSError:
    return []
  server_file = os.path.basename(layout.SERVER_ADDRESS_FILE)
  beats = (read(root_dir, name[:-len(".json")]) for name in names
           if name.endswith(".json") and name != server_file)
  return [beat for beat in beats if beat is not None]


def _may_run(beat: dict[str, Any]) -> bool:
  """False if the role's process is on this host and gone (killed before its last beat)."""
  if beat.get("host") != socket.gethostname():
    return True  # another machine's: the heartbeat's age is all there is
  try:
    os.kill(int(beat["pid"]), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, KeyError, TypeError, ValueError):
    return True
  return True
