"""The SavedModel forms of an export, and how each is written: the graph once, then variables."""

import os
import shutil
from collections.abc import Callable

import tensorflow as tf
from tf_agents.policies import policy_saver
from tf_agents.trajectories import time_step as ts


class Saver(policy_saver.PolicySaver):
  """A PolicySaver that can write a SavedModel's variables alone."""

  def save_variables(self, export_dir: str) -> None:
    """Writes `export_dir/variables/` exactly as `save` would (same object
    graph: the saved root module), unlike `save_checkpoint`, which leaves out
    the metadata variables."""
    tf.train.Checkpoint(root=self.policy).write(
        os.path.join(export_dir, tf.saved_model.VARIABLES_DIRECTORY,
                     tf.saved_model.VARIABLES_FILENAME))


def servable(policy) -> bool:
  """Whether a policy can act on observations alone: stateless, one observation tensor."""
  return (isinstance(policy.time_step_spec.observation, tf.TensorSpec)
          and not policy.policy_state_spec)


def on_observations(time_step_spec, act: Callable[[ts.TimeStep], dict[str, tf.Tensor]]):
  """A `tf.function` of a batch of observations (input name `observation`) that
  returns `act(time_step)` for first time steps holding them; a stateless
  policy looks only at the observation."""
  observation_spec = time_step_spec.observation

  # autograph=False: policies are graph code already, and converting TF-Agents'
  # policy code was most of an export's one-time cost.
  @tf.function(input_signature=[tf.TensorSpec([None, *observation_spec.shape],
                                              observation_spec.dtype, name="observation")],
               autograph=False)
  def function(observation):
    spec, batch = time_step_spec, tf.shape(observation)[:1]
    return act(ts.TimeStep(
        step_type=tf.fill(batch, tf.constant(ts.StepType.FIRST, spec.step_type.dtype)),
        reward=tf.zeros(batch, spec.reward.dtype), discount=tf.ones(batch, spec.discount.dtype),
        observation=observation))

  return function


class ServingModule(tf.Module):
  """The greedy policy behind a `serving_default(observation) -> {action}`."""

  def __init__(self, policy):
    super().__init__(name="serving")
    if not servable(policy):
      raise ValueError("the serving form needs a stateless policy with one observation tensor")
    self.policy_variables = list(policy.variables())
    self.serve = on_observations(policy.time_step_spec,
                                 lambda time_step: {"action": policy.action(time_step).action})

  def save(self, export_dir: str) -> None:
    tf.saved_model.save(self, export_dir, signatures={"serving_default": self.serve})

  def save_variables(self, export_dir: str) -> None:
    tf.train.Checkpoint(root=self).write(os.path.join(
        export_dir, tf.saved_model.VARIABLES_DIRECTORY, tf.saved_model.VARIABLES_FILENAME))


class Template:
  """One SavedModel form: the graph written once, then variables per export."""

  def __init__(self, saver, template_dir: str):
    self.saver = saver
    self._dir = template_dir

  def ensure(self) -> None:
    """Writes the template (graph and all) if it is not there yet."""
    if not os.path.isdir(self._dir):
      # Complete or absent: a template half-written by a failed save must never be copied.
      partial = self._dir + ".partial"
      shutil.rmtree(partial, ignore_errors=True)
      try:
        self.saver.save(partial)
      except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
      os.rename(partial, self._dir)

  def write(self, export_dir: str) -> None:
    self.ensure()
    os.makedirs(export_dir)
    for name in os.listdir(self._dir):
      source = os.path.join(self._dir, name)
      if name == tf.saved_model.VARIABLES_DIRECTORY or name == "fingerprint.pb":
        continue  # Variables are written fresh; the fingerprint would describe the template's.
      (shutil.copytree if os.path.isdir(source) else shutil.copy2)(
          source, os.path.join(export_dir, name))
    self.saver.save_variables(export_dir)
