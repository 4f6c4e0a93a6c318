"""benchmarks/bench_demo_drags.py end to end on a few short drags: every row it writes makes its table.

The issue-17 numbers come from this script; a row that lost a column (it once lost the paired MSE to a
comment) fails only after a run of half an hour, so a three-step run checks the columns here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_demo_drags  # noqa: E402
from draggan_core import registry  # noqa: E402


def test_a_short_run_with_the_fit_writes_rows_that_make_the_table(tmp_path):
    out = tmp_path / "rows.json"
    rows = bench_demo_drags.run(registry.DEMO_MODEL, ["paper", "paper+lr_reach=0.015"], 2e-3, ["right_ear_up"],
                                range(0, 1), steps=3, fit=True, out=str(out))
    assert [json.loads(line)["preset"] for line in out.read_text().splitlines()] == ["paper", "paper+lr_reach=0.015"]
    table = bench_demo_drags.table(bench_demo_drags.read_rows(str(out)))
    lines = table.splitlines()
    assert len(lines) == 2 + 2 * 2  # header, rule, then per preset the scenario and 'all'
    assert lines[2].startswith("| paper | right_ear_up | 1 | 0% | 0% | 0% | 3 |")  # three steps land nothing
    assert all(r["mse_none"] > 0 and r["mse_edit"] > 0 and "content_error_after" in r for r in rows)
