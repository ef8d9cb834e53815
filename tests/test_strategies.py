"""`train.strategy`: a learner on several devices (here 2 logical CPUs), a batch per
replica, bundles that restore under another strategy, exports free of it."""

import collections
import re
import signal

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.specs import tensor_spec

from tests.conftest import (
  DQN_CONFIG,
  REVERB_BINDINGS,
  TINY_DQN,
  bindings,
  committed_steps,
  run_train,
  start_train,
  status,
  wait_for,
)
from tests.test_exports import TF_ONLY, _run_json
from tests.test_restore import _assert_equal, _reverb_items, _snapshot, _uniform_items
from trainer import errors
from trainer.cli import registry  # noqa: F401
from trainer.config import gin_config
from trainer.learning import strategies
from trainer.loops.job import configure_job, open_job
from trainer.replay.uniform import UniformReplay

MIRRORED = {"train.strategy": "@mirrored_strategy", "mirrored_strategy.logical_cpus": 2}


def test_each_replica_gets_its_own_batch_and_together_they_are_uniform_draws():
  strategy = strategies.mirrored_strategy(logical_cpus=2)
  assert strategy.num_replicas_in_sync == 2
  items = 8
  replay = UniformReplay(tensor_spec.TensorSpec([], tf.int64), capacity=items,
                         sequence_length=None, num_envs=1)
  for i in range(items):
    replay.observer(tf.constant([i], tf.int64))
  iterator = replay.iterator(batch_size=16, strategy=strategy)
  steps = 50
  replay.prepare(steps)

  @tf.function
  def take():
    with strategy.scope():
      batch, _ = next(iterator)
      return strategy.experimental_local_results(batch)

  draws, differing = [], 0
  for _ in range(steps):
    first, second = (t.numpy() for t in take())
    assert first.shape == second.shape == (16,)
    differing += not np.array_equal(first, second)
    draws.extend([*first, *second])
  assert differing == steps  # never the same batch on both replicas
  counts = collections.Counter(draws)
  expected = len(draws) / items  # 200 each
  assert sorted(counts) == list(range(items))
  assert all(abs(c - expected) < 0.25 * expected for c in counts.values()), counts


def test_td3s_critic_loss_is_a_mean_over_the_global_batch_under_a_strategy():
  """Every agent's loss, summed over replicas, is its mean over the global batch (the
  gradients are summed so); TF-Agents' TD3 critic loss alone is a per-replica mean."""
  from tf_agents.specs import array_spec
  from tf_agents.trajectories import time_step as ts

  from trainer.agents.td3 import create_td3_agent

  strategy = strategies.mirrored_strategy(logical_cpus=2)
  observation = array_spec.BoundedArraySpec((3,), np.float32, -8, 8, name="observation")
  action = array_spec.BoundedArraySpec((1,), np.float32, -2, 2, name="action")
  with strategy.scope():
    agent = create_td3_agent(ts.time_step_spec(observation), action,
                             tf.Variable(0, dtype=tf.int64), actor_fc_layers=(8,),
                             critic_joint_fc_layers=(8,), target_policy_noise=0.0)
  half = 4  # each replica gets the same half, so the sum over replicas is one half's mean

  def step(seed):
    return ts.TimeStep(step_type=tf.ones([half], tf.int32), reward=tf.ones([half]),
                       discount=tf.ones([half]),
                       observation=tf.random.stateless_normal([half, 3], [seed, 0]))

  batch = (step(1), tf.zeros([half, 1]), step(2))
  per_replica = strategy.run(lambda: agent.critic_loss(*batch))
  summed = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
  np.testing.assert_allclose(summed.numpy(), agent.critic_loss(*batch).numpy(), rtol=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"devices": ["/gpu:7"]}, "names '/gpu:7', which this machine does not have (it has"),
    ({"devices": ["gpu zero"]}, "is not a device name"),
    ({"devices": ["/cpu:0"], "logical_cpus": 2}, "not both"),
    ({"logical_cpus": 3}, "start a new process"),  # this one already split the CPU in 2
])
def test_a_bad_device_choice_is_one_line_naming_the_fix(kwargs, message):
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    strategies.mirrored_strategy(**kwargs)


