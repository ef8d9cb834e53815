"""Finding the replay server, and waiting for it when it is gone."""

import threading
import time
from collections.abc import Callable

import reverb
import tensorflow as tf
from absl import logging

from trainer.errors import one_line
from trainer.roles import rolefiles

_POLL_S = 1.0
_LOG_EVERY_S = 30.0


# What Reverb's client and its TF ops raise when the server stops answering.
ERRORS = (RuntimeError, ConnectionError, reverb.errors.DeadlineExceededError,
          tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.InternalError,
          tf.errors.AbortedError, tf.errors.UnknownError)


def insert(client: reverb.Client, data: list, table: str) -> None:
  """`client.insert` of one item, without its retries: Reverb's writer, closed,
  retries a server that is gone for ever (and a server restarted on another
  port is never back), which hung the learner's weight push after a server
  was killed. Here a write to a gone server is lost instead: the restarted
  server holds the newest bundle's items, and the roles write theirs again."""
  writer = client.writer(max_sequence_length=1)
  try:
    writer.append(data)
    writer.create_item(table, 1, 1.0)
  finally:
    writer.close(retry_on_unavailable=False)


SAMPLE_TIMEOUT_S = 10.0


def sample_one(client: reverb.Client, table: str, timeout_s: float = SAMPLE_TIMEOUT_S):
  """One item's data from `table`, or None if none comes within `timeout_s`.
  Reverb's Python sampler has no timeout, and blocks for as long as its table
  is empty: a table emptied (reset by another client) between a look at its
  size and the sample would hold the role for ever. The sample runs in a
  thread, which ends once the table is written again."""
  result = []

  def sample() -> None:
    try:
      result.append(next(client.sample(table, 1))[0].data)
    except Exception as e:  # noqa: BLE001  (handed to the caller)
      result.append(e)

  thread = threading.Thread(target=sample, name=f"sample-{table}", daemon=True)
  thread.start()
  thread.join(timeout_s)
  if not result:
    return None
  if isinstance(result[0], Exception):
    raise result[0]
  return result[0]


def reachable(address: str | None, timeout: int = 2) -> bool:
  if not address:
    return False
  try:
    reverb.Client(address).server_info(timeout)
    return True
  except Exception:  # noqa: BLE001  (any failure to answer: not reachable)
    return False


class ServerLink:
  """The replay server's address (a fixed `--replay_address`, else what the
  server wrote in the run directory), and a wait for it that logs."""

  def __init__(self, root_dir: str, address: str | None, who: str):
    self._root, self._fixed, self._who = root_dir, address, who

  @property
  def address(self) -> str | None:
    return self._fixed or rolefiles.server_address(self._root)

  def wait(self, stopped: Callable[[], bool], reason: str | None = None) -> str | None:
    """Blocks until the server answers (its address, re-read each time) or
    `stopped()`; returns the address, or None if stopped. A server may be
    started later, so a useless address file is waited on too, and the log
    says what is wrong with it."""
    start = last_log = time.monotonic()
    said = None
    while not stopped():
      address = self.address
      if reachable(address):
        if said:
          logging.info("%s: the replay server at %s answers%s (after %.0f s).", self._who,
                       address, " again; reconnecting" if reason else "",
                       time.monotonic() - start)
        return address
      problem = None if self._fixed else rolefiles.server_problem(self._root)
      why = problem or (f"at {address}" if address else "no address in the run directory yet")
      now = time.monotonic()
      if why != said or now - last_log > _LOG_EVERY_S:
        # At start-up the server may simply not be up yet: no warning for that.
        log = logging.warning if reason or said or problem else logging.info
        log("%s: waiting for the replay server (%s)%s.", self._who, why,
            f" ({reason})" if reason else "")
        said, last_log = why, now
      time.sleep(_POLL_S)
    return None


def describe(error: BaseException) -> str:
  return one_line(error, 160)
