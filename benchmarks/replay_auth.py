r"""What signing every replay item would cost the learner's feed (issue: "nobody else gets in").

  python benchmarks/replay_auth.py [--batches 2000] [--item_bytes 112] [--batch 64]

The roles sign the policy weights and the collectors' counters (trainer/roles/auth.py), not the
replay items. Signing each item would mean: a collector computes an HMAC-SHA256 per item it
writes, and the learner verifies every sampled item before training on it. The learner's feed is
a tf.data pipeline of Reverb samples (C++), so a verification in Python is a `tf.py_function` over
each batch. This measures, in one process and one run:

- sign: µs per item to compute the HMAC of an item of `--item_bytes` (the default DQN CartPole
  job's packed two-step item);
- verify: µs per batch added to a tf.data pipeline of `--batch` such items by a `tf.py_function`
  that checks each item's HMAC (batches from memory, so the figure is the verification alone);
- the learner's own time per train step, from the same tf.data machinery is not measured here:
  the share is against `learner_feed.roles_learner.steps_per_s` of benchmarks/results.json (a
  different run: said so in the output).

Prints one JSON line.
"""

import argparse
import hashlib
import hmac
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
KEY = b"k" * 32


def _sign_us(items: list[bytes]) -> float:
  start = time.perf_counter()
  for item in items:
    hmac.new(KEY, item, hashlib.sha256).digest()
  return (time.perf_counter() - start) / len(items) * 1e6


def _pipeline_us(batches: tf.Tensor, macs: tf.Tensor, verify: bool, n: int) -> float:
  def check(items, signatures):
    for item, mac in zip(items.numpy(), signatures.numpy(), strict=True):
      if not hmac.compare_digest(hmac.new(KEY, item, hashlib.sha256).digest(), mac):
        raise ValueError("forged item")
    return items

  dataset = tf.data.Dataset.from_tensor_slices((batches, macs)).repeat()
  if verify:
    dataset = dataset.map(lambda items, signatures: tf.py_function(
        check, [items, signatures], tf.string))
  else:
    dataset = dataset.map(lambda items, signatures: items)
  iterator = iter(dataset.prefetch(2))
  for _ in range(50):  # warm-up
    next(iterator)
  start = time.perf_counter()
  for _ in range(n):
    next(iterator)
  return (time.perf_counter() - start) / n * 1e6


def main() -> int:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batches", type=int, default=2000)
  parser.add_argument("--item_bytes", type=int, default=112)
  parser.add_argument("--batch", type=int, default=64)
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  items = [rng.bytes(args.item_bytes) for _ in range(256 * args.batch)]
  macs = [hmac.new(KEY, item, hashlib.sha256).digest() for item in items]
  batches = tf.constant(np.array(items, dtype=object).reshape(256, args.batch))
  signatures = tf.constant(np.array(macs, dtype=object).reshape(256, args.batch))
  sign = _sign_us(items)
  plain = _pipeline_us(batches, signatures, False, args.batches)
  verified = _pipeline_us(batches, signatures, True, args.batches)
  added = verified - plain
  result = {"item_bytes": args.item_bytes, "batch": args.batch, "sign_us_per_item": sign,
            "pipeline_us_per_batch": plain, "verified_us_per_batch": verified,
            "verify_added_us_per_batch": added}
  results = REPO / "benchmarks" / "results.json"
  if results.exists():
    feed = json.loads(results.read_text()).get("learner_feed", {}).get("roles_learner", {})
    if feed.get("steps_per_s"):
      step_us = 1e6 / feed["steps_per_s"]
      result.update(learner_step_us_from_results=step_us,
                    verify_share_of_a_train_step=added / (step_us + added))
  print(json.dumps(result), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
