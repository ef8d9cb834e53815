"""The greedy policy as ONNX, verified against the export's SavedModel.

`policies/<step>/greedy.onnx` takes `observation` (a batch) and returns
`action`: the same function as the export's `serving/` SavedModel, written by
tf2onnx from a graph built for it. The graph computes the greedy action
directly (the argmax of a Q-network, the squashed mean of a Gaussian actor)
instead of through TF Probability's distribution objects, whose shape logic
(e.g. `BroadcastArgs`) ONNX has no operator for. tf2onnx skips what it cannot
convert, so every file is checked with onnxruntime before it is put in place.
"""

import os

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tf_agents.distributions import utils as distribution_utils
from tf_agents.policies import greedy_policy
from tf_agents.specs import tensor_spec
from tf_agents.utils import common

from trainer import errors
from trainer.compat import tf as compat_tf
from trainer.policies import served_forms

OPSET = 13


def greedy_action_function(policy) -> tf.types.experimental.GenericFunction:
  """`observation -> action` of the greedy version of `policy`, in ONNX-convertible ops."""
  while isinstance(policy, greedy_policy.GreedyPolicy):  # DQN's agent.policy is one already.
    policy = policy.wrapped_policy
  if not served_forms.servable(policy):
    raise errors.ConfigError("ONNX export needs a stateless policy with one observation tensor")

  def action(time_step):
    chosen = _mode(policy.distribution(time_step).action)
    if isinstance(policy.action_spec, tensor_spec.BoundedTensorSpec):
      chosen = common.clip_to_spec(chosen, policy.action_spec)  # As TFPolicy.action does.
    return {"action": tf.cast(chosen, policy.action_spec.dtype)}

  return served_forms.on_observations(policy.time_step_spec, action)


def _mode(distribution) -> tf.Tensor:
  if isinstance(distribution, distribution_utils.SquashToSpecNormal):
    # mode = means + magnitudes * tanh(mode of the Gaussian), and a Gaussian's mode is its loc.
    return (distribution.action_means +
            distribution.action_magnitudes * tf.tanh(distribution.input_distribution.loc))
  if isinstance(distribution, (tfp.distributions.Deterministic, tfp.distributions.Normal,
                               tfp.distributions.MultivariateNormalDiag)):
    # Their mode is their loc (PPO's normal policy), which is simple ops; tfp's mode()
    # broadcasts shapes with BroadcastArgs, which ONNX has no op for.
    return distribution.loc
  return distribution.mode()  # Categorical: an argmax.


def write_verified(policy, path: str, observations: np.ndarray,
                   expected_actions: np.ndarray) -> None:
  """Converts the greedy policy (its variables as they are now) to ONNX at `path`.

  The file is written beside `path`, run with onnxruntime on `observations`
  and put in place only if its actions agree with `expected_actions` (the
  SavedModel's); otherwise it is removed and the error says by how much.
  """
  model = _convert(greedy_action_function(policy))
  tmp = path + ".partial"
  try:
    with open(tmp, "wb") as f:
      f.write(model.SerializeToString())
      f.flush()
      os.fsync(f.fileno())
    try:
      problem = compare(run(tmp, observations), expected_actions)
    except Exception as e:  # onnxruntime refuses ops tf2onnx left unconverted.
      problem = f"onnxruntime cannot run it: {e}"
    if problem:
      raise errors.TrainerError(
          f"the ONNX form of {os.path.dirname(path)} does not match its SavedModel ({problem}); "
          "nothing was written. Use the SavedModel forms, or report the policy's network")
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _convert(function):
  """The ONNX model of `function`, frozen first: tensors it captures (C51's
  return support, say) become constants, where tf2onnx's own conversion of a
  function would make each one an extra input of the model. Its input and
  output keep their names, `observation` and `action`."""
  import tf2onnx  # Heavy; only the ONNX export needs it.

  frozen = compat_tf.freeze(function.get_concrete_function())
  (observation,), (action,) = frozen.inputs, frozen.outputs
  model, _ = tf2onnx.convert.from_graph_def(
      frozen.graph.as_graph_def(), input_names=[observation.name], output_names=[action.name],
      opset=OPSET)
  renames = {observation.name: "observation", action.name: "action"}
  for value in (*model.graph.input, *model.graph.output):
    value.name = renames.get(value.name, value.name)
  for node in model.graph.node:
    node.input[:] = [renames.get(name, name) for name in node.input]
    node.output[:] = [renames.get(name, name) for name in node.output]
  return model


def run(path: str, observations: np.ndarray) -> np.ndarray:
  """Actions of the ONNX policy at `path` for a batch of observations."""
  import onnxruntime
  session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
  (input_name,) = [i.name for i in session.get_inputs()]
  (output,) = session.run(None, {input_name: observations})
  return output


def compare(onnx_actions: np.ndarray, saved_model_actions: np.ndarray, *,
            atol: float = 1e-5) -> str | None:
  """None if the actions agree (equal for discrete, within `atol` for continuous), else why not."""
  if onnx_actions.shape != saved_model_actions.shape:
    return f"action shapes differ: {onnx_actions.shape} vs {saved_model_actions.shape}"
  if np.issubdtype(saved_model_actions.dtype, np.integer):
    differ = int(np.sum(onnx_actions != saved_model_actions))
    return f"{differ} of {len(onnx_actions)} actions differ" if differ else None
  error = float(np.max(np.abs(onnx_actions - saved_model_actions), initial=0.0))
  return f"actions differ by up to {error:g} (tolerance {atol:g})" if error > atol else None
