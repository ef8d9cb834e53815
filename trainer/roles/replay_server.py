"""The replay server role: one Reverb server holding the job's tables (`tables`).

It starts from the newest committed bundle's replay (a Reverb checkpoint that
the learner moved into the bundle; `ReverbReplay.save`), or empty for a new run,
so a restarted server holds exactly what that bundle recorded: the replay, the
collectors' counters and the policy weights of that instant. Its own scratch
checkpoints (`train/reverb_server/`) are never loaded: each one the learner
asked for is either in a bundle now or belongs to a bundle that never committed.

Reverb restores a table with the settings it was saved with, not the configured
ones (its issues #64, #118, #147: max size, rate limiter); a restored table is
compared with the config and a difference is refused in one line, before the
server serves.
"""

import os
import re
import shutil
import time
from collections.abc import Callable

import portpicker
import reverb
import tensorflow as tf
from absl import logging

from trainer.checkpoint.bundle_store import BundleStore
from trainer.errors import EXIT_CRASH, EXIT_PREEMPTED, ConfigError, RunDirError, one_line
from trainer.loops import job as job_lib
from trainer.loops import parts
from trainer.replay import bind as bind_lib
from trainer.replay.layout import ReplayLayout, replay_size, table_shards
from trainer.replay.reset_watch import ResetWatch
from trainer.replay.reverb import REMOTE_FILE
from trainer.roles import rolefiles, tables, weights
from trainer.rundir import layout
from trainer.rundir.run_lock import RunLock
from trainer.rundir.signals import StopRequest


def build_tables(spec: job_lib.JobSpec) -> tuple[list[reverb.Table], ReplayLayout]:
  """The server's tables, on the specs of the configured agent. A new replay
  table holds packed steps (`tables.replay_layout`); a restored one keeps its
  saved layout, which every role reads."""
  agent, _ = parts.build_agent(spec)
  replay = tables.replay_layout(spec.replay_fn, spec.settings, agent.collect_data_spec,
                                agent.train_sequence_length)
  built = [*replay.tables(), weights.table(tf.nest.flatten(agent.collect_policy.variables())),
           *tables.counter_tables()]
  return built, replay


def _restore_dir(root_dir: str, keep: int) -> str | None:
  bundle, _ = BundleStore(root_dir, keep=keep).resume_point()
  if bundle is None:
    return None
  if os.path.exists(os.path.join(bundle.replay_dir, REMOTE_FILE)):
    raise RunDirError(
        f"checkpoint bundle {bundle.step} names a replay on an outside Reverb server "
        "(create_reverb_replay.address) instead of holding it; the replay server role restores "
        "only bundles that hold their replay: start a new --root_dir")
  if not os.path.exists(os.path.join(bundle.replay_dir, "DONE")):
    raise RunDirError(
        f"checkpoint bundle {bundle.step} holds the in-graph replay of a single-process job "
        "(trainer.train), which a Reverb server cannot load: resume it with trainer.train, or "
        "start a new --root_dir for trainer.launch")
  logging.info("Restoring the replay of checkpoint bundle %d.", bundle.step)
  return bundle.replay_dir


def _check_restored(server_info: dict, replay: ReplayLayout, source: str) -> None:
  if not weights.signed_layout(server_info):
    raise RunDirError(f"the replay restored from {source} holds unsigned policy weights (saved "
                      "by an earlier trainer, before the roles signed what they exchange): "
                      "resume it with that trainer, or start a new --root_dir")
  names = table_shards(server_info, replay.name)
  sizes = [server_info[t].max_size for t in names]
  if sizes != replay.capacities:
    raise ConfigError(
        f"the replay restored from {source} has capacity {sum(sizes)} in {len(sizes)} "
        f"table(s) of {sorted(set(sizes))} items, but the config says capacity "
        f"{replay.capacity} in {replay.shards} shard(s); {replay.fix()}")
  control = replay.control.per_shard(replay.shards)
  for table in names:
    if not control.matches(server_info[table].rate_limiter_info):
      saved = server_info[table].rate_limiter_info
      raise ConfigError(
          f"the replay restored from {source} limits {saved.samples_per_insert:g} samples per "
          f"insert (from {saved.min_size_to_sample} items a shard) but the config asks "
          f"{control.samples_per_insert:g} (from {control.min_size_to_sample}); Reverb keeps a "
          "saved table's rate limiter: set rate_control.* and train.initial_collect_steps back, "
          "or start a new --root_dir")


