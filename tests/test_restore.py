"""save -> rebuild -> restore is bit-exact, for both replay backends."""

import os
import shutil
import threading

import numpy as np
import pytest
import reverb
import tensorflow as tf

from tests.conftest import CONFIGS, DQN_CONFIG, REVERB_BINDINGS, TINY_DQN, bindings
from trainer import errors
from trainer.cli import registry  # noqa: F401
from trainer.config import gin_config
from trainer.loops.job import configure_job, open_job
from trainer.replay.base import ReplaySaveError
from trainer.rundir import layout


def _variables(agent) -> list[np.ndarray]:
  """Every variable reachable from the agent: networks, target networks, optimizer slots.

  In object-graph order, which identifies a variable; names do not (Keras
  uniquifies layer names when a second agent is built in one process).
  """
  found = [t for t in tf.train.TrackableView(agent).descendants() if isinstance(t, tf.Variable)]
  assert len(found) > 10  # q and target networks, Adam slots, counters
  return [v.numpy() for v in found]


def _uniform_items(job) -> dict:
  items = job.replay.buffer.gather_all()
  return {"items": tf.nest.map_structure(lambda t: t.numpy(), items)}


def _reverb_items(job) -> dict:
  """All items of a small table, keyed by item key: sampled to full coverage."""
  client = reverb.Client(job.replay.address)
  size = job.replay.size()
  found = {}
  for sample in client.sample("uniform_table", num_samples=60 * size, emit_timesteps=False):
    key = int(sample.info.key)
    found[key] = [np.asarray(x) for x in tf.nest.flatten(sample.data)]
  assert len(found) == size, "sampling did not reach every item"
  return found


def _snapshot(job, items_fn) -> dict:
  state = job.run_state
  return {
      "train_step": job.train_step,
      "variables": _variables(job.agent),
      "replay_size": job.replay.size(),
      "items": items_fn(job),
      "env_steps": state.env_steps,
      "episodes": state.episodes,
      "metrics": state.collect_stats.results(),
      "evals": list(state.evals),
      "numpy_rng": np.random.get_state()[1].copy(),
  }


def _assert_equal(a, b, path="snapshot"):
  if isinstance(a, dict):
    assert a.keys() == b.keys(), path
    for k in a:
      _assert_equal(a[k], b[k], f"{path}[{k!r}]")
  elif isinstance(a, (list, tuple)):
    assert len(a) == len(b), path
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
      _assert_equal(x, y, f"{path}[{i}]")
  elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    np.testing.assert_array_equal(a, b, err_msg=path)
  else:
    assert a == b, path


@pytest.mark.parametrize("backend", ["uniform", "reverb"])
def test_restore_is_bit_exact(tmp_path, backend):
  root = str(tmp_path / "run")
  extra = REVERB_BINDINGS if backend == "reverb" else {}
  items_fn = _reverb_items if backend == "reverb" else _uniform_items
  run_config = gin_config.load(root, [DQN_CONFIG], bindings({**TINY_DQN, **extra}))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
    before = _snapshot(job, items_fn)
  assert before["train_step"] == TINY_DQN["train.num_iterations"]
  assert before["replay_size"] > 0 and before["env_steps"] > 0 and before["evals"]

  # Rebuild everything from the saved config alone, in the same process.
  resumed = gin_config.load(root, [], [])
  with open_job(configure_job(root, resumed)) as job:
    after = _snapshot(job, items_fn)
    batch = _sample_with_timeout(job.replay.dataset(batch_size=8), timeout=30)
  _assert_equal(before, after)
  step_type = tf.nest.flatten(batch[0])[0]
  assert step_type.shape[0] == 8  # a full batch came out of the restored replay


SHORT = {"train.num_iterations": 6, "train.checkpoint_interval": 6,
         "train.policy_export_interval": 6, "train.eval_interval": 6, "train.eval_episodes": 1,
         "train.initial_collect_steps": 30, "train.batch_size": 8,
         "create_gym_environment.max_episode_steps": 20}


