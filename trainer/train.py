r"""Runs or resumes a training job.

  python -m trainer.train --root_dir=DIR --gin_file=configs/dqn_cartpole.gin \
      [--gin_file=...] [--gin_bindings='train.num_iterations=50000' ...]

Run the same command again after a kill to resume; `--root_dir` alone resumes
with the run's saved gin_config. Exit codes are listed in `trainer.errors`.
"""

import os

from trainer.rundir.signals import StopRequest

# First of all, before the imports that take seconds (TensorFlow): a SIGTERM at
# any moment of start-up is a stop request, and the job exits 75, not 143.
STOP = StopRequest()
if __name__ == "__main__":
  STOP.install()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads: quiet C++ start-up noise.

from absl import flags, logging  # noqa: E402

from trainer import cli, errors  # noqa: E402
from trainer.config import gin_config, registry  # noqa: E402

flags.DEFINE_string("root_dir", None, "Run directory: checkpoints, exports, summaries.")
flags.DEFINE_multi_string("gin_file", [], "Gin config files, parsed in order.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings applied after the files.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume even though the config changes the experiment.")
FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
  if len(argv) > 1:
    raise errors.ConfigError(f"unexpected arguments {argv[1:]}; use --gin_bindings for settings")
  run_config = gin_config.load(FLAGS.root_dir, FLAGS.gin_file, FLAGS.gin_bindings,
                           allow_config_change=FLAGS.allow_config_change)
  for change in run_config.changes:
    logging.info("Config change accepted: %s", change)
  return registry.pipeline.train(FLAGS.root_dir, run_config, stop=STOP)


if __name__ == "__main__":
  cli.run(main, prog="trainer")
