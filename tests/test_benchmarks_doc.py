"""docs/benchmarks.md is the one place for the benchmark figures: its table is what
`make bench` renders from benchmarks/results.json, and a render keeps the notes below it."""

import json

import pytest

from benchmarks import common, run_all

pytestmark = pytest.mark.fast


def test_the_table_is_rendered_from_the_results_file():
  doc = run_all.DOC.read_text()
  table = run_all.render(json.loads(common.RESULTS.read_text()))
  assert run_all.with_notes(table, doc) == doc, (
      "docs/benchmarks.md's table is not benchmarks/results.json's: run "
      "`python benchmarks/run_all.py --render_only`")


def test_a_render_keeps_the_notes_and_refuses_a_doc_that_lost_its_marker():
  notes = run_all.NOTES_MARKER + "\n\n## Notes\nkept\n"
  assert run_all.with_notes("# new table\n", "# old table\n\n" + notes) == "# new table\n\n" + notes
  with pytest.raises(SystemExit, match="lost the line"):
    run_all.with_notes("# new table\n", "# a table without notes\n")
