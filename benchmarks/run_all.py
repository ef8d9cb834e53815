r"""`make bench`: runs the benchmarks and writes the table in docs/benchmarks.md.

  python benchmarks/run_all.py [--quick] [--render_only]

Each benchmark merges its section into benchmarks/results.json; this script
then renders every figure with its anchor (measured in the same run), the
ratio, the target and the command that reproduces it. --quick is a smoke run
(one run per side, short measurements): its figures are not for quoting.
"""

import argparse
import json
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import common  # noqa: E402

# Each merges a section into --output; export_stall.py writes its own file.
BENCHMARKS = [("learner_throughput.py", []), ("overhead.py", []), ("persistence.py", []),
              ("time_to_solve.py", ["--example_hparams", "--timeout=200"]), ("strategies.py", []),
              ("roles.py", []), ("learner_feed.py", []),
              ("replay_auth.py", []),  # after learner_feed.py: its share of that feed's step
              ("replay_checkpoint.py", []),
              # The same replay in one table: what the shards are worth.
              ("replay_checkpoint.py", ["--shards=1"]),
              ("frame_replay.py", []), ("roles_frames.py", []), ("atari_throughput.py", []),
              ("sweep.py", []), ("object_storage.py", [])]
DOC = REPO / "docs" / "benchmarks.md"
EXPORT_STALL = REPO / "benchmarks" / "export_stall.json"
# docs/benchmarks.md is the generated table, then notes written by hand (the sweeps, the
# profiles, the A/B runs), which a run keeps: everything from this line on.
NOTES_MARKER = "<!-- Written by hand from here on: `make bench` rewrites only what is above. -->"


def with_notes(table: str, old_doc: str) -> str:
  """The new table followed by the hand-written notes of `old_doc`."""
  _, marker, notes = old_doc.partition(NOTES_MARKER)
  if not marker:
    raise SystemExit(f"{DOC} has lost the line {NOTES_MARKER!r} that starts its hand-written "
                     "notes: restore it (git log -p docs/benchmarks.md) before rendering")
  return table.rstrip("\n") + "\n\n" + NOTES_MARKER + notes


def _command(command: str) -> str:
  """The reproducing command, without where make bench put its output."""
  return " ".join(arg for arg in command.split() if not arg.startswith("--output"))


def _fmt(value, unit="", digits=1) -> str:
  return "—" if value is None else f"{value:,.{digits}f}{unit}"


