"""TF-Agents' private and deprecated pieces that the trainer uses (checked against
`PINNED["tf_agents"]`)."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tf_agents.train import learner

from trainer.compat import reach

if TYPE_CHECKING:
  from tf_agents.replay_buffers import tf_uniform_replay_buffer


def learner_train_loop() -> Callable[..., Any]:
  """The Python function behind `Learner._train`: `(learner, iterations,
  iterator, parallel_iterations) -> loss`, which runs `learner.single_train_step
  (iterator)` `iterations` times (a `for` over `tf.range`, for autograph to turn
  into a while loop) and returns the last loss summed over replicas and axes.

  Reaches into `Learner._train` (a `tf.function`) and its `python_function`.
  Needed by `trainer.learning.learner.Learner`, which traces the base class's
  loop itself (one concrete function per iterator, with or without summaries)
  instead of letting `Learner.run` call `_train`. TF-Agents 0.19.0.
  """
  train = reach("tf_agents", learner.Learner, "_train", "Learner._train")
  return reach("tf_agents", train, "python_function", "Learner._train (a tf.function)")


def experience_iterator(learner_obj: learner.Learner):
  """The iterator that `Learner.run` reads when it is given none: the
  Learner's distributed dataset of `experience_dataset_fn`, iterated once at
  construction.

  Reaches into `Learner._experience_iterator` (no public accessor). Needed by
  `trainer.learning.learner.Learner.run`, which keeps the base class's
  `run(iterations, iterator=None)` contract. TF-Agents 0.19.0. A Learner made
  without `experience_dataset_fn` has none: AttributeError, as in `Learner.run`.
  """
  return learner_obj._experience_iterator  # noqa: SLF001


def gather_all(buffer: "tf_uniform_replay_buffer.TFUniformReplayBuffer"):
  """Every item in `buffer`, shape [rows (its batch size), steps, ...], each row
  in the order its steps were added (graph code).

  Calls `ReplayBuffer.gather_all`, public but deprecated, with no removal date
  (TF-Agents' notice: use `as_dataset(..., single_deterministic_pass=True)`).
  That dataset, with `sample_batch_size=rows, num_steps=steps`, gives the same
  batch as its first element (the canary checks they agree), through a tf.data
  pipeline in the caller's graph; `gather_all` is one read of the buffer's
  table (about 1 ms against 4 to 10 for the pipeline, 8 rows of 256 steps,
  measured roughly on a shared CPU). When it goes, this body becomes
  `buffer.as_dataset(sample_batch_size=rows, num_steps=steps,
  single_deterministic_pass=True).take(1).get_single_element()[0]`. Needed by
  the on-policy loops, which copy the whole buffer into the Learner's batch
  (`trainer.replay.uniform`, `trainer.loops.on_policy`). TF-Agents 0.19.0.
  Its notice is silenced with TensorFlow's (`trainer.compat.tf`).
  """
  return reach("tf_agents", buffer, "gather_all", "ReplayBuffer.gather_all")()

