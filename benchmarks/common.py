"""Shared by the benchmarks: the results file, the machine, summaries of repetitions."""

import datetime
import json
import os
import pathlib
import platform
import statistics
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results.json"
RESULTS_QUICK = REPO / "benchmarks" / "results-quick.json"  # smoke runs; not committed


def machine() -> dict[str, Any]:
  import importlib.metadata
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpus": os.cpu_count()}
  try:
    with open("/proc/cpuinfo") as f:
      info["cpu"] = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), None)
    with open("/proc/meminfo") as f:
      info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
  except OSError:
    pass
  for package in ("tensorflow", "tf-agents", "dm-reverb"):
    info[package] = importlib.metadata.version(package)
  return info


def describe(values: list[float], unit: str = "s") -> dict[str, Any]:
  """Median and range of repetitions."""
  if not values:
    return {"n": 0}
  return {"n": len(values), f"median_{unit}": round(statistics.median(values), 4),
          f"min_{unit}": round(min(values), 4), f"max_{unit}": round(max(values), 4),
          "values": [round(v, 4) for v in values]}


def describe_runs(runs: list[dict]) -> dict[str, Any]:
  """Time-to-solve runs: an unsolved run counts as its timeout in the median (and is flagged)."""
  if not runs:
    return {"n": 0}
  solved = [r for r in runs if r["seconds"] is not None]
  seconds = [r["seconds"] if r["seconds"] is not None else float("inf") for r in runs]
  out = describe([s for s in seconds if s != float("inf")])
  out.update(n=len(runs), solved=len(solved),
             median_s=statistics.median(seconds) if len(solved) * 2 > len(runs) else None,
             train_steps=[r["train_step"] for r in runs], runs=runs)
  if out["median_s"] is not None:
    out["median_s"] = round(out["median_s"], 2)
  return out


def dumps(value: Any) -> str:
  return json.dumps(value, indent=2, default=str)


def write_section(path, name: str, section: dict[str, Any], *, command: str) -> None:
  """Merges one benchmark's figures into the results file."""
  path = pathlib.Path(path)
  results = json.loads(path.read_text()) if path.exists() else {}
  results[name] = {**section, "command": command, "machine": machine(),
                   "measured_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
  tmp = path.with_suffix(".tmp")
  tmp.write_text(dumps(results) + "\n")
  os.replace(tmp, path)