def render(results: dict) -> str:
  rows = []
  solve = results.get("time_to_solve")
  if solve:
    t, a = solve["trainer"], solve["anchor"]
    rows.append((
        "wall time to first eval ≥ 195 on CartPole-v0 (10 greedy episodes, after step 0)",
        f"TF-Agents `dqn_train_eval`: median {_fmt(a.get('median_s'), ' s')} "
        f"(range {_fmt(a.get('min_s'), ' s')}–{_fmt(a.get('max_s'), ' s')}, "
        f"{a.get('solved')}/{a.get('n')} solved, steps {a.get('train_steps')})",
        f"median {_fmt(t.get('median_s'), ' s')} (range {_fmt(t.get('min_s'), ' s')}–"
        f"{_fmt(t.get('max_s'), ' s')}, {t.get('solved')}/{t.get('n')} solved, "
        f"steps {t.get('train_steps')})",
        f"{_fmt(solve.get('speedup'), '×', 2)} faster", "≥ 5× faster",
        "met" if (solve.get("speedup") or 0) >= 5 else "missed", solve["command"]))
    e = solve.get("trainer_example_hparams")
    if e:
      rows.append((
          "… the same, trainer with the example's hyperparameters "
          f"({', '.join(solve['example_hparams'])}): the engineering's share",
          "the same anchor runs",
          f"median {_fmt(e.get('median_s'), ' s')} (range {_fmt(e.get('min_s'), ' s')}–"
          f"{_fmt(e.get('max_s'), ' s')}, {e.get('solved')}/{e.get('n')} solved, "
          f"steps {e.get('train_steps')})",
          f"{_fmt(solve.get('speedup_example_hparams'), '×', 2)} faster", "—", "—",
          solve["command"]))
  learn = results.get("learner_throughput")
  if learn:
    limit = learn["limit"]["steps_per_s"]
    anchor = learn["anchor_k100"]
    # The target is judged as its anchor is measured, at 100 steps per call; the
    # default job's chunk is shown beside it.
    for name in sorted((k for k in learn if k.startswith("trainer_k")),
                       key=lambda k: k != "trainer_k100"):
      fig, judged = learn[name], name == "trainer_k100"
      fraction, groups = fig["fraction_of_limit"], fig["fractions_of_limit_by_group"]
      per_call = name.split("_k")[1]
      rows.append((
          f"learner train steps/s fed from replay ({per_call} steps per Learner.run"
          f"{'' if judged else ', the default job'})",
          f"TF-Agents `Learner` fed by `as_dataset`, 100 per run: "
          f"{_fmt(anchor['steps_per_s'], '', 0)} ({anchor['fraction_of_limit']:.0%} of the limit)",
          f"{_fmt(fig['steps_per_s'], '', 0)} (groups of rounds: "
          f"{_fmt(fig['min_group_steps_per_s'], '', 0)}–{_fmt(fig['max_group_steps_per_s'], '', 0)})",
          f"{fraction:.0%} of the limit (groups: {min(groups):.0%}–{max(groups):.0%})",
          "≥ 80 % of the limit" if judged else "— (judged at 100 per call, as the anchor)",
          ("met" if fraction >= 0.8 else "missed") if judged else "—", learn["command"]))
    rows.append(("fixed-batch limit: `tf.function` loop of `agent.train` on one batch", "—",
                 f"{_fmt(limit, '', 0)} steps/s", "—", "—", "—", learn["command"]))
  stall_path = EXPORT_STALL
  if stall_path.exists():
    stall = json.loads(stall_path.read_text())
    rows.append(("training-loop stall per policy export",
                 f"synchronous `PolicySaver.save`: median "
                 f"{stall['anchor_sync_policysaver_save']['median_ms']:.0f} ms",
                 f"median {stall['trainer']['median_ms']:.1f} ms, p90 {stall['trainer']['p90_ms']:.1f} ms, "
                 f"max {stall['trainer']['max_ms']:.1f} ms (exports during the first one's "
                 "template build wait for the GIL)",
                 f"{stall['ratio_median']:.1%} of the anchor", "≤ ~20 ms (median)",
                 "met" if stall["trainer"]["median_ms"] <= 20 else "missed", stall["command"]))
  rows += _persistence_rows(results.get("persistence"))
  overhead = results.get("overhead")
  if overhead:
    pct, per_step = overhead["median_overhead_pct"], overhead["median_pair_overhead_pct"]
    rows.append((
        "framework overhead vs a bare collect + `Learner.run` loop (same agent and replay, "
        f"{overhead['steps']:,} train steps, checkpoints and exports at the default rate, evals off)",
        "bare loop (same `Collector`, replay feed and Learner class, no triggers): median "
        f"{_fmt(overhead['bare_s']['median_s'], ' s', 2)}",
        f"the job's loop: median {_fmt(overhead['trainer_s']['median_s'], ' s', 2)}; "
        f"blocks without a checkpoint or export: {per_step:+.1f}%",
        f"{pct:+.1f}% in all", "≤ 3 %", "met" if pct <= 3 else "missed", overhead["command"]))
  rows += _strategy_rows(results.get("strategies"))
  rows += _roles_rows(results.get("roles_collection"))
  rows += _roles_solve_rows(results.get("roles_time_to_solve"))
  rows += _feed_rows(results.get("learner_feed"))
  rows += _replay_auth_rows(results.get("replay_auth"))
  rows += _replay_checkpoint_rows(results.get("replay_checkpoint"),
                                  results.get("replay_checkpoint_1_shards"))
  rows += _frame_replay_rows(results.get("frame_replay"))
  rows += _roles_frames_rows(results.get("roles_frames"))
  rows += _atari_rows(results.get("atari_throughput"))
  rows += _sweep_rows(results.get("sweep"))
  rows += _object_storage_rows(results.get("object_storage"))
  machine = next((s["machine"] for s in results.values() if isinstance(s, dict) and "machine" in s),
                 common.machine())
  lines = [
      "# Benchmarks",
      "",
      "Generated by `make bench` (`python benchmarks/run_all.py`) from `benchmarks/results.json`; "
      "each anchor was measured in the same run on the same machine. Machines here are noisy: "
      "compare within one run, quote medians and ratios.",
      "",
      f"Machine: {machine.get('cpu')}, {machine.get('cpus')} CPUs, "
      f"{machine.get('memory_gib')} GiB; Python {machine.get('python')}, "
      f"TensorFlow {machine.get('tensorflow')}, TF-Agents {machine.get('tf-agents')}, "
      f"Reverb {machine.get('dm-reverb')}.",
      "",
      "| figure | anchor | trainer | ratio | target | status | command |",
      "|---|---|---|---|---|---|---|",
  ]
  rows = [(*row[:-1], _command(row[-1])) for row in rows]
  lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
  lines.append("")
  return "\n".join(lines)