@pytest.mark.parametrize("config", ["c51_cartpole.gin", "td3_pendulum.gin", "sac_pendulum.gin"])
def test_restore_is_bit_exact_for_each_agent(tmp_path, config):
  root = str(tmp_path / "run")
  items_fn = _uniform_items  # the three use the in-graph replay
  run_config = gin_config.load(root, [str(CONFIGS / config)], bindings(SHORT))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
    before = _snapshot(job, items_fn)
  with open_job(configure_job(root, gin_config.load(root, [], []))) as job:
    after = _snapshot(job, items_fn)
  _assert_equal(before, after)


def _sample_with_timeout(dataset, timeout: float):
  """next(iter(dataset)), failing instead of hanging (Reverb's known failure mode)."""
  result = {}

  def sample():
    result["batch"] = next(iter(dataset))

  thread = threading.Thread(target=sample, daemon=True)
  thread.start()
  thread.join(timeout)
  assert "batch" in result, f"sampling the restored replay did not return within {timeout}s"
  return result["batch"]


def test_reverb_refuses_restored_table_that_differs_from_config(tmp_path):
  """Reverb silently keeps the checkpointed table settings; we refuse instead."""
  root = str(tmp_path / "run")
  run_config = gin_config.load(root, [DQN_CONFIG], bindings({**TINY_DQN, **REVERB_BINDINGS}))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
  changed = gin_config.load(root, [DQN_CONFIG], bindings(
      {**TINY_DQN, **REVERB_BINDINGS}, create_reverb_replay__capacity=3000,
      train__num_iterations=80), allow_config_change=True)
  with pytest.raises(gin_config.ConfigError, match="max_size=2000.*capacity=3000"):
    with open_job(configure_job(root, changed)):
      pass


def _remote_table(capacity: int = 2000) -> reverb.Server:
  """A Reverb server that the job does not own, as a user runs one."""
  return reverb.Server([reverb.Table(
      "uniform_table", max_size=capacity, sampler=reverb.selectors.Uniform(),
      remover=reverb.selectors.Fifo(), rate_limiter=reverb.rate_limiters.MinSize(1))], port=None)


def test_remote_reverb_table_is_checked_against_the_bundle_on_resume(tmp_path):
  root = str(tmp_path / "run")
  server = _remote_table()
  try:
    address = f"'localhost:{server.port}'"
    run_config = gin_config.load(root, [DQN_CONFIG], bindings(
        {**TINY_DQN, **REVERB_BINDINGS}, create_reverb_replay__address=address))
    with open_job(configure_job(root, run_config)) as job:
      assert job.run() == 0
    # The server kept its items: the job resumes from them.
    longer = gin_config.load(root, [], ["train.num_iterations = 80"])
    with open_job(configure_job(root, longer)) as job:
      assert job.run() == 0
      recorded = job.replay.size()
  finally:
    server.stop()
  # An empty server in its place: restarted without its checkpoint.
  empty = _remote_table()
  try:
    moved = gin_config.load(root, [], [f"create_reverb_replay.address = 'localhost:{empty.port}'"],
                            allow_config_change=True)
    with pytest.raises(errors.RunDirError, match=(
        rf"holds 0 items in table 'uniform_table', fewer than the {recorded} that checkpoint "
        r"bundle 80 recorded.*Restart it from its checkpoint /")):
      with open_job(configure_job(root, moved)):
        pass
  finally:
    empty.stop()


