r"""`python -m trainer.report` (the command itself: trainer/cli/report.py)."""

if __name__ == "__main__":
  from trainer.cli import report

  report.entry()