def _strategy_rows(section: dict | None) -> list[tuple]:
  """`train.strategy`: MirroredStrategy over 2 logical CPUs on 2 cores (overhead, not speed-up)."""
  if not section:
    return []
  t, solve = section["throughput"], section["time_to_solve"]
  d, m = t["default"], t["mirrored_2_logical_cpus"]
  sd, sm = solve["default"], solve["mirrored_2_logical_cpus"]
  return [
      ("learner under `MirroredStrategy` over 2 logical CPU devices (2 cores shared; DQN "
       f"CartPole, batch {t['batch_size']} in all, {t['train_steps_per_call']} steps per call)",
       f"default strategy: {_fmt(d['train_steps_per_s'], digits=0)} train steps/s, "
       f"{_fmt(d['samples_per_s'], digits=0)} samples/s",
       f"{_fmt(m['train_steps_per_s'], digits=0)} train steps/s, "
       f"{_fmt(m['samples_per_s'], digits=0)} samples/s",
       f"{t['mirrored_over_default_steps']:.2f}×",
       "none: the overhead, reported", "—", section["command"]),
      ("wall time to first eval ≥ 195 on CartPole-v0, mirrored over 2 logical CPUs",
       f"default strategy: median {_fmt(sd['median_s'], ' s')} ({sd['solved']}/{sd['n']} "
       f"solved, steps {sd['train_steps']})",
       f"median {_fmt(sm['median_s'], ' s')} ({sm['solved']}/{sm['n']} solved, steps "
       f"{sm['train_steps']})",
       "—" if not (sd["median_s"] and sm["median_s"]) else
       f"{sm['median_s'] / sd['median_s']:.2f}× the time",
       "solves", "met" if sm["solved"] == sm["n"] else "missed", section["command"])]


def _persistence_rows(p: dict | None) -> list[tuple]:
  if not p:
    return []
  a, t, n = p["anchor"], p["trainer"], f"{p['transitions']:,}"
  stall_a, stall_t = a["stall"]["median_s"], t["stall"]["median_s"]
  restore_a, restore_t = a["restore"]["median_s"], t["restore"]["median_s"]
  return [
      (f"training-loop stall while checkpointing {n} transitions (in-graph replay)",
       f"TF-Agents `common.Checkpointer(replay_buffer=...)`: median {_fmt(stall_a, ' s', 2)}",
       f"`Job.checkpoint()` (agent, replay, state; checksummed bundle): median "
       f"{_fmt(stall_t, ' s', 2)} (range {_fmt(t['stall']['min_s'], ' s', 2)}–"
       f"{_fmt(t['stall']['max_s'], ' s', 2)})",
       f"{stall_t / stall_a:.1f}× the anchor", "≤ 0.5 s",
       "met" if stall_t <= 0.5 else "missed", p["command"]),
      (f"restore {n} transitions, verified",
       f"`Checkpointer` restore (no verification): {_fmt(restore_a, ' s', 2)}",
       f"checksums + replay restore + size check: {_fmt(restore_t, ' s', 2)}",
       f"{restore_t / restore_a:.1f}× the anchor", "≤ 2 s",
       "met" if restore_t <= 2 else "missed", p["command"]),
      (f"peak memory of a job holding {n} transitions",
       f"TF-Agents buffer + `Checkpointer`: {_fmt(a['peak_rss_mb'], ' MiB', 0)}",
       f"{_fmt(t['peak_rss_mb'], ' MiB', 0)} (whole job: agent, exporter, evaluator)",
       f"{t['peak_rss_mb'] / a['peak_rss_mb']:.2f}× the anchor", "≤ 1 GB",
       "met" if t["peak_rss_mb"] <= 1000 else "missed", p["command"]),
  ]


