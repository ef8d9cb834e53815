r"""What signing every replay item would cost the learner's feed (docs/security.md).

  python benchmarks/replay_auth.py [--batches 2000] [--item_bytes 112] [--batch 64] [--quick]

The roles sign the policy weights and the collectors' counters (trainer/roles/auth.py), not the
replay items. Signing each item would mean: a collector computes an HMAC-SHA256 per item it
writes, and the learner verifies every sampled item before training on it. The learner's feed is
a tf.data pipeline of Reverb samples (C++), so a verification in Python is a `tf.py_function` over
each batch. This measures, in one process and one run:

- sign: µs per item to compute the HMAC of an item of `--item_bytes` (the default DQN CartPole
  job's packed two-step item);
- verify: µs per batch added to a tf.data pipeline of `--batch` such items by a `tf.py_function`
  that checks each item's HMAC (batches from memory, so the figure is the verification alone);
- the share of a train step it would take: against the learner's own rate over loopback
  (`learner_feed.roles_learner.steps_per_s` in the same results file: `make bench` runs
  learner_feed.py just before this script). The target for signing every item: ≤ 10 %.

Results are the "replay_auth" section of --output.
"""

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
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

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
  parser = common.argument_parser(__doc__, quick_help="200 batches")
  parser.add_argument("--batches", type=int, default=2000)
  parser.add_argument("--item_bytes", type=int, default=112)
  parser.add_argument("--batch", type=int, default=64)
  args = parser.parse_args()
  n = 200 if args.quick else args.batches
  rng = np.random.default_rng(0)
  items = [rng.bytes(args.item_bytes) for _ in range(256 * args.batch)]
  macs = [hmac.new(KEY, item, hashlib.sha256).digest() for item in items]
  batches = tf.constant(np.array(items, dtype=object).reshape(256, args.batch))
  signatures = tf.constant(np.array(macs, dtype=object).reshape(256, args.batch))
  section = {"item_bytes": args.item_bytes, "batch": args.batch, "batches": n,
             "sign_us_per_item": _sign_us(items)}
  plain, verified = [], []
  for _ in range(3):  # interleaved
    plain.append(_pipeline_us(batches, signatures, False, n))
    verified.append(_pipeline_us(batches, signatures, True, n))
  section.update(pipeline_us_per_batch=sorted(plain)[1], verified_us_per_batch=sorted(verified)[1])
  section["verify_added_us_per_batch"] = added = (section["verified_us_per_batch"]
                                                  - section["pipeline_us_per_batch"])
  output = pathlib.Path(common.RESULTS_QUICK if args.quick and args.output == str(common.RESULTS)
                        else args.output)
  results = json.loads(output.read_text()) if output.exists() else {}
  feed = results.get("learner_feed", {})
  if feed.get("roles_learner", {}).get("steps_per_s"):
    step_us = 1e6 / feed["roles_learner"]["steps_per_s"]
    section.update(learner_step_us=step_us, learner_feed_measured_at=feed.get("measured_at"),
                   verify_share_of_a_train_step=added / (step_us + added))
  print(common.dumps(section), flush=True)
  common.write_results(args, "replay_auth", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
