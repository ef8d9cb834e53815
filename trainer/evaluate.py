"""`python -m trainer.evaluate` (the command itself: trainer/cli/evaluate.py)."""

if __name__ == "__main__":
  from trainer.cli import evaluate

  evaluate.entry()
