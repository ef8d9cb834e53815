"""The Learner's feed and loop: the in-graph replay's batches, `learner.Learner`
against TF-Agents' own `Learner` on the same agent and data, and the flat calls
of traced graphs that the loop makes."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2
from tf_agents.specs import tensor_spec
from tf_agents.train import learner as tf_agents_learner
from tf_agents.train.utils import train_utils
from tf_agents.trajectories import policy_step, trajectory

from trainer.acting import envs
from trainer.agents import dqn
from trainer.learning import learner
from trainer.learning.flat_call import flat_call
from trainer.replay.uniform import UniformReplay

BATCH = 4


def _spec_and_env():
  env = envs.create_gym_environment("CartPole-v0")
  spec = trajectory.from_transition(env.time_step_spec(),
                                    policy_step.PolicyStep(env.action_spec(), (), ()),
                                    env.time_step_spec())
  return tensor_spec.from_spec(spec), env


def _numbered_steps(spec, count: int, rows: int):
  """`count` batched steps whose observations number them: row r, step t -> 1000 r + t."""
  steps = []
  for t in range(count):
    step = tf.nest.map_structure(lambda s: np.zeros([rows, *s.shape], s.dtype.as_numpy_dtype), spec)
    step.observation[:] = (1000 * np.arange(rows) + t)[:, None]
    steps.append(step)
  return steps


def _drain(sampler, count: int) -> np.ndarray:
  """What a Learner's graph sees: `count` calls of `next` inside one tf.function."""
  @tf.function(autograph=False)
  def take():
    return tf.stack([next(sampler)[0].observation[..., 0] for _ in range(count)])
  return take().numpy()  # [count, batch, time]


def test_prepared_batches_are_uniform_draws_of_stored_sequences():
  spec, _ = _spec_and_env()
  replay = UniformReplay(spec, capacity=40, sequence_length=2, num_envs=2)
  sampler = replay.iterator(BATCH)
  for step in _numbered_steps(spec, 10, rows=2):
    replay.observer(step)
  seen = []
  for _ in range(150):
    replay.prepare(3)  # adds the queued steps, then samples 3 batches
    seen.append(_drain(sampler, 3))
  seen = np.concatenate(seen).reshape(-1, 2)  # every sampled sequence, [n, time]
  assert replay.size() == 20
  # Each sequence is two consecutive steps of one environment's row.
  np.testing.assert_array_equal(seen[:, 1], seen[:, 0] + 1)
  assert set(seen[:, 0] % 1000) <= set(range(9))
  # Uniform over the 18 stored sequences (9 per row): 1,800 draws, 100 expected each.
  starts, counts = np.unique(seen[:, 0], return_counts=True)
  assert len(starts) == 18
  assert counts.min() > 55 and counts.max() < 150, counts


def test_a_learner_call_longer_than_prepared_fails_instead_of_reusing_a_batch():
  spec, _ = _spec_and_env()
  replay = UniformReplay(spec, capacity=40, sequence_length=2)
  sampler = replay.iterator(BATCH)
  for step in _numbered_steps(spec, 10, rows=1):
    replay.observer(step)
  replay.prepare(2)
  with pytest.raises(tf.errors.InvalidArgumentError, match="indices"):
    _drain(sampler, 3)
  replay.prepare(2)
  first, second = _drain(sampler, 2)
  assert first.shape == second.shape == (BATCH, 2)


def _variables(agent) -> list[tf.Variable]:
  """Every variable of the agent, in object-graph order (the same for agents built alike)."""
  return [t for t in tf.train.TrackableView(agent).descendants() if isinstance(t, tf.Variable)]


def _agent_pair():
  """Two DQN agents with the same weights and optimizer state, at train step 0."""
  _, env = _spec_and_env()
  made = []
  for _ in range(2):
    agent = dqn.create_dqn_agent(env.time_step_spec(), env.action_spec(),
                                    train_utils.create_train_step(), fc_layer_params=(8,))
    agent.initialize()
    made.append(agent)
  experience = _fixed_batch(made[0])
  for agent in made:  # builds the optimizer's slots, so that every variable can be copied
    agent.train(experience)
  for target, source in zip(_variables(made[1]), _variables(made[0]), strict=True):
    target.assign(source)
  for agent in made:
    agent.train_step_counter.assign(0)
  return made, experience


