"""trainer: a preemption-safe, gin-configured training orchestrator around TF-Agents' Learner."""

__version__ = "0.1.0"
