"""What the value-based agents (DQN, C51) build alike: the input step and conv
layers for image observations, the optimizer, the TD loss and the epsilon schedule.

Each is a choice a gin binding makes (`create_dqn_agent.optimizer = 'rmsprop'`),
checked here with one line naming the binding. The defaults build what the
agents built before these knobs existed.
"""

import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf
from tf_agents.utils import common

from trainer.agents.checks import check_positive
from trainer.errors import ConfigError

CONV_EXAMPLE = "((32, 8, 4), (64, 4, 2), (64, 3, 1))"
LOSSES = {"squared": common.element_wise_squared_loss, "huber": common.element_wise_huber_loss}


class ScaleObservation(tf.keras.layers.Layer):
  """Casts observations to float32 and multiplies them by `scale`."""

  def __init__(self, scale: float, **kwargs):
    super().__init__(**kwargs)
    self.scale = float(scale)

  def call(self, inputs):
    return tf.cast(inputs, tf.float32) * self.scale

  def get_config(self) -> dict:
    return {**super().get_config(), "scale": self.scale}


def observation_scale(builder: str, observation_spec, scale: float | None) -> float | None:
  """The factor an integer observation is scaled by before the network, or None
  for a float observation left as it is. `scale=None` picks 1 / the spec's
  maximum: 1/255 for 8-bit pixels, 1 for MinAtar's 0/1 channels, so either
  reaches the network in [0, 1]."""
  if scale is not None:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(
        scale) or scale <= 0:
      raise ConfigError(f"{builder}.observation_scale must be a positive number (e.g. 1/255 "
                        f"= 0.00392156862745098 for pixels) or None for 1/maximum, got {scale!r}")
    return float(scale)
  if observation_spec.dtype.is_floating:
    return None
  maximum = float(np.max(getattr(observation_spec, "maximum", observation_spec.dtype.max)))
  return 1.0 / maximum if maximum > 0 else 1.0


def check_conv_layers(builder: str, conv_layer_params) -> tuple[tuple[int, int, int], ...]:
  """(filters, kernel size, stride) triples, each a positive int."""
  ok = isinstance(conv_layer_params, (list, tuple)) and all(
      isinstance(c, (list, tuple)) and len(c) == 3 and all(
          isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in c)
      for c in conv_layer_params)
  if not ok:
    raise ConfigError(f"{builder}.conv_layer_params must be a tuple of (filters, kernel, stride) "
                      f"triples of positive ints, e.g. {CONV_EXAMPLE} (Nature DQN), or () for "
                      f"none; got {conv_layer_params!r}")
  return tuple(tuple(c) for c in conv_layer_params)


def _he_normal():
  return tf.keras.initializers.VarianceScaling(scale=2.0, mode="fan_in",
                                               distribution="truncated_normal")


def encoder_layers(scale: float | None, conv_layers: Sequence[tuple[int, int, int]],
                   fc_layers: Sequence[int]) -> list[tf.keras.layers.Layer]:
  """The input step (when `scale` is set), conv layers (ReLU) and a flatten when
  there are any, then the dense layers (ReLU)."""
  layers: list[tf.keras.layers.Layer] = []
  if scale is not None:
    layers.append(ScaleObservation(scale))
  for filters, kernel, stride in conv_layers:
    layers.append(tf.keras.layers.Conv2D(filters, kernel, stride, activation="relu",
                                         kernel_initializer=_he_normal()))
  if conv_layers:
    layers.append(tf.keras.layers.Flatten())
  layers += [tf.keras.layers.Dense(units, activation=tf.keras.activations.relu,
                                   kernel_initializer=_he_normal()) for units in fc_layers]
  return layers


