"""Shared by the benchmarks: the results file, the machine, summaries of repetitions."""

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
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


def argument_parser(doc: str, *, quick_help: str) -> argparse.ArgumentParser:
  """A benchmark's command line: its docstring as help, `--quick` and `--output`."""
  parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick_help}")
  parser.add_argument("--output", default=str(RESULTS))
  return parser


def write_results(args: argparse.Namespace, name: str, section: dict[str, Any]) -> None:
  """Merges a benchmark's section into `--output` with the command that reproduces
  it; a quick run's figures go to the scratch file unless `--output` names one."""
  output = RESULTS_QUICK if args.quick and args.output == str(RESULTS) else args.output
  script = f"benchmarks/{pathlib.Path(sys.argv[0]).name}"
  write_section(output, name, section, command=" ".join(["python", script, *sys.argv[1:]]))
