r"""Runs or resumes a training job (the command itself: trainer/cli/train.py).

  python -m trainer.train --root_dir=DIR --gin_file=configs/dqn_cartpole.gin \
      [--gin_file=...] [--gin_bindings='train.num_iterations=50000' ...]
"""

from trainer.rundir.signals import StopRequest

# First of all, before the imports that take seconds (TensorFlow): a SIGTERM at
# any moment of start-up is a stop request, and the job exits 75, not 143.
STOP = StopRequest()
if __name__ == "__main__":
  import sys

  from trainer.replay import bind

  # An in-process Reverb replay serves this process alone: loopback only.
  bind.reexec(sys.argv, "trainer.train", bind.LOOPBACK)
  STOP.install()
  from trainer.cli import train

  train.entry(STOP)