def create_optimizer(builder: str, name: str, learning_rate: float, *, rmsprop_rho: float,
                     rmsprop_momentum: float, rmsprop_epsilon: float,
                     rmsprop_centered: bool) -> tf.keras.optimizers.Optimizer:
  """Adam, or RMSProp with its knobs (Keras adds epsilon inside the square root,
  as TF1's RMSProp that Dopamine and the Nature DQN used)."""
  check_positive(f"{builder}.learning_rate", learning_rate)
  if name == "adam":
    return tf.keras.optimizers.Adam(learning_rate=learning_rate)
  if name != "rmsprop":
    raise ConfigError(f"{builder}.optimizer must be 'adam' or 'rmsprop', got {name!r}")
  if isinstance(rmsprop_rho, bool) or not isinstance(rmsprop_rho, (int, float)) or \
      not 0 < rmsprop_rho < 1:
    raise ConfigError(f"{builder}.rmsprop_rho must be in (0, 1), e.g. 0.95; got {rmsprop_rho!r}")
  if isinstance(rmsprop_momentum, bool) or not isinstance(rmsprop_momentum, (int, float)) or \
      not 0 <= rmsprop_momentum < 1:
    raise ConfigError(f"{builder}.rmsprop_momentum must be in [0, 1), e.g. 0.0; got "
                      f"{rmsprop_momentum!r}")
  check_positive(f"{builder}.rmsprop_epsilon", rmsprop_epsilon)
  if not isinstance(rmsprop_centered, bool):
    raise ConfigError(f"{builder}.rmsprop_centered must be True or False, got "
                      f"{rmsprop_centered!r}")
  return tf.keras.optimizers.RMSprop(learning_rate=learning_rate, rho=rmsprop_rho,
                                     momentum=rmsprop_momentum, epsilon=rmsprop_epsilon,
                                     centered=rmsprop_centered)


def td_loss(builder: str, loss: str) -> Callable:
  """The element-wise TD loss: 'squared', or 'huber' (delta 1: smooth L1)."""
  if loss not in LOSSES:
    raise ConfigError(f"{builder}.loss must be one of {sorted(LOSSES)}, got {loss!r}")
  return LOSSES[loss]


def epsilon_schedule(builder: str, start: float, final: float | None, decay_steps: int,
                     train_step: tf.Variable) -> float | Callable[[], tf.Tensor]:
  """`start`, or with `decay_steps` > 0 a callable that decays it linearly to
  `final` over the first `decay_steps` train steps and holds it there (Dopamine's
  `linearly_decaying_epsilon`). It reads `train_step`, so an exported collect
  policy and a collector role act with the epsilon of the step they hold."""
  for knob, value in (("epsilon_greedy", start), ("epsilon_final", final)):
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not 0 <= value <= 1):
      raise ConfigError(f"{builder}.{knob} must be a probability in [0, 1], got {value!r}")
  if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < 0:
    raise ConfigError(f"{builder}.epsilon_decay_steps must be an int >= 0 (train steps; 0: a "
                      f"constant epsilon_greedy), got {decay_steps!r}")
  if decay_steps == 0:
    return start
  if final is None:
    raise ConfigError(f"{builder}.epsilon_decay_steps={decay_steps} needs "
                      f"{builder}.epsilon_final, the epsilon it decays to (e.g. 0.01)")
  start, final = float(start), float(final)

  def epsilon() -> tf.Tensor:
    done = tf.minimum(tf.cast(train_step, tf.float32) / decay_steps, 1.0)
    return start + (final - start) * done

  return epsilon


def agent_arguments(builder: str, train_step: tf.Variable, *, optimizer: str,
                    learning_rate: float, rmsprop_rho: float, rmsprop_momentum: float,
                    rmsprop_epsilon: float, rmsprop_centered: bool, loss: str,
                    epsilon_greedy: float, epsilon_final: float | None,
                    epsilon_decay_steps: int) -> dict:
  """The `optimizer`, `td_errors_loss_fn` and `epsilon_greedy` arguments of a
  DqnAgent (or CategoricalDqnAgent) from the builder's knobs, checked."""
  return {
      "optimizer": create_optimizer(
          builder, optimizer, learning_rate, rmsprop_rho=rmsprop_rho,
          rmsprop_momentum=rmsprop_momentum, rmsprop_epsilon=rmsprop_epsilon,
          rmsprop_centered=rmsprop_centered),
      "td_errors_loss_fn": td_loss(builder, loss),
      "epsilon_greedy": epsilon_schedule(builder, epsilon_greedy, epsilon_final,
                                         epsilon_decay_steps, train_step),
  }
