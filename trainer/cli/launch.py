r"""`python -m trainer.launch`: every role of a job on this machine, supervised.

  python -m trainer.launch --root_dir=DIR --gin_file=configs/X.gin [--gin_bindings=...] \
      [--collectors=N] [--allow_config_change]

Exit codes: 0 the learner reached its total; 75 stopped by SIGTERM/Ctrl-C after
the learner committed a bundle; 2 or 3 a role refused the config or the run
directory (its error line is printed), or 3 the run directory is held by
another launch, a live replay server or a live job (nothing is written); 1 a
role kept failing, or the learner did not stop within the stop grace (killed).
"""

import os
import sys

from absl import flags

from trainer.cli import shell
from trainer.config import gin_config
from trainer.errors import EXIT_USAGE, ConfigError, TrainerError
from trainer.roles import launch, rolefiles
from trainer.storage import urls

flags.DEFINE_string("root_dir", None, "Run directory, shared by every role (a path, or "
                    "gs://BUCKET/PATH: the roles then share a staging directory here).")
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
flags.DEFINE_integer("collectors", 1, "Collector processes.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume even though the config changes the experiment (the learner decides).")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
  def refuse(message: str) -> int:
    sys.stderr.write(f"trainer.launch: error: {message}\n")
    return EXIT_USAGE

  if len(argv) > 1:
    return refuse(f"unexpected arguments {argv[1:]}; use --gin_bindings for settings")
  if not FLAGS.root_dir:
    return refuse("--root_dir is required (the run directory every role shares)")
  if not 1 <= FLAGS.collectors <= rolefiles.MAX_COLLECTORS:
    return refuse(f"--collectors={FLAGS.collectors} must be from 1 to "
                  f"{rolefiles.MAX_COLLECTORS}")
  if urls.is_remote(FLAGS.root_dir):
    # Every role on this machine, in the run's staging directory; launch holds the lease
    # and the learner seals each commit in the bucket (trainer.storage).
    from trainer.storage import sessions

    try:
      with sessions.staged_roles(FLAGS.root_dir) as staging:
        return _launch(staging, refuse)
    except TrainerError as e:
      sys.stderr.write(f"trainer.launch: error: {e}\n")
      return e.exit_code
  return _launch(FLAGS.root_dir, refuse)


def _launch(root_dir: str, refuse) -> int:
  if not FLAGS.gin_file and not os.path.isfile(os.path.join(root_dir, "config.gin")):
    return refuse(f"{FLAGS.root_dir} holds no run to resume; pass --gin_file=configs/X.gin")
  try:  # before anything is written (roles/ included), and without TensorFlow
    gin_config.precheck(root_dir, FLAGS.gin_file, FLAGS.gin_bindings)
  except ConfigError as e:
    return refuse(str(e))
  config_args = [*(f"--gin_file={f}" for f in FLAGS.gin_file),
                 *(f"--gin_bindings={b}" for b in FLAGS.gin_bindings)]
  try:
    return launch.Launch(root_dir, config_args, FLAGS.collectors,
                         FLAGS.allow_config_change).run()
  except TrainerError as e:
    sys.stderr.write(f"trainer.launch: error: {e}\n")
    return e.exit_code


def entry() -> None:
  shell.run(main, prog="trainer.launch")
