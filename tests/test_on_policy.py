"""PPO over the on-policy loop gets the job's guarantees: bundles at batch boundaries
(normalizers included), SIGKILL and SIGTERM then resume, configs checked before any write."""

import re
import signal

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import CONFIGS, bindings, committed_steps, run_train, start_train, status, wait_for
from tests.test_restore import _assert_equal, _snapshot, _uniform_items
from trainer import errors
from trainer.cli import registry  # noqa: F401
from trainer.config import gin_config
from trainer.loops.job import configure_job, open_job

PPO_CONFIG = str(CONFIGS / "ppo_cartpole.gin")
# Batches of 64 env steps (8 environments x 8), 2 epochs of 2 minibatches of 32 steps each:
# a batch is 4 train steps.
SMALL_PPO = {
    "train.num_iterations": 8, "train.checkpoint_interval": 4, "train.policy_export_interval": 8,
    "train.eval_interval": 8, "train.eval_episodes": 1, "train.log_interval": 4,
    "train.summary_interval": 4, "create_ppo_agent.num_epochs": 2,
    "create_ppo_agent.minibatch_size": 32,
    "train.train_steps_per_iteration": 4, "train.collect_steps_per_iteration": 64,
    "create_gym_environment.max_episode_steps": 30,
}


def test_ppo_restore_is_bit_exact_normalizers_included(tmp_path):
  root = str(tmp_path / "run")
  with open_job(configure_job(root, gin_config.load(root, [PPO_CONFIG],
                                                    bindings(SMALL_PPO)))) as job:
    assert job.replay.capacity == 64  # one batch: train.collect_steps_per_iteration, unbound
    assert job.run() == 0
    normalizer = job.agent._observation_normalizer  # the statistics a resume must keep
    saved_statistics = [v.numpy() for v in normalizer.variables]
    assert any(np.any(s != 0) for s in saved_statistics)  # it has seen observations
    before = _snapshot(job, _uniform_items)
  with open_job(configure_job(root, gin_config.load(root, [], []))) as job:
    after = _snapshot(job, _uniform_items)
    restored = [v.numpy() for v in job.agent._observation_normalizer.variables]
  _assert_equal(before, after)
  _assert_equal(saved_statistics, restored)
  assert before["replay_size"] == 0  # bundles are taken between batches


