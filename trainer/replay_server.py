r"""The replay server role of a job run as roles (see trainer/cli/roles.py)."""

from trainer.rundir.signals import StopRequest

# First, before the slow imports: a SIGTERM during start-up is a stop request (exit 75).
STOP = StopRequest("stopping the replay server")
if __name__ == "__main__":
  import sys

  from trainer.replay import bind

  # With the library that keeps the server off the other interfaces.
  bind.reexec(sys.argv, "trainer.replay_server", bind.requested(sys.argv))
  STOP.install()
  from trainer.cli import roles

  roles.server_entry(STOP)
