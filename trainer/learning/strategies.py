"""Where the learner trains: `tf.distribute` strategies, chosen in gin (`train.strategy`).

- `@default_strategy` (the default): TensorFlow's default strategy, one device.
- `@mirrored_strategy`: `tf.distribute.MirroredStrategy`, one replica per
  device: over every visible GPU, a given device list
  (`mirrored_strategy.devices = ['/gpu:0', '/gpu:1']`), or the CPU split into
  `mirrored_strategy.logical_cpus` logical devices (to try the strategy, and
  test it, on a machine without GPUs; it shows the overhead, not a speed-up).

`train.batch_size` is the global batch: under N replicas each trains on its
own batch of `train.batch_size / N` per train step (a multiple of N is
required), so a strategy changes where the job trains, not what it learns.
Gradients are summed over replicas after each agent divides its loss by the
global batch, as TF-Agents' `Learner` has it (TD3's critic loss is made to,
see `agents/td3.py`). The agent's variables, optimizer slots and the train step are created
under the strategy's scope; a checkpoint bundle holds one copy of each, so a
bundle restores under any strategy, and exports are strategy-free.

Multi-worker training (`MultiWorkerMirroredStrategy`, with
`tf.distribute.experimental.PreemptionCheckpointHandler`) would be another
builder here; it is not built yet.
"""

from collections.abc import Sequence

import gin
import tensorflow as tf

from trainer.config import values
from trainer.errors import ConfigError


@gin.configurable
def default_strategy() -> tf.distribute.Strategy:
  """TensorFlow's default strategy: no distribution."""
  return tf.distribute.get_strategy()


@gin.configurable
def mirrored_strategy(devices: Sequence[str] | None = None,
                      logical_cpus: int = 0) -> tf.distribute.Strategy:
  """`MirroredStrategy` over `devices`, over `logical_cpus` logical CPU devices,
  or (neither given) over every visible GPU (the CPU if there is none).

  `logical_cpus` splits the CPU before TensorFlow starts its runtime; it must
  not be combined with `devices`.
  """
  values.check_logical_cpus(logical_cpus, devices)
  if logical_cpus:
    _split_cpu(logical_cpus)
    devices = [f"/cpu:{i}" for i in range(logical_cpus)]
  if devices is not None:
    devices = list(devices)
    known = {_kind_and_index(d.name): d.name for d in tf.config.list_logical_devices()}
    for device in devices:
      if _kind_and_index(device) not in known:
        raise ConfigError(
            f"mirrored_strategy.devices names {device!r}, which this machine does not have (it "
            f"has {', '.join(sorted(known.values()))}); name those, or leave "
            "mirrored_strategy.devices unset to use every GPU")
  key = tuple(devices) if devices is not None else None
  if key not in _MIRRORED:
    _MIRRORED[key] = tf.distribute.MirroredStrategy(devices=devices)
  return _MIRRORED[key]


# One MirroredStrategy per device list per process: two of them over the same
# devices hand out clashing keys to their collective ops (a later job in the
# same process, e.g. a test, then fails with "Shape mismatch in the collective").
_MIRRORED: dict[tuple[str, ...] | None, tf.distribute.Strategy] = {}


def _kind_and_index(device: str) -> tuple[str, int | None]:
  """'/gpu:0', '/device:GPU:0' -> ('GPU', 0)."""
  try:
    spec = tf.DeviceSpec.from_string(device)
  except ValueError as e:
    raise ConfigError(f"mirrored_strategy.devices: {device!r} is not a device name (e.g. "
                      "'/gpu:0')") from e
  return (spec.device_type or "").upper(), spec.device_index


def _split_cpu(count: int) -> None:
  """Splits the physical CPU into `count` logical devices (once per process)."""
  cpu = tf.config.list_physical_devices("CPU")[0]
  configured = tf.config.get_logical_device_configuration(cpu)
  if configured is not None and len(configured) == count:
    return  # already split so (by an earlier job in this process)
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
  except RuntimeError as e:  # the runtime started before the job chose its strategy
    raise ConfigError(
        f"mirrored_strategy.logical_cpus={count}: TensorFlow started before the CPU could be "
        f"split ({len(tf.config.list_logical_devices('CPU'))} logical CPU now); start a new "
        "process with the same command") from e
