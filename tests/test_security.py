"""Nobody else gets in: the replay server listens on loopback only, and what an
outside client writes to it is not used nor committed (docs/security.md)."""

import json
import os
import pathlib
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tests.conftest import DQN_CONFIG, REPO, cli_env, committed_steps, wait_for
from trainer.errors import RunDirError
from trainer.replay import bind
from trainer.replay.reset_watch import ResetWatch
from trainer.roles import auth, rolefiles

# --- the parts, without a job --------------------------------------------------


@pytest.mark.fast
def test_the_job_key_is_created_once_private_and_refused_when_others_can_read_it(tmp_path):
  key = auth.job_key(str(tmp_path))
  path = tmp_path / "roles" / "job.key"
  assert len(key) == auth.KEY_BYTES and stat.S_IMODE(path.stat().st_mode) == 0o600
  assert auth.job_key(str(tmp_path)) == key  # read, not made again
  path.chmod(0o640)
  with pytest.raises(RunDirError, match=r"readable by others \(mode 0640\).*chmod 600"):
    auth.job_key(str(tmp_path))


@pytest.mark.fast
def test_signatures_bind_every_field():
  key, other = b"k" * 32, b"o" * 32
  values = [np.arange(6, dtype=np.float32).reshape(2, 3)]
  mac = auth.weights_mac(key, "s1", 7, values)
  assert auth.verify(auth.weights_mac(key, "s1", 7, [v.copy() for v in values]), mac)
  for changed in (auth.weights_mac(other, "s1", 7, values), auth.weights_mac(key, "s2", 7, values),
                  auth.weights_mac(key, "s1", 8, values),
                  auth.weights_mac(key, "s1", 7, [values[0] + 1]),
                  auth.weights_mac(key, "s1", 7, [values[0].reshape(3, 2)])):
    assert not auth.verify(changed, mac)
  counters = auth.counters_mac(key, 0, 100, 5)
  assert auth.verify(auth.counters_mac(key, 0, 100, 5), np.bytes_(counters))
  assert not auth.verify(auth.counters_mac(key, 1, 100, 5), counters)  # another task's record
  assert not auth.verify(auth.counters_mac(key, 0, 10**9, 5), counters)
  assert not auth.verify(counters, "not bytes")


@pytest.mark.fast
def test_counters_beyond_what_reached_the_replay_are_implausible():
  assert auth.plausible_total(1000, 10, 980, sequence_length=2, open_episodes=2)
  assert not auth.plausible_total(10**9, 10, 980, sequence_length=2, open_episodes=2)
  assert not auth.plausible_total(100, 101, 980, sequence_length=2, open_episodes=2)


@pytest.mark.fast
def test_a_reset_is_a_count_of_inserts_that_went_down():
  class Info:
    def __init__(self, completed):
      self.rate_limiter_info = type("R", (), {"insert_stats": type("S", (), {
          "completed": completed})()})()

  watch = ResetWatch()
  assert watch.reset_tables({"a": Info(10), "b": Info(5)}, ["a", "b"]) == []
  assert watch.reset_tables({"a": Info(12), "b": Info(0)}, ["a", "b"]) == ["b"]
  watch.forget()
  assert watch.reset_tables({"a": Info(0), "b": Info(0)}, ["a", "b"]) == []


@pytest.mark.fast
def test_proc_net_addresses_are_read_as_ips():
  assert bind._hex_address("0100007F") == "127.0.0.1"
  assert bind._hex_address("00000000") == "0.0.0.0"
  assert bind._hex_address("0000000000000000FFFF00000100007F") == "127.0.0.1"  # v4-mapped
  assert bind._hex_address("00000000000000000000000000000000") == "::"
  assert bind.exposed(["127.0.0.1", "::"]) and not bind.exposed(["127.0.0.1"])


def test_a_finished_checkpoint_nobody_moved_is_removed_and_logged_once(tmp_path, caplog):
  from trainer.roles.replay_server import UNCLAIMED_S, _Guard

  def checkpoint(name: str, age_s: float, done: bool = True) -> pathlib.Path:
    path = tmp_path / name
    path.mkdir()
    if done:
      (path / "DONE").write_text("")
      os.utime(path / "DONE", (time.time() - age_s,) * 2)
    return path

  old, older = checkpoint("old", UNCLAIMED_S + 5), checkpoint("older", UNCLAIMED_S + 50)
  fresh, writing = checkpoint("fresh", 1), checkpoint("writing", UNCLAIMED_S + 5, done=False)
  with caplog.at_level("ERROR"):
    assert _Guard(str(tmp_path), []).check({})
  assert not old.exists() and not older.exists() and fresh.exists() and writing.exists()
  assert caplog.text.count("nobody claimed") == 1


