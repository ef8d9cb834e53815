r"""`python -m trainer.sweep`: configurations x seeds, each member an ordinary run directory.

  python -m trainer.sweep --root_dir=sweeps/NAME --gin_file=configs/X.gin \
      --grid='create_dqn_agent.learning_rate=[1e-3, 2e-3]' [--grid=...] --seeds=5 \
      [--gin_bindings=...] [--parallel=N] [--threads=T]
  python -m trainer.sweep --root_dir=sweeps/NAME            # rerun: goes on with the saved sweep
  python -m trainer.sweep --root_dir=sweeps/NAME ... --prepare   # write the definition only
  python -m trainer.sweep --root_dir=sweeps/NAME --member=K      # one member (Slurm, Kubernetes)

Members are every combination of the --grid values, each with seeds 0 .. N-1
(`train.seed`), numbered configuration-major; member K's run directory is
ROOT/members/c<config>_seed<seed>. The definition is saved in ROOT/sweep.json
on the first run; a rerun whose flags define another sweep is refused with
the differences, and a rerun with --root_dir alone goes on with the saved one.

Locally (no --member) it runs --parallel members at a time, each with
--threads TensorFlow threads (default: the cores over --parallel), skips
complete members and resumes stopped ones. --member=K runs member K alone in
the foreground (it becomes that member's trainer.train: its signals, its exit
code), for a Slurm array task or a Kubernetes Indexed Job (cluster/).

Exit codes: 0 every member complete (--member: that one); 75 stopped by
SIGTERM/Ctrl-C after each running member committed its checkpoint: rerun to go
on; 1 a member failed (named, with its log; the others ran on); 2 a bad flag,
grid or a changed definition (nothing was written); 3 the sweep directory is
held by another trainer.sweep. --member passes on trainer.train's own codes.
"""

import json
import os
import sys
import tempfile

from absl import flags

from trainer.cli import shell
from trainer.config import gin_config
from trainer.errors import EXIT_OK, ConfigError
from trainer.rundir import fileio, run_lock
from trainer.storage import urls
from trainer.sweeps import definition as definition_lib
from trainer.sweeps import runner

flags.DEFINE_string("root_dir", None, "Sweep directory: its definition and its members' runs (a path "
                    "or gs://BUCKET/PATH).")
flags.DEFINE_multi_string("gin_file", [], "Gin config files every member parses, in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings every member applies after the files.")
flags.DEFINE_multi_string("grid", [], "PARAMETER=[VALUE, ...]: a swept gin parameter; several "
                          "--grid flags make their product.")
flags.DEFINE_integer("seeds", None, "Seeds per configuration (train.seed 0 .. N-1).")
flags.DEFINE_integer("parallel", 1, "Members run at once on this machine.")
flags.DEFINE_integer("threads", None, "TensorFlow threads per member (default: cores / parallel).")
flags.DEFINE_integer("member", None, "Run only this member (0 .. members-1) in the foreground.")
flags.DEFINE_bool("prepare", False, "Write the sweep's definition, list its members, and exit.")
FLAGS = flags.FLAGS

LOCK_FILE = "sweep.lock"


def _definition(root_dir: str) -> definition_lib.Definition:
  """The sweep to run: the flags' (checked against the saved one) or the saved one."""
  saved = definition_lib.load(root_dir)
  defined = FLAGS.gin_file or FLAGS.grid or FLAGS.gin_bindings or FLAGS.seeds is not None
  if not defined:
    if saved is None:
      raise ConfigError(f"{root_dir} holds no {definition_lib.DEFINITION_FILE}; start a sweep "
                        "with --gin_file=configs/X.gin --grid='PARAMETER=[A, B]' --seeds=N")
    return saved
  if FLAGS.seeds is None:
    raise ConfigError("--seeds is required with a sweep's definition: pass --seeds=N (seeds 0 .. "
                      "N-1 per configuration)")
  new = definition_lib.Definition.create(FLAGS.gin_file, FLAGS.gin_bindings, FLAGS.grid,
                                         FLAGS.seeds)
  # The files' and every member's bindings' syntax and known values, without TensorFlow.
  for member in new.members:
    gin_config.precheck(root_dir, [path for path, _ in new.gin_files],
                        [*new.gin_bindings, *member.bindings])
  if saved is not None:
    changes = saved.diff(new)
    if changes:
      raise ConfigError(
          f"the sweep differs from {os.path.join(root_dir, definition_lib.DEFINITION_FILE)} in "
          f"{len(changes)} way(s), listed below: use a new --root_dir, or rerun with "
          "--root_dir alone to go on with the saved sweep", details=changes)
    return saved
  os.makedirs(root_dir, exist_ok=True)
  fileio.atomic_write_text(os.path.join(root_dir, definition_lib.DEFINITION_FILE),
                           json.dumps(new.to_json(), indent=2) + "\n")
  return new


