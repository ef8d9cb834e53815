"""TensorFlow's private pieces that the trainer uses (checked against `PINNED["tensorflow"]`)."""

from collections.abc import Sequence
from typing import Any

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.util import deprecation

from trainer.compat import reach


def call_flat(concrete, tensors: Sequence[tf.Tensor]) -> Any:
  """Runs the `ConcreteFunction` `concrete` on `tensors` (its flattened
  arguments, already of the traced dtypes); returns its structured outputs.

  Reaches into `ConcreteFunction._call_flat(tensor_inputs, captured_inputs)`,
  the call that a structured call ends in once it has bound and checked its
  arguments. Needed by `trainer.learning.flat_call`: the training loop calls
  its graphs thousands of times with the structure they were traced with, and
  the binding costs about as much as a small policy's graph. TensorFlow 2.15.
  Hot path: no checks here (the canary checks the signature).
  """
  return concrete._call_flat(tensors, concrete.captured_inputs)  # noqa: SLF001


def freeze(concrete):
  """`concrete` (a `ConcreteFunction`) with its captured variables and tensors
  turned into constants; a `ConcreteFunction` whose `inputs` are its arguments alone.

  Reaches into `tensorflow.python.framework.convert_to_constants.
  convert_variables_to_constants_v2`, which TensorFlow does not export
  (`tf.graph_util` has only the TF1 version, for sessions). Needed by the ONNX
  export (`trainer.policies.onnx_policy`): tf2onnx would make each captured
  tensor an extra input of the model. TensorFlow 2.15.
  """
  convert = reach("tensorflow", convert_to_constants, "convert_variables_to_constants_v2",
                  "tensorflow.python.framework.convert_to_constants")
  return convert(concrete)


def silence_deprecation_notices() -> None:
  """Stops TensorFlow printing a notice at the first call of each deprecated
  function (TF-Agents calls several, e.g. `ReplayBuffer.gather_all`).

  Reaches into the module flag `tensorflow.python.util.deprecation.
  _PRINT_DEPRECATION_WARNINGS`, which every `@deprecated` wrapper reads at call
  time; TensorFlow has no public switch (`tf.get_logger` levels hide every
  warning, not just these). Needed by the commands' quiet logs
  (`trainer.cli.quiet`). TensorFlow 2.15.
  """
  reach("tensorflow", deprecation, "_PRINT_DEPRECATION_WARNINGS",
        "tensorflow.python.util.deprecation")
  deprecation._PRINT_DEPRECATION_WARNINGS = False  # noqa: SLF001
