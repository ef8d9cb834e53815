"""StopRequest in a real process that signals itself: what a repeat means."""

import signal
import subprocess
import sys

import pytest

from tests.conftest import REPO, cli_env

SCRIPT = r"""
import os, signal, sys, time
from trainer.rundir.signals import StopRequest
stop = StopRequest()
stop.install()
first, second = (getattr(signal, name) for name in sys.argv[1:3])
os.kill(os.getpid(), first)
time.sleep(0.1)
os.kill(os.getpid(), second)
time.sleep(0.1)
print("still running; stop requested:", stop.requested, flush=True)
"""


def _run(first: str, second: str):
  return subprocess.run([sys.executable, "-c", SCRIPT, first, second], cwd=REPO, env=cli_env(),
                        capture_output=True, text=True, timeout=60)


def test_repeated_sigterm_within_the_window_is_one_stop():
  out = _run("SIGTERM", "SIGTERM")  # Slurm: the job-wide signal plus the batch script's forward
  assert out.returncode == 0, out.stderr
  assert "still running; stop requested: True" in out.stdout


@pytest.mark.parametrize("first,second", [("SIGINT", "SIGINT"), ("SIGTERM", "SIGINT"),
                                          ("SIGINT", "SIGTERM")])
def test_any_other_second_signal_exits_at_once(first, second):
  out = _run(first, second)
  assert out.returncode == 128 + getattr(signal, second)
  assert "still running" not in out.stdout
  assert f"second signal ({second}): exiting now with code {out.returncode}, not 75" in out.stderr