def test_background_checkpoint_commits_after_the_replay_and_reports_its_failure(tmp_path):
  """The learner role's checkpoints: training goes on while the replay is
  written; the bundle commits once it is whole, a failure surfaces at the next
  wait, and nothing of the failed bundle stays."""
  root = str(tmp_path / "run")
  run_config = gin_config.load(root, [DQN_CONFIG], bindings({**TINY_DQN, **REVERB_BINDINGS}))
  with open_job(configure_job(root, run_config)) as job:
    assert job.run() == 0
    first = job.store.latest().step
    save, release = job.replay.save, threading.Event()

    def slow_save(target_dir):
      assert release.wait(60), "the checkpoint waited for the replay"
      save(target_dir)

    job.replay.save = slow_save
    job.train_step_variable.assign(first + 1)
    job.checkpoint(background=True)  # returns while the replay is held back
    assert job.store.latest().step == first  # not committed before the replay is in
    release.set()
    job.wait_for_commit()
    committed = job.store.latest()
    assert committed.step == first + 1 and job.store.verify(committed) is None

    def failing_save(target_dir):
      raise ReplaySaveError("the Reverb checkpoint failed: no space left on device")

    job.replay.save = failing_save
    job.train_step_variable.assign(first + 2)
    job.checkpoint(background=True)
    with pytest.raises(errors.RunDirError, match=f"cannot write checkpoint bundle {first + 2}"):
      job.wait_for_commit()
    assert job.store.latest().step == first + 1
    leftovers = [n for d in (layout.BUNDLE_DIR, layout.CHECKPOINT_DIR)
                 for n in os.listdir(os.path.join(root, d))
                 if layout.step_name(first + 2) in n or n.startswith(f"ckpt-{first + 2}.")]
    assert not leftovers
    job.wait_for_commit()  # the error is reported once


def test_tensorflow_reads_the_state_file_as_its_own(tmp_path):
  """`tf.train.latest_checkpoint` names the newest bundle's agent checkpoint,
  with the older kept ones listed, after commits, retention and a fallback."""
  from tests.test_bundle_store import _commit

  store = _commit(tmp_path, 10)
  for step in (20, 30, 40):
    _commit(tmp_path, step, store)  # keep=3: bundle 10 is pruned
  checkpoints = str(tmp_path / "train/checkpoints")
  state = tf.train.get_checkpoint_state(checkpoints)
  assert tf.train.latest_checkpoint(checkpoints) == os.path.join(checkpoints, "ckpt-40")
  assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
      "ckpt-20", "ckpt-30", "ckpt-40"]
  store.point_tf_state_at(30)  # a fallback to an older bundle
  assert tf.train.latest_checkpoint(checkpoints) == os.path.join(checkpoints, "ckpt-30")
  assert [os.path.basename(p) for p in tf.train.get_checkpoint_state(
      checkpoints).all_model_checkpoint_paths] == ["ckpt-20", "ckpt-30"]


class _ReplacingClient:
  """A Reverb client whose first checkpoints fail as when another client's
  replaced them while they were written (Reverb removes older checkpoints)."""

  def __init__(self, client, failures: list[Exception]):
    self._client, self._failures = client, failures

  def checkpoint(self):
    if self._failures:
      raise self._failures.pop(0)
    return self._client.checkpoint()

  def __getattr__(self, name):
    return getattr(self._client, name)


@pytest.mark.parametrize("message", [
    "Checkpoint /scratch/2026-12-07T03:35:30 not found",
    "Failed to write /scratch/2026-12-07T03:35:30/tables.tfrecord; No such file or directory",
])
def test_a_checkpoint_replaced_as_it_was_written_is_taken_again(tmp_path, message):
  """Seen in the attacker test: an outside client's checkpoint removed the
  learner's while it was written; the bundle is taken again, not given up."""
  from trainer.replay.reverb import create_reverb_replay
  spec = tf.TensorSpec((), tf.int64)
  replay = create_reverb_replay(spec, sequence_length=1, root_dir=str(tmp_path),
                                restore_dir=None, capacity=10)
  try:
    replay._client = _ReplacingClient(replay._client, [RuntimeError(message)] * 2)
    replay.save(str(tmp_path / "bundle"))
    assert os.listdir(tmp_path / "bundle")  # the third checkpoint, moved into the bundle
    # A real failure is still one: ENOENT with the scratch directory gone.
    replay._client = _ReplacingClient(replay._client._client, [RuntimeError(message)])
    if message.endswith("No such file or directory"):
      shutil.rmtree(replay._scratch())
      with pytest.raises(ReplaySaveError, match="No such file or directory"):
        replay.save(str(tmp_path / "bundle2"))
  finally:
    replay.close()
