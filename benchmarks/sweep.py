r"""What running a sweep's members in parallel pays on this machine, and the sweep's own cost.

  python benchmarks/sweep.py [--members 8] [--train_steps 2000] [--parallel 1,2,4] [--quick]

The same sweep, `--members` seeds of configs/dqn_cartpole.gin shortened to
`--train_steps` train steps (evaluations of 5 episodes every 1,000, the
default checkpoints and exports), run from scratch by `python -m trainer.sweep`
at each `--parallel` (its default threads: the cores over --parallel):

- the sweep's wall time, launch to exit;
- each member's train steps/s: its steps over its log's span from "Training
  from step 0" to its last step line (the loop alone: no start-up, initial
  collect or final checkpoint), and its process's wall time (start-up
  included), from the sweep's outcomes.json;
- the launcher's own cost per member: the sweep's wall time minus the time
  some member was running (the union of their spans), over the members: the
  polling, the completion checks, the process starts.

Results: the "sweep" section of benchmarks/results.json.
"""

import datetime
import json
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

_STAMP = re.compile(r"^[IWE]\d{4} (\d\d:\d\d:\d\d\.\d+) ")
_STEP = re.compile(r"\] step (\d+)/(\d+) ")
_START = re.compile(r"^--- (\S+) trainer\.sweep starts member")


def _seconds(line: str) -> float | None:
  found = _STAMP.match(line)
  if not found:
    return None
  t = datetime.datetime.strptime(found.group(1), "%H:%M:%S.%f")
  return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def member_rate(log_text: str) -> float:
  """Train steps/s of the member's loop (module doc)."""
  start = end = None
  steps = 0
  for line in log_text.splitlines():
    if "Training from step 0" in line:
      start = _seconds(line)
    elif (found := _STEP.search(line)) and start is not None:
      end, steps = _seconds(line), int(found.group(1))
  return steps / (end - start)


def run(work: pathlib.Path, members: int, train_steps: int, parallel: int) -> dict:
  root = work / f"parallel{parallel}"
  bindings = [f"train.num_iterations={train_steps}", "train.eval_interval=1000",
              "train.eval_episodes=5", "train.log_interval=100"]
  cmd = [sys.executable, "-m", "trainer.sweep", f"--root_dir={root}",
         f"--gin_file={REPO / 'configs' / 'dqn_cartpole.gin'}",
         *(f"--gin_bindings={b}" for b in bindings), f"--seeds={members}",
         f"--parallel={parallel}"]
  started = time.monotonic()
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  wall = time.monotonic() - started
  if out.returncode:
    raise SystemExit(f"the sweep exited {out.returncode}: {out.stderr[-3000:]}")
  outcomes = json.loads((root / "outcomes.json").read_text())
  spans = []
  for outcome in outcomes.values():
    begun = datetime.datetime.fromisoformat(outcome["at"]).timestamp() - outcome["seconds"]
    spans.append((begun, begun + outcome["seconds"]))
  busy, reach = 0.0, None
  for a, b in sorted(spans):  # the union of the members' spans
    if reach is None or a > reach:
      busy += b - a
      reach = b
    elif b > reach:
      busy += b - reach
      reach = b
  rates = [member_rate((root / "logs" / f"{name}.log").read_text()) for name in outcomes]
  member_wall = [o["seconds"] for o in outcomes.values()]
  return {"parallel": parallel, "wall_s": round(wall, 1),
          "member_steps_per_s": common.describe(rates, "steps_per_s"),
          "member_wall_s": common.describe(member_wall),
          "launcher_s_per_member": round(max(0.0, wall - busy) / members, 2),
          "members_per_hour": round(members / wall * 3600, 1)}


def main() -> int:
  parser = common.argument_parser(__doc__, quick_help="4 members of 300 steps at 1 and 2")
  parser.add_argument("--members", type=int, default=8)
  parser.add_argument("--train_steps", type=int, default=2000)
  parser.add_argument("--parallel", default="1,2,4")
  args = parser.parse_args()
  if args.quick:
    args.members, args.train_steps, args.parallel = 4, 300, "1,2"
  results = []
  with tempfile.TemporaryDirectory(prefix="trainer-bench-sweep-") as tmp:
    for parallel in (int(p) for p in args.parallel.split(",")):
      results.append(run(pathlib.Path(tmp), args.members, args.train_steps, parallel))
      print(json.dumps(results[-1]), flush=True)
  for r in results:
    r["speedup"] = round(results[0]["wall_s"] / r["wall_s"], 2)
  section = {"members": args.members, "train_steps": args.train_steps, "runs": results,
             "median_member_steps_per_s": statistics.median(
                 r["member_steps_per_s"]["median_steps_per_s"] for r in results)}
  print(common.dumps(section), flush=True)
  common.write_results(args, "sweep", section)
  return 0


if __name__ == "__main__":
  sys.exit(main())
