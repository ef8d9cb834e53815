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

import inspect
import os
import shutil
import time

import gin
import reverb
from absl import logging

from trainer.checkpoint.bundle_store import BundleStore
from trainer.errors import EXIT_PREEMPTED, ConfigError, RunDirError, one_line
from trainer.loops import job as job_lib
from trainer.replay.packing import StepPacking
from trainer.replay.reverb import REMOTE_FILE
from trainer.roles import rolefiles, tables
from trainer.rundir import layout
from trainer.rundir.signals import StopRequest


def replay_options(replay_fn) -> tuple[int, str]:
  """(capacity, table name) of the configured replay builder: a job configured
  with the in-graph buffer runs its roles on a Reverb table of the same capacity."""
  name = getattr(replay_fn, "__name__", "")
  parameters = inspect.signature(replay_fn).parameters

  def value(param: str, default):
    try:
      return gin.query_parameter(f"{name}.{param}")
    except ValueError:
      return default

  capacity = value("capacity", parameters["capacity"].default)
  table = value("table_name", "uniform_table") if "table_name" in parameters else "uniform_table"
  return capacity, table


def build_tables(spec: job_lib.JobSpec) -> tuple[list[reverb.Table], tables.RateControl, int, str]:
  """The server's tables, on the specs of the configured agent."""
  agent, train_step = job_lib.build_agent(spec)
  capacity, table_name = replay_options(spec.replay_fn)
  control = tables.rate_control(spec.settings)
  # A new table holds packed steps (trainer.replay.packing: the learner samples
  # ~3x faster); a restored one keeps its saved layout, which every role reads.
  signature = StepPacking(agent.collect_data_spec).column_spec(agent.train_sequence_length)
  built = [tables.replay_table(table_name, capacity, signature, control),
           tables.variables_table(tables.policy_variables(agent.collect_policy, train_step)),
           *tables.counter_tables()]
  return built, control, capacity, table_name


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


def _check_restored(server_info: dict, table_name: str, capacity: int,
                    control: tables.RateControl, source: str) -> None:
  info = server_info[table_name]
  if info.max_size != capacity:
    raise ConfigError(
        f"the replay restored from {source} has capacity {info.max_size} but the config says "
        f"{capacity}; Reverb keeps a saved table's settings: set the replay's capacity back to "
        f"{info.max_size}, or start a new --root_dir")
  if not control.matches(info.rate_limiter_info):
    saved = info.rate_limiter_info
    raise ConfigError(
        f"the replay restored from {source} limits {saved.samples_per_insert:g} samples per "
        f"insert (from {saved.min_size_to_sample} items) but the config asks "
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


def serve(root_dir: str, run_config, stop: StopRequest, *, port: int, host: str) -> int:
  """Serves until stopped; returns the exit code."""
  spec = job_lib.configure_job(root_dir, run_config)
  built, control, capacity, table_name = build_tables(spec)
  restore_dir = _restore_dir(root_dir, spec.settings.keep_checkpoints)
  scratch = os.path.join(root_dir, layout.REVERB_SERVER_DIR)
  # Empty, or Reverb would load its newest scratch checkpoint instead of the bundle's.
  shutil.rmtree(scratch, ignore_errors=True)
  os.makedirs(scratch)
  checkpointer = reverb.checkpointers.DefaultCheckpointer(
      path=scratch, fallback_checkpoint_path=restore_dir)
  try:
    server = reverb.Server(built, port=port or None, checkpointer=checkpointer)
  except Exception as e:
    raise RunDirError(f"the replay server cannot start on port {port}: {one_line(e, 200)}; "
                      "pick another --port, or load the replay in --root_dir") from e
  try:
    address = f"{host}:{server.port}"
    client = reverb.Client(f"localhost:{server.port}")
    _check_restored(client.server_info(), table_name, capacity, control,
                    "the newest bundle" if restore_dir else "a new table")
    rolefiles.write_server_address(root_dir, address)
    logging.info("Replay server at %s: table %r (capacity %d, %g samples per insert), policy "
                 "weights, collector counters.", address, table_name, capacity,
                 control.samples_per_insert)
    heartbeat = rolefiles.Heartbeat(root_dir, rolefiles.SERVER)
    linger_until = None
    while not stop.requested or _learner_needs_it(root_dir, linger_until):
      if stop.requested and linger_until is None:
        linger_until = time.monotonic() + LINGER_S
        logging.warning("Stop requested: serving until the learner has committed its "
                        "checkpoint (at most %d s).", LINGER_S)
      info = client.server_info()
      heartbeat.beat(address=address, replay_size=int(info[table_name].current_size))
      time.sleep(0.5)
    heartbeat.beat(force=True, address=address, stopped=True)
  finally:
    server.stop()
  logging.warning("Replay server stopped (its contents are in the newest bundle).")
  return EXIT_PREEMPTED