def _roles_rows(section: dict | None) -> list[tuple]:
  """Collection scaling of the roles (benchmarks/roles.py)."""
  if not section:
    return []
  runs = {r["collectors"]: r for r in section["runs"]}
  one, most = runs[min(runs)], runs[max(runs)]
  others = ", ".join(f"{n}: {r['env_steps_per_s']:,.0f} ({r['speedup']:.1f}×)"
                     for n, r in sorted(runs.items()) if n not in (min(runs), max(runs)))
  return [(
      f"env steps/s collected as roles on a slow environment ({section['step_seconds'] * 1000:.0f} "
      f"ms a step; `trainer.launch`, {max(runs)} collectors against {min(runs)})",
      f"{min(runs)} collector: {one['env_steps_per_s']:,.0f} env steps/s",
      f"{max(runs)} collectors: {most['env_steps_per_s']:,.0f} env steps/s ({others})",
      f"{most['speedup']:.1f}×", "≥ 6× at 8 collectors",
      "met" if max(runs) >= 8 and most["speedup"] >= 6 else "missed",
      section["command"])]


def _roles_solve_rows(section: dict | None) -> list[tuple]:
  """Time to solve as roles against the single process (benchmarks/roles.py)."""
  if not section:
    return []
  one, roles = section["single_process"], section["roles_2_collectors"]

  def runs(r):
    return (f"median {_fmt(r.get('median_s'), ' s')} ({r.get('solved')}/{r.get('n')} solved, "
            f"steps {r.get('train_steps')})")

  ratio = (roles["median_s"] / one["median_s"]
           if roles.get("median_s") and one.get("median_s") else None)
  return [(
      "wall time to first eval ≥ 195 on CartPole-v0 as roles (`trainer.launch --collectors=2`, "
      "processes started included)",
      f"single process (`trainer.train`): {runs(one)}", runs(roles),
      f"{_fmt(ratio, '×', 2)} the time", "solves", "met" if roles.get("median_s") else "missed",
      section["command"])]


def _feed_rows(section: dict | None) -> list[tuple]:
  """The learner fed over loopback (benchmarks/learner_feed.py)."""
  if not section:
    return []
  anchor, roles = section["anchor"], section["roles_learner"]
  plain, local = section["roles_learner_plain"], section["in_process"]
  one_table = section["roles_learner_one_table"]
  cpu = section["sampling_cpu_per_item"]

  def rate(r):
    return (f"{_fmt(r['steps_per_s'], '', 0)} (groups: {_fmt(r['min_group_steps_per_s'], '', 0)}"
            f"–{_fmt(r['max_group_steps_per_s'], '', 0)})")

  return [(
      "learner train steps/s fed from the replay server over loopback (`trainer.learn`'s feed: "
      "packed steps in sharded tables, a batch from whichever shard has one ready, 20 steps per "
      "Learner call)",
      f"TF-Agents `Learner` on `ReverbReplayBuffer.as_dataset`, 100 per call: {rate(anchor)}",
      f"{rate(roles)}; in one packed table: {rate(one_table)}; in-process feed (single process): "
      f"{rate(local)}; the same learner on TF-Agents' layout and dataset: {rate(plain)}. Learner "
      f"CPU per sampled item: {cpu['sharded']['client_cpu_us']:.0f} µs packed, "
      f"{cpu['plain']['client_cpu_us']:.0f} µs TF-Agents'",
      f"{roles['x_anchor']:.1f}× the anchor ({roles['steps_per_s'] / local['steps_per_s']:.0%} "
      "of in-process)", "≥ 3× the anchor", "met" if roles["x_anchor"] >= 3 else "missed",
      section["command"])]


