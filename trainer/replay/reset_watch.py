"""Noticing that a client reset a replay table.

Reverb lets any client `reset()` a table (it empties it, and its insert count
starts again from 0); the roles cannot stop that, but they notice it: within
one server process a table's count of completed inserts never goes down
otherwise (a checkpoint restore starts another process, with the saved count).
"""

from collections.abc import Iterable


class ResetWatch:
  """Remembers each table's insert count; `reset_tables` names those whose count went down."""

  def __init__(self):
    self._inserts: dict[str, int] = {}

  def forget(self) -> None:
    """After connecting to another server process."""
    self._inserts.clear()

  def reset_tables(self, server_info: dict, names: Iterable[str]) -> list[str]:
    reset = []
    for name in names:
      count = server_info[name].rate_limiter_info.insert_stats.completed
      if count < self._inserts.get(name, 0):
        reset.append(name)
      self._inserts[name] = count
    return reset
