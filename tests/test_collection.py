"""Collection side by side: the collect metrics against TF-Agents' own, and the replay rows."""

import numpy as np
import tensorflow as tf
from tf_agents.metrics import py_metrics
from tf_agents.policies import random_py_policy
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import policy_step, trajectory

from trainer.acting import envs
from trainer.acting.collect_stats import CollectStats
from trainer.acting.collector import Collector
from trainer.replay.uniform import UniformReplay

NUM_ENVS = 3


def _collector(stats, observers, summary_dir):
  environments = [envs.create_gym_environment("CartPole-v0", max_episode_steps=30)
                  for _ in range(NUM_ENVS)]
  for i, env in enumerate(environments):
    envs.seed_environment(env, i)
  collector = Collector(environments, tf.Variable(0, dtype=tf.int64), observers=observers,
                        metrics=stats, summary_dir=summary_dir, summary_interval=0)
  env = environments[0]
  collector.use(random_py_policy.RandomPyPolicy(env.time_step_spec(), env.action_spec(),
                                                outer_dims=(NUM_ENVS,)))
  return collector


def _tf_agents_metrics():
  return [py_metrics.NumberOfEpisodes(), py_metrics.EnvironmentSteps(),
          py_metrics.AverageReturnMetric(buffer_size=10, batch_size=NUM_ENVS),
          py_metrics.AverageEpisodeLengthMetric(buffer_size=10, batch_size=NUM_ENVS)]


def test_collect_stats_agree_with_tf_agents_py_metrics(tmp_path):
  stats = CollectStats(NUM_ENVS)
  reference = _tf_agents_metrics()
  collector = _collector(stats, reference, str(tmp_path))
  collector.run(steps=600)  # tens of episodes per environment, ending at different steps
  results = stats.results()
  assert results["NumberOfEpisodes"] == int(reference[0].result()) > 20
  assert results["EnvironmentSteps"] == int(reference[1].result()) >= 600
  np.testing.assert_allclose(results["AverageReturn"], reference[2].result(), rtol=1e-6)
  np.testing.assert_allclose(results["AverageEpisodeLength"], reference[3].result(), rtol=1e-6)

  # Saved and restored through state.json's form: the same results.
  restored = CollectStats(NUM_ENVS)
  restored.set_state(stats.state())
  assert restored.results() == results


def test_each_environment_fills_its_own_replay_row(tmp_path):
  """Sequences sampled for training never join steps of two environments."""
  env = envs.create_gym_environment("CartPole-v0", max_episode_steps=30)
  spec = trajectory.from_transition(env.time_step_spec(),
                                    policy_step.PolicyStep(env.action_spec(), (), ()),
                                    env.time_step_spec())
  replay = UniformReplay(tensor_spec.from_spec(spec), capacity=300, sequence_length=2,
                         num_envs=NUM_ENVS)
  rows = []
  collector = _collector(CollectStats(NUM_ENVS), [replay.observer, rows.append], str(tmp_path))
  collector.run(steps=90)
  replay.flush()
  stored = replay.buffer.gather_all()
  observations = stored.observation.numpy()  # [rows, time, 4]
  expected = np.stack([r.observation for r in rows], axis=1)
  np.testing.assert_array_equal(observations, expected)
  assert replay.size() == NUM_ENVS * len(rows)