def _replay_checkpoint_rows(section: dict | None, one_table: dict | None) -> list[tuple]:
  """The learner's stall at a replay server checkpoint (benchmarks/replay_checkpoint.py),
  against the same replay in one table."""
  if not section:
    return []

  def stall(sec: dict) -> str:
    checkpoints = sec["checkpoints"]
    commits = [c["commit_s"] for c in checkpoints if c["commit_s"] is not None]
    return (f"{_fmt(sec['longest_gap_after_checkpoint_s'], ' s', 2)} ({len(checkpoints)} "
            f"checkpoints; training paused {max(c['paused_s'] for c in checkpoints):.2f} s at "
            f"most; the commit took {min(commits):.1f}–{max(commits):.1f} s in the background); "
            f"server peak memory {sec['server_peak_rss_mb']:,} MB")

  longest = section["longest_gap_after_checkpoint_s"]
  return [(
      f"learner stall while the replay server checkpoints {section['replay_size']:,} items "
      "(longest time without a new train step after a checkpoint began, read from outside; "
      f"between Learner calls: median {section['typical_gap_s'] * 1000:.0f} ms)",
      f"the replay in one table: {stall(one_table)}" if one_table else "—",
      f"{section.get('shards', 1)} shards: {stall(section)}",
      (f"{one_table['longest_gap_after_checkpoint_s'] / longest:.0f}× shorter"
       if one_table and longest else "—"),
      "≤ 0.5 s", "met" if longest is not None and longest <= 0.5 else "missed",
      section["command"])]