def test_a_sample_from_a_table_emptied_meanwhile_gives_up():
  import reverb

  from trainer.roles import connection

  table = reverb.Table("q", max_size=10, sampler=reverb.selectors.Uniform(),
                       remover=reverb.selectors.Fifo(), rate_limiter=reverb.rate_limiters.MinSize(1))
  server = reverb.Server([table])
  try:
    client = reverb.Client(f"127.0.0.1:{server.port}")
    start = time.monotonic()
    assert connection.sample_one(client, "q", timeout_s=0.5) is None  # Reverb alone: for ever
    assert time.monotonic() - start < 5
    client.insert([np.int64(7)], priorities={"q": 1.0})
    assert [int(x) for x in connection.sample_one(client, "q", timeout_s=5)] == [7]
  finally:
    server.stop()


def test_a_signed_record_survives_the_servers_round_trip_whatever_its_bytes():
  """A raw HMAC digest that ends in a zero byte (1 in 256) came back a byte short
  from Reverb, and a genuine record was taken for a forged one."""
  import hashlib
  import hmac

  import reverb

  from trainer.roles import tables

  key = b"k" * 32
  # Counters whose raw digest would end in a zero byte.
  def raw_digest(env_steps: int) -> bytes:  # auth.counters_mac before its hex encoding
    record = struct.pack("<qqq", 0, env_steps, 1)
    return hmac.new(key, b"trainer.counters" + struct.pack("<Q", len(record)) + record,
                    hashlib.sha256).digest()

  steps = next(n for n in range(100_000) if raw_digest(n)[-1] == 0)
  server = reverb.Server(tables.counter_tables()[:1])
  try:
    client = reverb.Client(f"127.0.0.1:{server.port}")
    tables.write_counters(client, key, 0, steps, 1)
    assert tables.read_counters(client, key, tasks=[0]) == tables.Counters({0: (steps, 1)}, [])
  finally:
    server.stop()


# --- an attacker on loopback against a live job ----------------------------------

BINDINGS = {
    "train.num_iterations": 10**9,  # stopped by SIGTERM once the attacks are over
    "train.checkpoint_interval": 40,
    "train.policy_export_interval": 1000,
    "train.eval_interval": 0,
    "train.initial_collect_steps": 50,
    "train.batch_size": 8,
    "train.log_interval": 40,
    "train.summary_interval": 0,
    "train.collect_steps_per_iteration": 4,
    "train.train_steps_per_iteration": 4,
    "create_dqn_agent.fc_layer_params": "(16,)",
    "create_uniform_replay.capacity": 5000,
    "create_gym_environment.max_episode_steps": 50,
}
HUGE = 10**9


def _listening_addresses(port: int) -> set[str]:
  """Every local address some process listens on at `port` (/proc/net/tcp{,6})."""
  found = set()
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for row in pathlib.Path(table).read_text().splitlines()[1:]:
      fields = row.split()
      address, _, hex_port = fields[1].partition(":")
      if fields[3] == "0A" and int(hex_port, 16) == port:
        found.add(bind._hex_address(address))
  return found


def _forged_weights(client, session: str) -> list:
  """Policy weights of the right shapes, a huge train step, a made-up signature."""
  specs = client.server_info()["variables"].signature
  values = [np.full(s.shape, 1e6, s.dtype.as_numpy_dtype) for s in specs[3:]]
  return [np.bytes_(b"\x00" * 32), np.bytes_(session.encode()), np.int64(HUGE), *values]


def _checkpoint(client) -> str | None:
  """The attacker's checkpoint (Reverb keeps only its newest: one being written can be removed
  for the learner's, and the call fails)."""
  try:
    return client.checkpoint()
  except RuntimeError:
    return None


