r"""Summarises a run directory without changing it (and without loading TensorFlow).

  python -m trainer.status --root_dir=DIR [--json]

The figures are those of the newest checkpoint bundle that verifies (every
file's checksum checked); newer damaged bundles are listed as such. A job
that is running also shows its live train step (what it wrote into its run
lock, or the learner role's heartbeat), and each role of a job run as roles
its last heartbeat. Exports
missing are export steps at or below that bundle with no export in
`policies/` and no record of retention deleting it.

A gs:// run directory is read from its bucket: the bundles' markers, and every file of a
bundle checked by its size in the bucket's listing (docs/object_storage.md).

Exit codes: 0; 2 when DIR holds no run; 3 when a gs:// bucket cannot be reached.
"""

import json
import os
import re
import sys
import time
from typing import Any

from absl import flags, logging

from trainer.checkpoint.bundle_store import BundleStore
from trainer.cli import shell
from trainer.errors import EXIT_USAGE
from trainer.policies import policy_index
from trainer.roles import rolefiles
from trainer.rundir import layout, run_lock
from trainer.storage import urls

flags.DEFINE_string("root_dir", None, "Run directory to summarise (a path or gs://BUCKET/PATH).")
flags.DEFINE_bool("json", False, "Print JSON instead of text.")
FLAGS = flags.FLAGS


def no_run_reason(root_dir: str) -> str | None:
  """Why `root_dir` is not a run directory, or None if it is one."""
  if not os.path.isdir(root_dir):
    return "no such directory"
  if not (os.path.isfile(os.path.join(root_dir, layout.CONFIG_FILE))
          or os.path.isdir(os.path.join(root_dir, layout.BUNDLE_DIR))):
    return f"it holds no {layout.CONFIG_FILE} and no checkpoint bundles"
  return None


def live_progress(root_dir: str) -> dict[str, Any] | None:
  """The running job's train step ({"train_step", "age_s", "source"}): what the
  holder of the run lock (a single-process job, or the learner role) last
  recorded there, else the learner's live heartbeat; None if no job runs."""
  lock_path = os.path.join(root_dir, layout.LOCK_FILE)
  if run_lock.held(lock_path):
    record = run_lock.holder_record(lock_path)
    if isinstance(record.get("train_step"), int) and "time" in record:
      return {"train_step": record["train_step"], "age_s": round(time.time() - record["time"], 1),
              "source": f"the job's run lock (pid {record.get('pid')})"}
  learner = rolefiles.read(root_dir, rolefiles.LEARNER)
  if learner and learner["alive"] and isinstance(learner.get("train_step"), int):
    return {"train_step": learner["train_step"], "age_s": learner["age_s"],
            "source": "the learner's heartbeat"}
  return None


def configured_total(root_dir: str) -> int | None:
  """`train.num_iterations` as the saved config binds it (its last binding), or None."""
  try:
    with open(os.path.join(root_dir, layout.CONFIG_FILE)) as f:
      values = re.findall(r"^\s*train\.num_iterations\s*=\s*([0-9_]+)", f.read(), re.MULTILINE)
  except OSError:
    return None
  return int(values[-1]) if values else None


def role_state(role: dict[str, Any]) -> str:
  """alive; stopped (it wrote its final heartbeat: a clean exit); gone (it
  died without one: killed, crashed); not alive (no beat lately, from another host)."""
  if role["alive"]:
    return "alive"
  if role.get("stopped"):
    return "stopped"
  return "gone" if role.get("gone") else "not alive"


def run_status(root_dir: str, *, view=None) -> dict[str, Any]:
  """The run's state as of its newest checkpoint bundle that verifies.

  `view`: a gs:// run's (`storage.sessions.View`): `root_dir` is then a local directory
  of its small files, and the bundles are verified against the bucket's listing."""
  store = BundleStore(root_dir, file_problem=view.file_problem if view else None)
  bundles = store.committed()
  bundle, damaged = store.newest_verified(bundles)
  summary = bundle.summary if bundle else {}
  train_step = summary.get("train_step", 0)
  num_iterations = summary.get("num_iterations")
  complete = bool(num_iterations) and train_step >= num_iterations
  policy_dir = os.path.join(root_dir, layout.POLICY_DIR)
  grid = policy_index.export_grid(summary.get("export_schedule", []), train_step,
                                  train_step if complete else None) if bundle else []
  return {
      "root_dir": view.run.url if view else root_dir,
      "train_step": train_step,
      "num_iterations": num_iterations,
      "env_steps": summary.get("env_steps", 0),
      "episodes": summary.get("episodes", 0),
      "replay_size": summary.get("replay_size", 0),
      **replay_bytes(root_dir, bundle, bundles),
      "checkpoints": [b.step for b in bundles if b.problem is None],
      "damaged_checkpoints": [{"step": b.step, "problem": problem} for b, problem in damaged],
      "exports": [{"train_step": e["train_step"], "path": _shown(e["path"], root_dir, view)}
                  for e in policy_index.list_exports(policy_dir)],
      "exports_missing": policy_index.missing_exports(policy_dir, grid),
      "last_eval_return": summary.get("last_eval_return"),
      "complete": complete,
      # A running job's step (None when none runs), newer than the figures above.
      "live": live_progress(root_dir) if view is None else remote_progress(view),
      # A job run as roles (trainer.launch): each role's newest heartbeat.
      "roles": [{**role, "state": role_state(role)} for role in rolefiles.read_all(root_dir)],
  }