def _frame_replay_rows(f: dict | None) -> list[tuple]:
  """The frame replay at Atari's scale (benchmarks/frame_replay.py)."""
  if not f:
    return []
  n, mem, ckpt, t = f"{f['steps']:,}", f["memory"], f["checkpoint"], f["trainer"]
  measured = " and ".join(f"{m['steps']:,}" for m in mem["anchor_measured"])
  rv, dp = f["reverb"], f["dopamine"]
  gib, mib = 2**30, 2**20
  after = t["checkpoints"][1:]
  cold, warm = f["restore"]["dropped"], f["restore"]["warm"]
  stall = ckpt["stall_s"]
  commit = ckpt["commit_s"]
  written = max(c["written_bytes"] for c in after)
  added = max(c["data_added_bytes"] for c in after)

  def scaled(sec: dict, key: str, what: str, measured_n: int) -> str:
    runs = sec[key]
    return (f"{what}: {sec['seconds_at_steps']:,.0f} s and {sec['bytes_at_steps'] / mib:,.0f} MiB "
            f"a checkpoint, a full copy each time (measured at {measured_n:,} steps: "
            f"{min(r['seconds'] for r in runs):.1f}–{max(r['seconds'] for r in runs):.1f} s, "
            f"scaled ×{sec['scale_to_steps']:.2f})")

  anchors = (scaled(rv, "checkpoints", "Reverb `client.checkpoint()` (one step a item)",
                    rv["items"]) + "; " +
             scaled(dp, "saves", "Dopamine `OutOfGraphReplayBuffer.save` (gzip)",
                    dp["steps_measured"]))
  interval = f"{f['interval']:,} added steps" + (" (Dopamine's iteration)"
                                                 if f["interval"] == 62_500 else "")
  return [
      (f"resident memory of a replay holding {n} Atari steps (84×84×4 uint8 observations, "
       "one env; real Pong frames)",
       f"TF-Agents `TFUniformReplayBuffer` of the stacked spec (mnih15 example's data spec): "
       f"{mem['anchor_buffer_rss_mb_extrapolated'] / 1024:,.1f} GiB, extrapolated linearly "
       f"from {measured} steps measured ({mem['anchor_mb_per_1k_steps']:.1f} MiB per 1k steps)",
       f"`FrameStore` (each frame once): {mem['trainer_store_rss_mb'] / 1024:,.2f} GiB "
       f"(whole process {mem['trainer_rss_mb'] / 1024:,.2f} GiB, no TensorFlow)",
       f"{mem['ratio']:.2f}× the anchor", "— (each frame once: ≈ ¼)", "—", f["command"]),
      (f"training-loop stall per checkpoint of a full {n}-step frame replay, every {interval}; "
       "the anchors' time is their save call's",
       anchors,
       f"`SegmentedRing.save`: median {stall['median_s']:.2f} s (range "
       f"{stall['min_s']:.2f}–{stall['max_s']:.2f} s, {stall['n']} checkpoints; "
       f"{ckpt['stall_after_fill_s']:.2f} s at the fill's end); bundle commit with it "
       f"{commit['min_s']:.2f}–{commit['max_s']:.2f} s",
       f"{rv['seconds_at_steps'] / stall['median_s']:,.0f}× shorter than Reverb's",
       "≤ 0.5 s", "met" if stall["max_s"] <= 0.5 else "missed", f["command"]),
      (f"bytes written per checkpoint of the full replay ({f['interval']:,} steps added since "
       "the previous)",
       f"Reverb: {rv['bytes_at_steps'] / mib:,.0f} MiB, Dopamine: "
       f"{dp['bytes_at_steps'] / mib:,.0f} MiB, the whole replay each time (scaled as above; "
       "both compress, and Pong's frames compress well)",
       _frame_bytes(f, written, added),
       f"{ckpt['max_written_over_added']:.2f}× the added data", "≤ 1.2× the added data",
       "met" if ckpt["max_written_over_added"] <= 1.2 else "missed", f["command"]),
      (f"restore of the {n}-step frame replay, verified (every file's SHA-256, segments "
       "included, then each segment checked again as it loads)",
       "—",
       f"{cold['restore_s']:.1f} s with the files dropped from the page cache (fadvise; "
       f"{cold['page_cached_before']:.0%} cached before), {warm['restore_s']:.1f} s cached "
       f"({warm['page_cached_before']:.0%}); {cold['bytes_verified'] / gib:.2f} GiB in "
       f"{cold['files']} files", "—", "≤ 60 s",
       "met" if max(cold["restore_s"], warm["restore_s"]) <= 60 else "missed", f["command"]),
  ]


def _roles_frames_rows(r: dict | None) -> list[tuple]:
  """The replay server holding Atari steps in the frame layout (benchmarks/roles_frames.py)."""
  if not r:
    return []
  gib = 2**30 / 2**20  # MiB a GiB
  f = r["frames"]
  measured = " and ".join(f"{m['steps']:,}" for m in r["stacked_measured"])
  return [(
      f"replay server's resident memory holding {r['steps']:,} Atari steps as the roles hold "
      f"them ({r['shards']} shards, Reverb's zstd chunks; real Pong frames)",
      f"whole 84×84×4 stacks a step (the roles' layout for other jobs; TF-Agents' Reverb "
      f"observer's): {r['stacked_replay_rss_mb_extrapolated'] / gib:,.2f} GiB, extrapolated "
      f"linearly from {measured} steps measured ({r['stacked_mb_per_1k_steps']:.2f} MiB per 1k)",
      f"frame layout (a frame a step, stacks rebuilt by the learner): "
      f"{f['replay_rss_mb'] / gib:,.2f} GiB (process {f['rss_full_mb'] / gib:,.2f} GiB); "
      f"filled at {f['steps_per_s']:,} steps/s by one writer; sampled "
      f"{f['sample_batches_per_s']:,.0f} batches of 32 a second, {f['stacks_checked']:,} stacks "
      "checked",
      f"{r['ratio']:.2f}× the anchor", "≤ 8 GB at 1M steps",
      "met" if f["rss_full_mb"] * 2**20 <= 8e9 else "missed", r["command"])]