class _Bounded:
  """The attacker's Reverb client, each call bounded: Reverb's calls take no timeout, and
  one to a server that is gone (the job stopped) would block the test for ever."""

  def __init__(self, client, proc, launch_log: pathlib.Path, timeout_s: float = 60.0):
    self._client, self._proc, self._log, self._timeout_s = client, proc, launch_log, timeout_s

  def run(self, fn, what: str):
    box = {}

    def call():
      try:
        box["value"] = fn()
      except BaseException as e:  # noqa: BLE001  (re-raised in the test's thread)
        box["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(self._timeout_s)
    if thread.is_alive():
      pytest.fail(f"the attacker's {what} did not return in {self._timeout_s:.0f} s (launch's "
                  f"exit code: {self._proc.poll()}); launch's log ends:\n"
                  f"{self._log.read_text()[-3000:]}")
    if "error" in box:
      raise box["error"]
    return box.get("value")

  def __getattr__(self, name):
    method = getattr(self._client, name)
    return lambda *args, **kwargs: self.run(lambda: method(*args, **kwargs), f"{name}()")


def _log(root: pathlib.Path, role: str) -> str:
  return (root / "roles" / "logs" / f"{role}.log").read_text()


def test_an_attacker_on_loopback_changes_nothing_the_job_uses_or_commits(tmp_path):
  import reverb

  root = tmp_path / "run"
  launch_log = open(tmp_path / "launch.log", "w")
  proc = subprocess.Popen(
      [sys.executable, "-m", "trainer.launch", f"--root_dir={root}", f"--gin_file={DQN_CONFIG}",
       "--collectors=1", *(f"--gin_bindings={k} = {v}" for k, v in BINDINGS.items())],
      cwd=REPO, env=cli_env(), stdout=launch_log, stderr=subprocess.STDOUT)
  try:
    def collecting_with_the_learners_policy():
      beat = rolefiles.read(str(root), "collector-0") or {}
      return beat.get("policy_step", 0) > 0 and committed_steps(root)

    wait_for(collecting_with_the_learners_policy, 300, "the collector to use the learner's weights",
             proc)
    address = rolefiles.server_address(str(root))
    port = int(address.rsplit(":", 1)[1])
    # Loopback only: not every interface, as reverb.Server alone would listen.
    assert _listening_addresses(port) == {"127.0.0.1"}, _listening_addresses(port)
    assert stat.S_IMODE((root / "roles" / "job.key").stat().st_mode) == 0o600

    raw = reverb.Client(f"127.0.0.1:{port}")
    client = _Bounded(raw, proc, tmp_path / "launch.log")
    session = rolefiles.read(str(root), "learner")["session"]
    # 1. A checkpoint nobody in the job asked for.
    while (unasked := _checkpoint(client)) is None:
      time.sleep(0.1)
    # 2. Forged policy weights (the learner's own session, a made-up signature), again and again
    #    (the learner's next push replaces each).
    for _ in range(10):
      client.insert(_forged_weights(client, session), priorities={"variables": 1.0})
      time.sleep(0.2)
    # 3. Forged counter records: a billion env steps for collector 0, and for a collector 5
    #    that does not exist (nobody overwrites it: the learner reads it at every checkpoint).
    #    Collector 5's first, seen by the learner before collector 0's (each kind is logged once).
    for table in ("counters_5", "counters_0"):
      client.insert([np.bytes_(b"\x01" * 32), np.int64(HUGE), np.int64(HUGE // 100)],
                    priorities={table: 1.0})
      wait_for(lambda: "collector 5's counters" in _log(root, "learner"), 120,
               "the learner to refuse collector 5's forged counters", proc)
    # 4. A genuine counter record of collector 0, written again later (replayed).
    time.sleep(1)
    old = client.run(lambda: next(raw.sample("counters_0", 1))[0].data, "sample()")
    time.sleep(2)
    for _ in range(3):
      client.insert(list(old), priorities={"counters_0": 1.0})
      time.sleep(0.3)
    # 5. Checkpoints asked for again and again (Reverb keeps only its newest: one may replace
    #    the learner's before the learner moved it into its bundle).
    for _ in range(40):
      _checkpoint(client)
      time.sleep(0.05)
    # None of them is in a bundle: Reverb replaced them, or the server removed the last.
    wait_for(lambda: not os.path.exists(unasked), 90, "the unasked checkpoint to be removed",
             proc)
    # 6. The weights' and the counters' tables emptied again and again (a role that samples
    #    one between a look at its size and the sample must not wait for ever).
    for _ in range(50):
      client.reset("variables")
      client.reset("counters_0")
      time.sleep(0.02)
    # 7. Every replay shard emptied.
    shards = [t for t in client.server_info() if t.startswith("uniform_table")]
    incarnation = rolefiles.server_incarnation(str(root))
    for shard in shards:
      client.reset(shard)

    # The server restarts from the newest bundle; the job goes on and commits again.
    wait_for(lambda: rolefiles.server_incarnation(str(root)) not in (None, incarnation), 120,
             "the replay server to restart from the newest bundle", proc)
    after_attacks = committed_steps(root)[-1]
    wait_for(lambda: committed_steps(root)[-1] >= after_attacks + 80, 240,
             "two more bundles after the attacks", proc)
    # The collector may have restarted meanwhile (stuck in a write to the old server): its
    # first heartbeat names no policy yet.
    wait_for(collecting_with_the_learners_policy, 120, "the collector to use the learner's "
             "weights after the attacks", proc)
    beat = rolefiles.read(str(root), "collector-0")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=180) == 75
  finally:
    if proc.poll() is None:
      proc.kill()
    launch_log.close()

  # Nothing the attacker sent was used ...
  assert 0 < beat.get("policy_step", 0) < HUGE, beat
  # ... nor committed: every bundle counts what the collector really collected.
  for step in committed_steps(root):
    state = json.loads((root / "train" / "bundles" / f"{step:010d}" / "state.json").read_text())
    assert state["collect"]["env_steps"] < 100_000, (step, state["collect"])
  # And each log says so once.
  collector, learner, server = (_log(root, r) for r in ("collector-0", "learner", "replay_server"))
  assert collector.count("policy weights on the replay server do not carry the job's "
                         "signature") == 1, collector[-3000:]
  assert collector.count("though it did not restart") == 1, collector[-3000:]
  assert learner.count("collector 5's counters on the replay server do not carry the job's "
                       "signature") == 1, learner[-3000:]
  assert "were emptied by a client's reset()" in server
