"""`python -m trainer.plot` (the command itself: trainer/cli/plot.py)."""

if __name__ == "__main__":
  from trainer.cli import plot

  plot.entry()