def test_ppo_survives_sigkill_and_sigterm_and_finishes_its_total(tmp_path):
  root = tmp_path / "run"
  long = bindings(SMALL_PPO, train__num_iterations=100_000)
  proc = start_train(root, gin_files=(PPO_CONFIG,), gin_bindings=long)
  try:
    wait_for(lambda: committed_steps(root), 240, "the first bundle", proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
  finally:
    proc.kill()
  killed_at = committed_steps(root)[-1]
  proc = start_train(root, gin_files=(PPO_CONFIG,), gin_bindings=long,
                     log_path=tmp_path / "second.log")
  try:
    wait_for(lambda: committed_steps(root)[-1] > killed_at, 240, "a bundle after the kill", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == errors.EXIT_PREEMPTED
  finally:
    proc.kill()
  assert f"Resumed from step {killed_at}" in (tmp_path / "second.log").read_text()
  stopped = status(root)
  assert stopped["checkpoints"][-1] == stopped["train_step"] > killed_at
  assert stopped["train_step"] % 4 == 0 and stopped["replay_size"] == 0
  total = stopped["train_step"] + 4
  done = run_train(root, gin_files=(PPO_CONFIG,),
                   gin_bindings=bindings(SMALL_PPO, train__num_iterations=total))
  assert done.returncode == 0, done.stderr[-3000:]
  finished = status(root)
  assert finished["complete"] and finished["train_step"] == total
  assert finished["env_steps"] > stopped["env_steps"] and finished["exports_missing"] == []


@pytest.mark.parametrize("change,message", [
    ({"train__train_steps_per_iteration": 2}, "must be 4, the train steps PPO takes per batch: "
     "num_epochs=2 x (64 // minibatch_size=32)"),
    ({"create_ppo_agent__minibatch_size": None, "train__train_steps_per_iteration": 4},
     "must be 2, the train steps PPO takes per batch: num_epochs=2"),
    ({"create_ppo_agent__minibatch_size": 65}, "minibatch_size=65 is larger than a batch"),
    ({"train__strategy": "@mirrored_strategy", "mirrored_strategy__logical_cpus": 2},
     "use train.strategy = @default_strategy"),
    ({"train__initial_collect_steps": 10}, "train.initial_collect_steps must be 0"),
    ({"create_uniform_replay__capacity": 100}, "create_uniform_replay.capacity=100 differs from "
     "train.collect_steps_per_iteration=64"),
    ({"train__checkpoint_interval": 3}, "train.checkpoint_interval=3 must be a multiple"),
    ({"train__loop": "@off_policy_loop"}, "set train.loop = @on_policy_loop"),
])
def test_an_on_policy_config_is_checked_before_anything_is_written(tmp_path, change, message):
  root = str(tmp_path / "run")
  run_config = gin_config.load(root, [PPO_CONFIG], bindings(SMALL_PPO, **change))
  with pytest.raises(errors.ConfigError, match=re.escape(message)):
    with open_job(configure_job(root, run_config)):
      pass
  assert not (tmp_path / "run").exists()


def test_minibatches_are_every_step_of_the_batch_once_per_pass_in_a_fresh_order():
  """PPO's minibatches (TF-Agents' PPOLearner's): the normalizers see the batch, the
  advantages are the agent's over each environment's whole sequence, and each pass
  is a new shuffle of all the steps, cut into [minibatch_size, 1] minibatches."""
  from tf_agents.replay_buffers import tf_uniform_replay_buffer
  from tf_agents.specs import tensor_spec
  from tf_agents.trajectories import time_step as ts

  from trainer.acting.envs import create_gym_environment
  from trainer.agents.ppo import create_ppo_agent
  from trainer.loops.on_policy import Minibatches

  env = create_gym_environment("CartPole-v1")
  agent = create_ppo_agent(env.time_step_spec(), env.action_spec(),
                           tf.Variable(0, dtype=tf.int64), num_epochs=3, minibatch_size=4)
  envs, length = 2, 8
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(agent.collect_data_spec, envs, length)
  for t in range(length):
    item = tensor_spec.sample_spec_nest(agent.collect_data_spec, tf.random.Generator.from_seed(t),
                                        outer_dims=(envs,))
    mid = tf.fill([envs], ts.StepType.MID)
    buffer.add_batch(item._replace(step_type=mid, next_step_type=mid,
                                   discount=tf.ones([envs]), policy_info={
                                       **item.policy_info,
                                       "dist_params": {"logits": tf.zeros([envs, 2])}}))
  count = tf.nest.flatten(agent._observation_normalizer._count)[0]  # observations seen
  seen = count.numpy().copy()
  batches = Minibatches(agent, buffer, envs * length)
  batches.fill()
  np.testing.assert_array_equal(count.numpy() - seen, envs * length)  # the batch, once
  expected = agent._preprocess(buffer.gather_all())  # with the normalizers it updated
  flat = [tf.reshape(v, [envs * length, *v.shape[2:]]).numpy() for v in tf.nest.flatten(expected)]
  assert np.any(expected.policy_info["advantage"].numpy() != 0)
  orders = []
  for _ in range(3):  # passes
    order = []
    for _ in range(4):  # minibatches of 4 of the 16 steps
      steps, _ = next(batches)
      first = tf.nest.flatten(steps)[0].numpy()
      assert first.shape[:2] == (4, 1)
      rows = batches._order[batches._cursor.numpy() - 1].numpy()
      for got, want in zip(tf.nest.flatten(steps), flat, strict=True):
        np.testing.assert_array_equal(got.numpy()[:, 0], want[rows])
      order.extend(rows)
    assert sorted(order) == list(range(envs * length))  # every step once per pass
    orders.append(order)
  assert orders[0] != orders[1] != orders[2]  # a fresh shuffle per pass


def test_minibatches_work_with_the_normalizers_off():
  from tf_agents.replay_buffers import tf_uniform_replay_buffer
  from tf_agents.specs import tensor_spec

  from trainer.acting.envs import create_gym_environment
  from trainer.agents.ppo import create_ppo_agent
  from trainer.loops.on_policy import Minibatches

  env = create_gym_environment("Pendulum-v1")
  agent = create_ppo_agent(env.time_step_spec(), env.action_spec(),
                           tf.Variable(0, dtype=tf.int64), minibatch_size=4,
                           normalize_observations=False, normalize_rewards=False)
  buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(agent.collect_data_spec, 2, 4)
  for t in range(4):
    buffer.add_batch(tensor_spec.sample_spec_nest(
        agent.collect_data_spec, tf.random.Generator.from_seed(t), outer_dims=(2,)))
  batches = Minibatches(agent, buffer, 8)
  batches.fill()
  steps, _ = next(batches)
  assert steps.observation.shape == (4, 1, 3)


def test_a_run_of_a_config_that_bound_the_capacity_resumes_with_one_that_does_not(tmp_path):
  """Configs used to bind the on-policy replay's capacity to the batch; it is
  derived now. A run saved with the binding resumes with today's config file,
  no flag; a changed batch size is refused: the saved replay cannot restore."""
  from trainer.loops import job as job_lib
  root = str(tmp_path / "run")
  old = bindings(SMALL_PPO, train__num_iterations=4, create_uniform_replay__capacity=64)
  assert job_lib.train(root, gin_config.load(root, [PPO_CONFIG], old)) == 0
  resumed = gin_config.load(root, [PPO_CONFIG], bindings(SMALL_PPO))
  assert [c.split(":")[0] for c in resumed.changes] == [
      "create_uniform_replay.capacity", "train.num_iterations"]
  assert job_lib.train(root, resumed) == 0
  assert committed_steps(root)[-1] == 8
  bigger = gin_config.load(root, [PPO_CONFIG], bindings(
      SMALL_PPO, train__num_iterations=12, train__collect_steps_per_iteration=128))
  with pytest.raises(errors.ConfigError,
                     match="replay was saved with the old train.collect_steps_per_iteration"):
    job_lib.train(root, bigger)