LINGER_S = 300  # how long a stopped server serves on for a learner committing its bundle


def _learner_needs_it(root_dir: str, linger_until: float | None) -> bool:
  """Whether a stopped server should serve on: a scheduler that signals every
  role at once (scancel) would otherwise take the server away from the learner's
  last checkpoint."""
  if linger_until is not None and time.monotonic() > linger_until:
    return False
  learner = rolefiles.read(root_dir, rolefiles.LEARNER)
  return learner is not None and learner["alive"]


def start_server(built: list, replay: ReplayLayout, port: int, checkpointer) -> reverb.Server:
  """A Reverb server on `built`, restoring what `checkpointer` holds; a saved
  table that the config lacks (fewer shards) is a ConfigError."""
  try:
    return reverb.Server(built, port=port or None, checkpointer=checkpointer)
  except Exception as e:
    missing = re.search(r"Trying to load table (\S+) but", str(e))
    if missing:
      raise ConfigError(f"the newest bundle's replay holds table {missing.group(1)}, which "
                        f"the config ({replay.describe()}) does not; {replay.fix()}") from e
    raise RunDirError(f"the replay server cannot start on port {port}: {one_line(e, 200)}; "
                      "pick another --port, or load the replay in --root_dir") from e


def _dial(listen: str | None, port: int) -> str:
  """The address this process reaches its own server by."""
  if listen is None:
    return f"localhost:{port}"
  return f"[{listen}]:{port}" if ":" in listen else f"{listen}:{port}"


BIND_ATTEMPTS = 5


def bind_server(start_fn: Callable[[int], reverb.Server], port: int, *,
                pick_port: Callable[[], int] = portpicker.pick_unused_port) -> reverb.Server:
  """`start_fn(port)`: the server on `port`; with `port` 0, on a free port that
  it binds itself: a port another process took since it was picked (Reverb
  binds `pick_port()`'s choice later, not port 0) is another pick, up to
  `BIND_ATTEMPTS`. No one else chooses the port, so none can lose it in between."""
  if port:
    return start_fn(port)
  for attempt in range(BIND_ATTEMPTS):
    candidate = pick_port()
    try:
      return start_fn(candidate)
    except RunDirError as e:
      if "BuildAndStart" not in str(e) or attempt + 1 == BIND_ATTEMPTS:
        raise
      logging.warning("Port %d was taken before the replay server bound it; picking another.",
                      candidate)
  raise AssertionError("unreachable")


def serve(root_dir: str, run_config, stop: StopRequest, *, port: int, host: str,
          bind: str) -> int:
  """Serves until stopped, listening on `bind` (`bind_lib.resolve`); returns the exit code.
  Another live server of the run is refused (exit 3) before anything is written."""
  listen = bind_lib.resolve(bind)
  warning = bind_lib.loopback_warning(bind, listen)
  if warning:
    logging.warning("%s.", warning)
  spec = job_lib.configure_job(root_dir, run_config)
  built, replay = build_tables(spec)
  restore_dir = _restore_dir(root_dir, spec.settings.keep_checkpoints)
  os.makedirs(os.path.join(root_dir, layout.ROLES_DIR), exist_ok=True)
  # Held until the process exits: a second server would overwrite the address
  # and empty the scratch directory under this one's checkpoints.
  lock = RunLock(root_dir, layout.SERVER_LOCK_FILE, holder="replay server")
  lock.acquire()
  scratch = os.path.join(root_dir, layout.REVERB_SERVER_DIR)
  try:
    server = _start(spec, built, replay, scratch, restore_dir, port)
  except BaseException:
    lock.release()
    raise
  try:
    client, address = _announce(root_dir, server, replay, host=host, listen=listen,
                                source="the newest bundle" if restore_dir else "a new table")
    if not _serve_until_stopped(root_dir, client, address, replay, scratch, stop):
      return EXIT_CRASH  # restarted (launch, the scheduler): it loads the newest bundle
  finally:
    server.stop()
    lock.release()
  logging.warning("Replay server stopped (its contents are in the newest bundle).")
  return EXIT_PREEMPTED


