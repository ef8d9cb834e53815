"""TF-Agents' `Learner`, with the cost of a `run` call cut to its train steps.

`Learner.run(iterations=K)` runs K train steps in one `tf.function` call and
then calls the triggers; this subclass keeps that contract (the same train
steps, summaries, triggers and returned loss) and removes two costs measured
on the default DQN job (`docs/benchmarks.md`):

- Summaries. The base class traces the agent's summary ops under a
  `record_if(train_step % summary_interval == 0)` condition, so every train
  step of every call evaluates that condition for each summary. Here the
  steps where a summary is due (those that begin at a multiple of the
  interval, as in the base class) run in a graph traced with summaries
  recorded, and all the others in a graph traced without summary ops: a
  call that reaches such a step is split around it (the cost it removes is
  in docs/benchmarks_notes.md).
- Dispatch. Each (iterator, summaries) pair gets one concrete function, called
  with flat tensors (`flat_call`), so a call skips `tf.function`'s
  matching of its arguments.
"""

from typing import Any

import tensorflow as tf
from tf_agents.train import learner
from tf_agents.utils import common

from trainer.compat import tf_agents as compat_tf_agents
from trainer.learning.flat_call import flat_call

_TRAIN_LOOP = compat_tf_agents.learner_train_loop()  # (self, iterations, iterator, parallel_iterations)


class Learner(learner.Learner):
  """A `tf_agents.train.learner.Learner` whose `run` traces summaries only
  into the steps that write them."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._summary_every = int(self.summary_interval.numpy())
    # (id(iterator), summaries, parallel_iterations) -> (iterator, concrete function)
    self._graphs: dict[tuple, tuple[Any, Any]] = {}

  def run(self, iterations: int = 1, iterator=None, parallel_iterations: int = 10):
    """Runs `iterations` train steps, then the triggers; returns the last
    step's loss (as the base class does)."""
    if iterations < 1:
      raise ValueError(f"iterations must be >= 1, got {iterations}")
    iterator = iterator or compat_tf_agents.experience_iterator(self)
    step = int(self.train_step.numpy())
    with self.train_summary_writer.as_default(), common.soft_device_placement(), \
        self.strategy.scope():
      for count, summaries in self._segments(step, iterations):
        loss_info = self._graph(iterator, summaries, parallel_iterations)(tf.constant(count))
    train_step = self.train_step.numpy()
    for trigger in self.triggers:
      trigger(train_step)
    return loss_info

  def _segments(self, step: int, iterations: int) -> list[tuple[int, bool]]:
    """Splits steps `step .. step+iterations-1` into runs without summaries
    and the single steps (at multiples of the summary interval) with them."""
    every, end, out = self._summary_every, step + iterations, []
    while step < end:
      if every and step % every == 0:
        out.append((1, True))
        step += 1
        continue
      upto = min(end, step + (-step) % every) if every else end
      out.append((upto - step, False))
      step = upto
    return out

  def _graph(self, iterator, summaries: bool, parallel_iterations: int):
    key = (id(iterator), summaries, parallel_iterations)
    if key not in self._graphs:
      if summaries:  # always one step: no loop to trace (a trace of the train step less)
        function = tf.function(lambda count: self._reduced(self.single_train_step(iterator)),
                               autograph=False)
      else:  # the base class's loop; autograph turns its `for` into a while loop
        function = tf.function(
            lambda count: _TRAIN_LOOP(self, count, iterator, parallel_iterations), autograph=True)
      with tf.summary.record_if(summaries):
        concrete = function.get_concrete_function(tf.TensorSpec([], tf.int32))
      # Holds the iterator, so that its id stays its own.
      self._graphs[key] = (iterator, flat_call(concrete))
    return self._graphs[key][1]

  def _reduced(self, loss_info):
    """The loss as the base class's loop returns it: summed over replicas and axes."""
    def reduce(loss):
      rank = (loss.values[0] if isinstance(loss, tf.distribute.DistributedValues) else loss).shape.rank
      return self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss,
                                  axis=tuple(range(rank)) if rank else None)
    return tf.nest.map_structure(reduce, loss_info)