def test_a_batch_the_replicas_cannot_share_is_refused_before_anything_is_written(tmp_path):
  root = str(tmp_path / "run")
  with pytest.raises(errors.ConfigError, match=re.escape(
      "train.batch_size=7 must be a multiple of the strategy's 2 replicas (each trains on its "
      "share of every step's batch): set it to 6")):
    with open_job(_load(root, {**{k.replace(".", "__"): v for k, v in MIRRORED.items()},
                               "train__batch_size": 7})):
      pass
  assert not (tmp_path / "run").exists()


def _load(root, extra=(), files=(DQN_CONFIG,), base=TINY_DQN):
  return configure_job(root, gin_config.load(root, list(files), bindings(base, **dict(extra))))


def _run_and_snapshot(root, items_fn, **binding):
  with open_job(_load(root, {k.replace(".", "__"): v for k, v in binding.items()})) as job:
    assert job.run() == 0
    return _snapshot(job, items_fn), job.strategy.num_replicas_in_sync


@pytest.mark.parametrize("first,then", [(MIRRORED, {}), ({}, MIRRORED)],
                         ids=["mirrored-then-default", "default-then-mirrored"])
def test_a_bundle_restores_bit_exact_under_the_other_strategy(tmp_path, first, then):
  root = str(tmp_path / "run")
  with open_job(_load(root, {k.replace(".", "__"): v for k, v in first.items()})) as job:
    assert job.run() == 0
    assert job.strategy.num_replicas_in_sync == (2 if first else 1)
    before = _snapshot(job, _uniform_items)
  if first:
    _assert_summaries_written_once(tmp_path / "run" / "train")
  changed = {k.replace(".", "__"): v for k, v in then.items()}
  if not then:
    changed = {"train__strategy": "@default_strategy"}
  with open_job(_load(root, changed)) as job:
    assert job.strategy.num_replicas_in_sync == (2 if then else 1)
    after = _snapshot(job, _uniform_items)
  _assert_equal(before, after)


def _assert_summaries_written_once(train_dir):
  """Summaries are written once per step, not once per replica."""
  seen = collections.Counter()
  for path in train_dir.glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        seen[(value.tag, event.step)] += 1
  losses = {k: n for k, n in seen.items() if "loss" in k[0].lower()}
  assert losses, sorted(seen)  # the agent's loss summaries are there
  assert set(losses.values()) == {1}, losses


def test_the_reverb_replay_feeds_each_replica_and_its_bundle_restores_without_the_strategy(
    tmp_path):
  root = str(tmp_path / "run")
  reverb = {**TINY_DQN, **REVERB_BINDINGS, **MIRRORED}
  with open_job(_load(root, base=reverb)) as job:
    assert job.run() == 0
    assert job.strategy.num_replicas_in_sync == 2
    before = _snapshot(job, _reverb_items)
  with open_job(_load(root, {"train__strategy": "@default_strategy"}, base=reverb)) as job:
    after = _snapshot(job, _reverb_items)
  _assert_equal(before, after)


def test_a_mirrored_run_is_sigtermed_and_resumes_under_the_default_strategy(tmp_path):
  root = tmp_path / "run"
  long = bindings({**TINY_DQN, **MIRRORED}, train__num_iterations=100_000)
  proc = start_train(root, gin_bindings=long, log_path=tmp_path / "first.log")
  try:
    # An export made under the mirrored strategy first (a stop commits a bundle, not an export).
    wait_for(lambda: committed_steps(root) and status(root)["exports"], 240,
             "the first bundle and export", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == errors.EXIT_PREEMPTED
  finally:
    proc.kill()
  stopped = status(root)["train_step"]
  mirrored = max(e["train_step"] for e in status(root)["exports"] if e["train_step"] <= stopped)
  total = (stopped // 20 + 2) * 20
  done = run_train(root, gin_bindings=bindings(TINY_DQN, train__num_iterations=total))
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"Resumed from step {stopped}" in done.stderr
  finished = status(root)
  assert finished["complete"] and finished["train_step"] == total
  assert finished["exports_missing"] == []
  # The exports are strategy-free: TensorFlow alone loads the serving form and runs it.
  serving = [str(root / "policies" / f"{step:010d}" / "serving") for step in (mirrored, total)]
  actions = _run_json(TF_ONLY, "[[0, 0, 0.1, 0]]", *serving)
  assert all(len(actions[path]) == 1 for path in serving)