def _atari_rows(a: dict | None) -> list[tuple]:
  """Pong DQN against TF-Agents' mnih15 example (benchmarks/atari_throughput.py)."""
  if not a:
    return []
  t, x = a["trainer"], a["anchor"]

  def runs(side: dict, key: str) -> str:
    return ", ".join(f"{r[key]:,.1f}" for r in side["runs"])

  return [
      (f"env frames/s of the Atari DQN job's random initial collect ({a['initial_steps']:,} agent "
       "steps of 4 frames, Pong, the same ALE build and preprocessing)",
       f"TF-Agents mnih15 `dqn_train_eval_atari` (its env loader switched to trainer's ALE): "
       f"{x['frames_per_s']:,.0f} (runs: {runs(x, 'frames_per_s')})",
       f"configs/dqn_atari.gin on the frame replay: {t['frames_per_s']:,.0f} (runs: "
       f"{runs(t, 'frames_per_s')})", f"{a['frames_ratio']:.2f}× the anchor", "—", "—",
       a["command"]),
      (f"learner steps/s of the Atari DQN job's loop (4 agent steps, then a train step of 32; "
       f"steps 200–{a['train_steps'] - 100:,} of {a['train_steps']:,}, CPU)",
       f"the same example: {x['train_steps_per_s']:.2f} (runs: {runs(x, 'train_steps_per_s')})",
       f"{t['train_steps_per_s']:.2f} (runs: {runs(t, 'train_steps_per_s')})",
       f"{a['train_ratio']:.2f}× the anchor", "—", "—", a["command"])]


def _sweep_rows(s: dict | None) -> list[tuple]:
  """A sweep of short DQN members at several --parallel (benchmarks/sweep.py)."""
  if not s:
    return []
  base = s["runs"][0]
  cells = "; ".join(
      f"--parallel={r['parallel']}: {r['wall_s']:,.0f} s ({r['speedup']:.2f}×), "
      f"members {r['member_steps_per_s']['median_steps_per_s']:,.0f} steps/s, "
      f"{r['member_wall_s']['median_s']:,.0f} s each"
      for r in s["runs"])
  overhead = ", ".join(f"{r['launcher_s_per_member']:.2f} s" for r in s["runs"])
  return [(
      f"a sweep of {s['members']} DQN CartPole members ({s['train_steps']:,} train steps each) "
      "by `trainer.sweep`, wall time against --parallel on this machine's "
      f"{s.get('machine', {}).get('cpus', '?')} cores",
      f"--parallel=1: {base['wall_s']:,.0f} s, members "
      f"{base['member_steps_per_s']['median_steps_per_s']:,.0f} steps/s",
      cells, f"launcher's own cost per member: {overhead}", "—", "—", s["command"])]


def _object_storage_rows(o: dict | None) -> list[tuple]:
  """Checkpoints on gs:// (a GCS emulator on loopback) against a local run directory
  (benchmarks/object_storage.py, docs/object_storage.md)."""
  if not o:
    return []
  names = {"default": "the default job (DQN CartPole, foreground commits)",
           "roles": "the roles (trainer.launch, learner's background commits)",
           "pixels": "a pixel job (DQN Pong, the frame replay)"}
  rows = []
  for name, label in names.items():
    job = o.get(name)
    if not job or "gs" not in job:
      continue
    local, gs = job["local"], job["gs"]
    mib = 2**20
    uploads = gs.get("uploads", [])
    per = "; ".join(f"{u['step']:,}: {u['bundle_bytes'] / mib:.2f} + {u['shared_bytes'] / mib:.2f}"
                    f" + {u['other_bytes'] / mib:.2f} MiB" for u in uploads)
    rows.append((
        f"checkpoint stall and commit time on gs:// (emulator, loopback): {label}, "
        f"{o['jobs'][name]['train_steps']:,} steps, a checkpoint every "
        f"{o['jobs'][name]['checkpoint_interval']:,}",
        f"local --root_dir: stall median {local['stall_s'].get('median_s', 0):.2f} s, "
        f"commit median {local['commit_s'].get('median_s', 0):.2f} s",
        f"gs://: stall median {gs['stall_s'].get('median_s', 0):.2f} s (max "
        f"{gs['stall_s'].get('max_s', 0):.2f}), until the marker is written median "
        f"{gs.get('until_sealed_s', {}).get('median_s', 0):.2f} s; uploaded per checkpoint "
        f"(bundle + new shared segments + other files): {per}",
        f"stall {gs['stall_s'].get('median_s', 0) - local['stall_s'].get('median_s', 0):+.2f} s",
        "—", "—", o["command"]))
  return rows