def _fixed_batch(agent):
  """A batch of [BATCH, 2] transitions with moderate observations and rewards."""
  rng = np.random.default_rng(0)
  spec = agent.collect_data_spec
  shape = [BATCH, 2]
  return trajectory.Trajectory(
      step_type=tf.zeros(shape, spec.step_type.dtype),
      observation=tf.constant(rng.normal(size=[*shape, *spec.observation.shape]),
                              spec.observation.dtype),
      action=tf.constant(rng.integers(0, 2, size=shape), spec.action.dtype),
      policy_info=(),
      next_step_type=tf.ones(shape, spec.next_step_type.dtype),
      reward=tf.constant(rng.random(shape), spec.reward.dtype),
      discount=tf.ones(shape, spec.discount.dtype))


class _Repeat:
  """An iterator that gives the same batch at every `next`."""

  def __init__(self, batch):
    self._batch = batch

  def __iter__(self):
    return self

  def __next__(self):
    return self._batch, None


def _summaries(directory: str) -> dict[str, list[int]]:
  found: dict[str, list[int]] = {}
  for path in glob.glob(os.path.join(directory, "train", "*tfevents*")):
    for record in tf.data.TFRecordDataset(path):
      event = event_pb2.Event.FromString(record.numpy())
      for value in event.summary.value:
        found.setdefault(value.tag, []).append(int(event.step))
  return {tag: sorted(steps) for tag, steps in found.items()}


def test_learner_trains_and_summarizes_as_tf_agents_learner(tmp_path):
  (ours_agent, base_agent), experience = _agent_pair()
  calls = {"ours": [], "base": []}
  ours = learner.Learner(str(tmp_path / "ours"), ours_agent.train_step_counter, ours_agent,
                          triggers=[lambda step, force_trigger=False: calls["ours"].append(step)],
                          checkpoint_interval=0, summary_interval=10)
  base = tf_agents_learner.Learner(
      str(tmp_path / "base"), base_agent.train_step_counter, base_agent,
      triggers=[lambda step, force_trigger=False: calls["base"].append(step)],
      checkpoint_interval=0, summary_interval=10)
  # Calls that start on, end on, and cross multiples of the summary interval.
  for iterations in (9, 1, 7, 7, 13, 1, 2):
    loss_ours = ours.run(iterations=iterations, iterator=_Repeat(experience))
    loss_base = base.run(iterations=iterations, iterator=_Repeat(experience))
    np.testing.assert_allclose(loss_ours.loss.numpy(), loss_base.loss.numpy(), rtol=1e-5)
  assert calls["ours"] == calls["base"] == [9, 10, 17, 24, 37, 38, 40]
  for a, b in zip(_variables(ours_agent), _variables(base_agent), strict=True):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
  ours.train_summary_writer.flush()
  base.train_summary_writer.flush()
  expected = _summaries(str(tmp_path / "base"))
  assert expected and all(steps == [0, 10, 20, 30] for steps in expected.values()), expected
  assert _summaries(str(tmp_path / "ours")) == expected


def test_flat_call_matches_the_structured_call():
  @tf.function(input_signature=[{"x": tf.TensorSpec([None], tf.float32)},
                                tf.TensorSpec([], tf.int64)], autograph=False)
  def scale(nest, k):
    return {"y": nest["x"] * tf.cast(k, tf.float32)}, k + 1

  concrete = scale.get_concrete_function()
  call = flat_call(concrete)
  values = np.array([1.5, -2.0])  # float64: converted to the traced float32
  flat_out, structured_out = call({"x": values}, 3), concrete({"x": values.astype(np.float32)}, 3)
  np.testing.assert_array_equal(flat_out[0]["y"].numpy(), structured_out[0]["y"].numpy())
  assert flat_out[0]["y"].dtype == tf.float32 and int(flat_out[1]) == int(structured_out[1]) == 4
  with pytest.raises(TypeError, match="takes 2 tensors, got 1"):
    call({"x": values})