def _list(definition: definition_lib.Definition, root_dir: str) -> None:
  for member in definition.members:
    step, total = runner.member_progress(definition_lib.member_dir(root_dir, member))
    sys.stdout.write(f"{member.index:4d}  {member.name:16s} "
                     f"{definition.configs[member.config]['label']}, seed {member.seed}"
                     f"{f'  (step {step} of {total})' if total else ''}\n")
  n = len(definition.members)
  sys.stdout.write(f"{n} members in {root_dir}: run them with --member=0 .. {n - 1} (Slurm: "
                   f"--array=0-{n - 1}; Kubernetes: completions: {n}), or locally without "
                   "--member\n")


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise ConfigError(f"unexpected arguments {argv[1:]}; pass swept values with --grid")
  root_dir = FLAGS.root_dir
  if FLAGS.parallel < 1:
    raise ConfigError(f"--parallel must be >= 1 (members at once), got {FLAGS.parallel}")
  if FLAGS.threads is not None and FLAGS.threads < 1:
    raise ConfigError(f"--threads must be >= 1 (TensorFlow threads per member), got "
                      f"{FLAGS.threads}")
  if urls.is_remote(root_dir):
    return _remote_sweep(root_dir)
  gin_config.check_root_dir(root_dir)
  definition = _definition(root_dir)
  if FLAGS.member is not None:
    os.makedirs(os.path.join(root_dir, definition_lib.MEMBERS_DIR), exist_ok=True)
    _become_member(definition, root_dir)
  if FLAGS.prepare:
    _list(definition, root_dir)
    return EXIT_OK
  with run_lock.RunLock(root_dir, LOCK_FILE, holder="trainer.sweep"):
    sweep = runner.LocalRunner(definition, root_dir, parallel=FLAGS.parallel,
                               threads=FLAGS.threads)
    sweep.install()
    return sweep.run()


def _become_member(definition: definition_lib.Definition, members_root: str) -> None:
  """This process becomes the member's trainer.train: the scheduler's signals reach it
  directly, and its exit code is the task's."""
  member = definition.member(FLAGS.member)
  os.execv(sys.executable, [sys.executable, "-m", "trainer.train",
                            *definition.train_args(member, members_root)])


def _remote_sweep(url: str) -> int:
  """A sweep on gs://: its files staged here (uploaded as they change), its members gs://
  runs of their own (each a staged job with its lease)."""
  from trainer.storage import sessions

  if FLAGS.member is not None or FLAGS.prepare:  # many array tasks at once: no runner's lease
    directory = tempfile.mkdtemp(prefix="trainer-sweep-")
    create = sessions.pull_sweep_files(url, directory)
    definition = _definition(directory)
    create(definition_lib.DEFINITION_FILE)
    if FLAGS.member is not None:
      _become_member(definition, url)
    _list(definition, url)
    return EXIT_OK
  with sessions.staged_sweep(url) as (staging, publish):
    definition = _definition(staging)
    publish()
    sweep = runner.LocalRunner(definition, staging, parallel=FLAGS.parallel,
                               threads=FLAGS.threads, members_root=url, publish=publish)
    sweep.install()
    return sweep.run()


def entry() -> None:
  shell.run(main, prog="trainer.sweep")