def _start(spec: job_lib.JobSpec, built: list[reverb.Table], replay: ReplayLayout,
           scratch: str, restore_dir: str | None, port: int) -> reverb.Server:
  """The server on `port` (`bind_server`), restoring `restore_dir`."""

  def start_on(candidate: int) -> reverb.Server:
    # Empty, or Reverb would load its newest scratch checkpoint instead of the bundle's.
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    checkpointer = reverb.checkpointers.DefaultCheckpointer(
        path=scratch, fallback_checkpoint_path=restore_dir)
    # A failed start may have taken the tables: another try builds its own.
    return start_server(next(unused, None) or build_tables(spec)[0], replay, candidate,
                        checkpointer)

  unused = iter([built])
  return bind_server(start_on, port)


def _announce(root_dir: str, server: reverb.Server, replay: ReplayLayout, *, host: str,
              listen: str | None, source: str) -> tuple[reverb.Client, str]:
  """Checks what the server restored from `source`, then writes its address
  for the other roles; returns a client of it and that address."""
  address = f"{host}:{server.port}"
  found = bind_lib.check(server.port, listen)
  client = reverb.Client(_dial(listen, server.port))
  _check_restored(client.server_info(), replay, source)
  rolefiles.write_server_address(root_dir, address)
  logging.info("Replay server at %s (listening on %s): %s, policy weights, collector "
               "counters.", address, ", ".join(found), replay.describe())
  if listen is None:
    logging.warning("The replay server listens on every interface (--bind=all): anyone who "
                    "reaches port %d can write to its tables (docs/security.md).", server.port)
  return client, address


def _serve_until_stopped(root_dir: str, client: reverb.Client, address: str,
                         replay: ReplayLayout, scratch: str, stop: StopRequest) -> bool:
  """Beats the heartbeat until stopped and the learner no longer needs the
  server; False if the server must restart (`_Guard`)."""
  heartbeat = rolefiles.Heartbeat(root_dir, rolefiles.SERVER)
  guard = _Guard(scratch, table_shards(client.server_info(), replay.name))
  linger_until = None
  while not stop.requested or _learner_needs_it(root_dir, linger_until):
    if stop.requested and linger_until is None:
      linger_until = time.monotonic() + LINGER_S
      logging.warning("Stop requested: serving until the learner has committed its "
                      "checkpoint (at most %d s).", LINGER_S)
    info = client.server_info()
    if not guard.check(info):
      heartbeat.beat(force=True, address=address, stopped=True)
      return False
    heartbeat.beat(address=address, replay_size=replay_size(info, replay.name))
    time.sleep(0.5)
  heartbeat.beat(force=True, address=address, stopped=True)
  return True


UNCLAIMED_S = 30.0  # a finished scratch checkpoint the learner has not moved by then is nobody's


class _Guard:
  """What a client of the server may do that the roles did not ask for (Reverb
  has no authentication: docs/security.md), noticed while serving:

  - a replay shard emptied by `reset()` (`ResetWatch`): the server stops (exit
    1) so that it is restarted from the newest bundle, whose replay is whole;
  - a checkpoint that the learner did not ask for (it moves each of its own into
    a bundle at once): removed after `UNCLAIMED_S`, so they cannot fill the disk.
  """

  def __init__(self, scratch: str, shards: list[str]):
    self._scratch, self._shards = scratch, shards
    self._resets = ResetWatch()
    self._removed = 0

  def check(self, info: dict) -> bool:
    """False if the server must restart."""
    reset = self._resets.reset_tables(info, self._shards)
    if reset:
      logging.error("Replay table(s) %s were emptied by a client's reset() (not a role of this "
                    "job: docs/security.md); restarting from the newest bundle's replay.",
                    ", ".join(reset))
      return False
    self._remove_unclaimed()
    return True

  def _remove_unclaimed(self) -> None:
    now = time.time()
    for name in os.listdir(self._scratch):
      path = os.path.join(self._scratch, name)
      try:
        done = os.stat(os.path.join(path, "DONE")).st_mtime
      except OSError:
        continue  # being written, or not a checkpoint
      if now - done > UNCLAIMED_S:
        shutil.rmtree(path, ignore_errors=True)
        self._removed += 1
        if self._removed == 1:
          logging.error("Removed a replay checkpoint nobody claimed (%s): another client asked "
                        "the server for it (docs/security.md); logged once.", name)