def _shown(path: str, root_dir: str, view) -> str:
  """A path of the run as the user names it: under gs:// for a bucket's run."""
  return path if view is None else f"{view.run.url}/{os.path.relpath(path, root_dir)}"


def remote_progress(view) -> dict[str, Any] | None:
  """A gs:// job's train step, from its lease (None when no live job holds it)."""
  lease = view.lease()
  if lease is None:
    return None
  record, age = lease
  if age > record.get("ttl_s", 60) or not isinstance(record.get("train_step"), int):
    return None
  # As old as the job's note of its step (the lease carries it at each renewal, 15 s apart).
  noted = record.get("time")
  age = time.time() - noted if isinstance(noted, (int, float)) else age
  return {"train_step": record["train_step"], "age_s": round(max(age, 0.0), 1),
          "source": f"the job's lease (pid {record.get('pid')} on {record.get('host')})"}


def replay_bytes(root_dir: str, bundle, bundles) -> dict[str, int]:
  """Bytes on disk of the newest verified bundle's replay (its own files and the
  shared segments it refers to), and of every kept bundle's, shared files
  counted once: from the manifests."""
  def replay_files(b) -> dict[str, int]:
    own = os.path.relpath(b.replay_dir, root_dir) + os.sep
    return {rel: entry["size"] for rel, entry in b.manifest.get("files", {}).items()
            if rel.startswith(own) or rel.startswith(layout.SHARED_DIR + "/")}

  every: dict[str, int] = {}
  for b in bundles:
    if b.problem is None:
      every.update(replay_files(b))
  return {"replay_bytes": sum(replay_files(bundle).values()) if bundle else 0,
          "replay_bytes_all_checkpoints": sum(every.values())}


def _mib(n: int) -> str:
  return f"{n / 2**20:,.1f} MiB"


def main(argv: list[str]) -> int:
  del argv
  if not FLAGS.root_dir:
    sys.stderr.write("trainer.status: error: --root_dir is required\n")
    return EXIT_USAGE
  if urls.is_remote(FLAGS.root_dir):
    from trainer.storage import sessions

    with sessions.reading_view(FLAGS.root_dir, status_reads) as view:
      reason = sessions.no_run_reason(view.listing)
      return _no_run(reason) if reason else show(run_status(view.path, view=view), view.path)
  reason = no_run_reason(FLAGS.root_dir)
  if reason is not None:
    return _no_run(reason)
  return show(run_status(FLAGS.root_dir), FLAGS.root_dir)


def status_reads(rel: str) -> bool:
  """The files of a gs:// run that status reads (beside the bundles' markers)."""
  return rel in (layout.CONFIG_FILE, layout.LAST_COMMIT_FILE) or (
      rel.startswith(layout.POLICY_DIR + "/") and rel.endswith(
          ("/" + layout.EXPORT_METADATA, "/" + layout.EXPORT_INDEX)))


def _no_run(reason: str) -> int:
  sys.stderr.write(f"trainer.status: error: no run at {FLAGS.root_dir} ({reason}); pass the "
                   "--root_dir of a training run\n")
  return EXIT_USAGE


def show(status: dict[str, Any], root_dir: str) -> int:
  """Prints `status` (as JSON with --json)."""
  if FLAGS.json:
    print(json.dumps(status, indent=2))
    return 0
  last_eval = status["last_eval_return"]
  live = status["live"]
  total = status["num_iterations"] or configured_total(root_dir) or "?"
  print(f"run directory   {status['root_dir']}")
  if live is not None:
    print(f"live step       {live['train_step']} / {total}  (running: {live['source']}, "
          f"{live['age_s']:.0f} s ago)")
  print("as of the last checkpoint" + (f" (step {status['train_step']}):"
                                        if status["checkpoints"] else ": none committed yet"))
  print(f"train step      {status['train_step']} / {total}"
        f"{'  (complete)' if status['complete'] else ''}")
  print(f"env steps       {status['env_steps']}")
  print(f"episodes        {status['episodes']}")
  print(f"replay size     {status['replay_size']} items, {_mib(status['replay_bytes'])} on disk "
        f"({_mib(status['replay_bytes_all_checkpoints'])} for every kept checkpoint, shared "
        "segments counted once)")
  print(f"last eval       {'n/a' if last_eval is None else f'{last_eval:.2f}'}")
  print(f"checkpoints     {status['checkpoints']}")
  for damaged in status["damaged_checkpoints"]:
    print(f"damaged         bundle {damaged['step']}: {damaged['problem']}")
  print(f"exports         {[e['train_step'] for e in status['exports']]}")
  for role in status["roles"]:
    figures = "".join(f", {key.replace('_', ' ')} {role[key]}" for key in
                      ("train_step", "env_steps", "episodes", "replay_size") if key in role)
    print(f"role            {role['role']}: {role['state']}, pid {role['pid']} on {role['host']}, "
          f"heartbeat {role['age_s']:.0f} s ago{figures}")
  if status["exports_missing"]:
    print(f"exports missing {status['exports_missing']} (trainer.export --step=N remakes one "
          "whose checkpoint bundle is still kept)")
  return 0


def entry() -> None:
  """The command: `python -m trainer.status` calls this."""
  shell.run(main, prog="trainer.status", verbosity=logging.WARNING)
