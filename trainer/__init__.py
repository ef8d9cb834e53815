"""trainer: a preemption-safe, gin-configured training orchestrator around TF-Agents' Learner.

`trainer.run(root_dir, gin_files=..., bindings=...)` runs a job from Python
(`trainer.api`); it is imported on first use, so `import trainer` stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["RunResult", "run"]


def __getattr__(name: str):
  if name in __all__:
    import importlib

    return getattr(importlib.import_module("trainer.api"), name)
  raise AttributeError(f"module 'trainer' has no attribute {name!r}")
