"""The policy weights, from the learner to the collectors, signed (`auth`).

The server's `variables` table holds one item: `[mac, session, train_step,
*arrays]` (the policy's variables in `tf.nest.flatten` order). The learner
pushes after every Learner call; a collector pulls before each chunk and
assigns the weights only if they verify, come from the learner session named
in the learner's heartbeat (`rolefiles`), and are not older than what it has.
TF-Agents' `ReverbVariableContainer` had the same table minus the signature.
"""

import os

import numpy as np
import reverb
import tensorflow as tf

from trainer.errors import ConfigError
from trainer.roles import auth, connection, rolefiles

TABLE = "variables"
_HEADER = 3  # mac, session, train_step


def signature(variables: list[tf.Variable]) -> list[tf.TensorSpec]:
  return [tf.TensorSpec((), tf.string), tf.TensorSpec((), tf.string),
          tf.TensorSpec((), tf.int64), *(tf.TensorSpec(v.shape, v.dtype) for v in variables)]


def table(variables: list[tf.Variable]) -> reverb.Table:
  return reverb.Table(TABLE, max_size=1, sampler=reverb.selectors.Uniform(),
                      remover=reverb.selectors.Fifo(),
                      rate_limiter=reverb.rate_limiters.MinSize(1), max_times_sampled=0,
                      signature=signature(variables))


def new_session() -> str:
  """A learner process's name for its pushes: a collector trusts only the
  session the learner's heartbeat names (an old push replayed by another client
  is of an older session)."""
  return os.urandom(8).hex()


def signed_layout(server_info: dict) -> bool:
  """Whether the server's weights table (if it has one) holds this module's
  signed layout, not TF-Agents' unsigned one of a trainer before it."""
  if TABLE not in server_info:
    return True
  saved = server_info[TABLE].signature
  first = saved[0] if isinstance(saved, (list, tuple)) and saved else None
  return getattr(first, "dtype", None) == tf.string


def check(server_info: dict, variables: list[tf.Variable], who: str,
          changes: tuple[str, ...] = ()) -> None:
  """Refuses a role whose policy variables differ from those the server's
  table was built for (another network: its weights would not load), before it
  writes or pulls anything.

  Raises:
    ConfigError: one line naming the first difference; `details`: `changes`
      (the role's config against the run's saved one), then every difference.
  """
  if TABLE not in server_info or not signed_layout(server_info):
    return  # an earlier layout: the server refuses it
  served = list(server_info[TABLE].signature[_HEADER:])
  ours = [tf.TensorSpec(v.shape, v.dtype) for v in variables]
  lines = [f"{v.name}: {_spec(b)} here, {_spec(a)} on the server"
           for v, a, b in zip(variables, served, ours, strict=False)
           if a.shape != b.shape or a.dtype != b.dtype]
  if len(served) != len(ours):
    lines.append(f"{len(ours)} policy variables here, {len(served)} on the server")
  if lines:
    raise ConfigError(
        f"{who}'s policy network differs from the one the replay server's tables were built "
        f"for ({lines[0]}); start every role with the same config (--root_dir alone uses the "
        "run's saved config.gin)", details=(*changes, *lines))


def _spec(spec: tf.TensorSpec) -> str:
  return f"{spec.dtype.name}{list(spec.shape)}"


class Pusher:
  """The learner's side."""

  def __init__(self, key: bytes, session: str, variables: list[tf.Variable],
               train_step: tf.Variable):
    self._key, self._session = key, session
    self._variables, self._train_step = variables, train_step

  def push(self, client: reverb.Client) -> None:
    values = [v.numpy() for v in self._variables]
    step = int(self._train_step.numpy())
    mac = auth.weights_mac(self._key, self._session, step, values)
    connection.insert(client, [np.bytes_(mac), np.bytes_(self._session.encode()),
                               np.int64(step), *values], TABLE)


class Puller:
  """A collector's side: `pull` assigns verified weights to `variables`."""

  def __init__(self, key: bytes, root_dir: str, variables: list[tf.Variable],
               train_step: tf.Variable, rejections: auth.Rejections):
    self._key, self._root = key, root_dir
    self.variables, self._train_step = variables, train_step
    self._rejections = rejections
    self._session, self._step = None, -1

  @property
  def has_weights(self) -> bool:
    """Whether verified weights were assigned (since this collector started)."""
    return self._session is not None

  def pull(self, client: reverb.Client, timeout_s: int) -> bool:
    """Whether the server held weights that verify and are new; then they are assigned."""
    if not client.server_info(timeout_s)[TABLE].current_size:
      return False
    item = connection.sample_one(client, TABLE)
    if item is None:  # emptied meanwhile
      return False
    mac, session, step = item[0].item(), item[1].item().decode(errors="replace"), int(item[2])
    values = list(item[_HEADER:])
    if not self._accept(mac, session, step, values):
      return False
    for variable, value in zip(self.variables, values, strict=True):
      variable.assign(value)
    self._train_step.assign(step)
    self._session, self._step = session, step
    return True

  def _accept(self, mac: bytes, session: str, step: int, values: list[np.ndarray]) -> bool:
    if session == self._session and step == self._step:
      return False  # what it already has
    if len(values) != len(self.variables) or not auth.verify(
        auth.weights_mac(self._key, session, step, values), mac):
      self._rejections.reject("weights", "policy weights on the replay server do not carry the "
                              "job's signature")
      return False
    # Genuine but not current: an earlier learner's (a restored server holds its
    # weights), or older than those in use (a restored server, or a replay): wait.
    if session != self._learner_session():
      return False
    return not (session == self._session and step < self._step)

  def _learner_session(self) -> str | None:
    return (rolefiles.read(self._root, rolefiles.LEARNER) or {}).get("session")
