r"""Runs or resumes a training job.

  python -m trainer.train --root_dir=DIR --gin_file=configs/dqn_cartpole.gin \
      [--gin_file=...] [--gin_bindings='train.num_iterations=50000' ...]

Run the same command again after a kill to resume; `--root_dir` alone resumes
with the run's saved config. Exit codes are listed in `trainer.errors`.
"""

import functools

from trainer.cli import quiet  # noqa: E402  (first: before TensorFlow and Gym load)

quiet.before_imports()

from absl import flags  # noqa: E402

from trainer import errors  # noqa: E402
from trainer.cli import shell  # noqa: E402
from trainer.config import gin_config  # noqa: E402
from trainer.rundir.signals import StopRequest  # noqa: E402
from trainer.storage import urls  # noqa: E402

flags.DEFINE_string("root_dir", None, "Run directory: checkpoints, exports, summaries; a local "
                    "path or gs://BUCKET/PATH.")
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume even though the config changes the experiment.")
FLAGS = flags.FLAGS


def main(argv: list[str], stop: StopRequest | None = None) -> int:
  """`stop`: the process's signal handler, installed before the slow imports."""
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments {argv[1:]}; use --gin_bindings for settings")
  if urls.is_remote(FLAGS.root_dir):
    # The job runs in a local staging directory, its lease held and its newest verified
    # bundle pulled; what it commits there is sealed in the bucket (trainer.storage).
    from trainer.storage import sessions

    with sessions.staged_job(FLAGS.root_dir) as staging:
      return _train(staging, stop)
  return _train(FLAGS.root_dir, stop)


def _train(root_dir: str, stop: StopRequest | None) -> int:
  # What needs no TensorFlow first: a bad command line is refused in a fraction of a second.
  gin_config.precheck(root_dir, FLAGS.gin_file, FLAGS.gin_bindings)
  from trainer.cli import registry  # noqa: F401  (what configs name; loads TensorFlow)
  from trainer.loops import job

  run_config = gin_config.load(root_dir, FLAGS.gin_file, FLAGS.gin_bindings,
                               allow_config_change=FLAGS.allow_config_change)
  return job.train(root_dir, run_config, stop=stop)


def entry(stop: StopRequest) -> None:
  """The command: `python -m trainer.train` (trainer/train.py) calls this."""
  shell.run(functools.partial(main, stop=stop), prog="trainer")