def _frame_bytes(f: dict, written: int, added: int) -> str:
  """The trainer's bytes per checkpoint: its segments' codec, and raw ones when measured."""
  mib = 2**20
  codec = f.get("codec", "none")
  text = (f"segments ({codec}) + tail (raw) + descriptions: up to {written / mib:,.0f} MiB for "
          f"{added / mib:,.0f} MiB added ({f['trainer']['stored_bytes_per_step']:,} B a step "
          "in memory)")
  raw = f.get("raw")
  if raw:
    text += (f"; uncompressed segments: up to {max(raw['written_bytes']) / mib:,.0f} MiB "
             f"({raw['max_written_over_added']:.2f}×), stall median "
             f"{raw['stall_s']['median_s']:.2f} s")
  if "shared_bytes_on_disk" in f:
    text += f"; the whole replay on disk: {f['shared_bytes_on_disk'] / mib:,.0f} MiB"
  return text


def _replay_auth_rows(section: dict | None) -> list[tuple]:
  """What signing every replay item would cost (benchmarks/replay_auth.py, docs/security.md)."""
  if not section or "verify_share_of_a_train_step" not in section:
    return []
  share = section["verify_share_of_a_train_step"]
  return [(
      "replay-item signatures: the learner's check of every sampled item (HMAC-SHA256 in a "
      f"`tf.py_function` per batch of {section['batch']} items of {section['item_bytes']} bytes), "
      "against the learner's train step fed over loopback",
      f"unsigned: a train step takes {_fmt(section['learner_step_us'], ' µs', 0)} "
      "(learner_feed.py, this run)",
      f"+{_fmt(section['verify_added_us_per_batch'], ' µs', 0)} per batch "
      f"({_fmt(section['pipeline_us_per_batch'], ' µs', 0)} → "
      f"{_fmt(section['verified_us_per_batch'], ' µs', 0)} per batch from memory); signing: "
      f"{_fmt(section['sign_us_per_item'], ' µs', 2)} per item",
      f"{share:.0%} of a train step", "≤ 10 % to sign every item",
      "met: items signed" if share <= 0.10 else "missed: items stay unsigned (docs/security.md)",
      section["command"])]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--render_only", action="store_true")
  args = parser.parse_args()
  # A quick run's figures go to a scratch file and the screen, never to the docs.
  output = common.RESULTS_QUICK if args.quick else common.RESULTS
  if not args.render_only:
    for script, script_args in BENCHMARKS:
      cmd = [sys.executable, str(REPO / "benchmarks" / script), *script_args, f"--output={output}"]
      cmd += ["--quick"] if args.quick else []
      print("$", " ".join(cmd[1:]), flush=True)
      subprocess.run(cmd, cwd=REPO, check=True)
    stall_output = output.with_name("export_stall-quick.json") if args.quick else EXPORT_STALL
    cmd = [sys.executable, str(REPO / "benchmarks" / "export_stall.py"), f"--output={stall_output}"]
    cmd += ["--exports=5"] if args.quick else []
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
  results = json.loads(output.read_text()) if output.exists() else {}
  text = render(results)
  if args.quick:
    print(text)
    return 0
  DOC.write_text(with_notes(text, DOC.read_text()))
  print(f"wrote {DOC}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
