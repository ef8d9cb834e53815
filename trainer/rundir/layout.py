"""Names of everything in a run directory.

The run directory layout is public API (documented in docs/run_directory.md): tools, tests
and users find files through these names, so they live in one place.

    DIR/
      config.gin                     the run's gin config; resume parses this
      last_commit.json               the newest bundle step ever committed
      run.lock                       held by the live job (host, pid, since, its live train step)
      launch.lock                    held by a live trainer.launch (host, pid, since)
      train/                         Learner and collect summaries
        checkpoints/                 agent + train_step (TF-Agents layout)
          ckpt-<N>.index, ckpt-<N>.data-*, checkpoint
        bundles/<N>/                 everything else of checkpoint N
          replay/  state.json  operative_config.gin  COMMITTED
        bundles/<N>.damaged-<time>/  a damaged bundle set aside, every file kept
        shared/                      immutable files that bundles share (the frame replay's
                                     segments), deleted when no bundle refers to them
        reverb/                      Reverb server's scratch checkpoint root
        reverb_server/               the same, of the replay server role
        learner/                     TF-Agents' Learner's root; its checkpoints/ stays empty
      eval/                          eval summaries; returns.csv
      policies/                      exports (see trainer/policies/exporter.py)
      roles/                         a job run as roles (trainer.launch): where they meet
        replay_address.json          the replay server's address (host:port, pid, host)
        replay_server.lock           held by the live replay server (host, pid, since)
        <role>.json                  each role's heartbeat (pid, time, counters)
        logs/<role>.log              each role's output, when trainer.launch runs it
"""

import os

CONFIG_FILE = "config.gin"
LAST_COMMIT_FILE = "last_commit.json"  # the newest step ever committed: never a new run again
LOCK_FILE = "run.lock"
LAUNCH_LOCK_FILE = "launch.lock"  # trainer.launch's, for the whole job
TRAIN_DIR = "train"
EVAL_DIR = "eval"
CHECKPOINT_DIR = os.path.join(TRAIN_DIR, "checkpoints")
BUNDLE_DIR = os.path.join(TRAIN_DIR, "bundles")
REVERB_SCRATCH_DIR = os.path.join(TRAIN_DIR, "reverb")
# Immutable files that several bundles refer to (trainer.checkpoint.bundle_store).
SHARED_DIR = os.path.join(TRAIN_DIR, "shared")
# The replay server role's checkpoints, moved into bundles by the learner (shared filesystem).
REVERB_SERVER_DIR = os.path.join(TRAIN_DIR, "reverb_server")
ROLES_DIR = "roles"
ROLE_LOGS_DIR = os.path.join(ROLES_DIR, "logs")
SERVER_ADDRESS_FILE = os.path.join(ROLES_DIR, "replay_address.json")
# The job's secret (mode 0600): what the roles exchange through the server is signed with it.
JOB_KEY_FILE = os.path.join(ROLES_DIR, "job.key")
SERVER_LOCK_FILE = os.path.join(ROLES_DIR, "replay_server.lock")  # one live server a run
# Root of TF-Agents' Learner, whose own checkpoint directory (under it) stays
# empty, so the Learner restores nothing: the bundle restores the agent, once.
LEARNER_DIR = os.path.join(TRAIN_DIR, "learner")
POLICY_DIR = "policies"
EVAL_RETURNS_FILE = os.path.join(EVAL_DIR, "returns.csv")

# Inside a bundle.
COMMIT_MARKER = "COMMITTED"
STATE_JSON = "state.json"
REPLAY_SUBDIR = "replay"
OPERATIVE_CONFIG = "operative_config.gin"
# A part's references to files under SHARED_DIR ({path from DIR: {size, sha256}}),
# anywhere in the bundle: the commit lists them in the manifest, with the bundle's own files.
SHARED_REFS = "shared.json"

# Inside the policy directory.
EXPORT_INDEX = "index.json"
LATEST_POINTER = "LATEST"
BEST_POINTER = "BEST"
# TF-Agents' own layout beside ours (names from tf_agents.train.learner).
TFA_RAW_POLICY = "policy"
TFA_GREEDY_POLICY = "greedy_policy"
TFA_COLLECT_POLICY = "collect_policy"
TFA_CHECKPOINTS = "checkpoints"

# Inside an export.
GREEDY_POLICY = "greedy"
COLLECT_POLICY = "collect"
SERVING_POLICY = "serving"
ONNX_POLICY = "greedy.onnx"  # Added by `trainer.export --format=onnx`.
EXPORT_METADATA = "metadata.json"

STEP_DIGITS = 10


def step_name(step: int) -> str:
  """Directory name of a bundle or export: the zero-padded train step."""
  return f"{step:0{STEP_DIGITS}d}"


TFA_POLICY_CHECKPOINT_PREFIX = "policy_checkpoint_"


def tfa_policy_checkpoint(step: int) -> str:
  """TF-Agents' name of the policy checkpoint of `step` (under checkpoints/)."""
  return f"{TFA_POLICY_CHECKPOINT_PREFIX}{step:010d}"


def agent_checkpoint_prefix(root_dir: str, step: int) -> str:
  """Prefix of the agent checkpoint of bundle `step` (`ckpt-<step>`)."""
  return os.path.join(root_dir, CHECKPOINT_DIR, f"ckpt-{step}")
