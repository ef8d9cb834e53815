r"""`python -m trainer.sweep` (the command itself: trainer/cli/sweep.py)."""

if __name__ == "__main__":
  from trainer.cli import sweep

  sweep.entry()
