r"""The learn role of a job run as roles (see trainer/cli/roles.py)."""

from trainer.rundir.signals import StopRequest

# First, before the slow imports: a SIGTERM during start-up is a stop request (exit 75).
STOP = StopRequest()
if __name__ == "__main__":
  STOP.install()
  from trainer.cli import roles

  roles.learn_entry(STOP)
