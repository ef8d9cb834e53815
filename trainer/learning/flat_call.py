"""Calling traced graphs without their per-call argument binding.

A `ConcreteFunction` called with structured arguments binds them to its
signature on every call, checking each one against its spec (runtime
`Protocol` checks among them), about as much as running a small policy's
graph (docs/benchmarks_notes.md). The training loop calls its graphs
(the collect and eval policies, the replay's prepare, the Learner's loop)
thousands of times with the structure they were traced with, so `flat_call`
converts the arguments to tensors of the traced dtypes and runs the graph
with them directly, through `ConcreteFunction._call_flat`: the call that the
structured path ends in (a private method: `trainer.compat.tf.call_flat`).
"""

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from trainer.compat import tf as compat_tf


def flat_call(concrete) -> Callable[..., Any]:
  """`concrete`'s positional call, minus the argument binding; returns its
  structured outputs."""
  specs = tf.nest.flatten(concrete.structured_input_signature)

  def call(*args):
    values = tf.nest.flatten(args)
    if len(values) != len(specs):
      raise TypeError(f"{concrete.name} takes {len(specs)} tensors, got {len(values)}")
    tensors = [tf.convert_to_tensor(value, spec.dtype) for value, spec in zip(values, specs, strict=True)]
    return compat_tf.call_flat(concrete, tensors)

  return call
