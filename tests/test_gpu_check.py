"""benchmarks/gpu_check.py's own logic on the CPU: every section runs at 32 px and the table holds no failure.

On the CPU the script compares bf16 with fp32 (fp16 has no CPU kernels), reports CUDA graphs and the
memory hog as skipped, and still drives a real `draggan serve` process through drags before and after.
"""
from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402


def test_cpu_run_prints_one_table_without_failures(capsys):
    code = gpu_check.main(["--device", "cpu", "--sizes", "16", "--numerics-size", "32", "--steps", "3",
                           "--inversion-steps", "2", "1", "1", "--model-template", "random-{size}-c16"])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0] == "| section | check | value | verdict |"
    sections = {line.split(" | ")[0][2:] for line in table[2:]}
    assert sections == {"numerics", "speed", "inversion", "out of memory"}
    assert "FAIL" not in out and code == 0, out
    assert any("skipped: CUDA graphs need CUDA" in line for line in table)
    assert any(line.startswith("| out of memory | daemon drag after") and "done; True" in line for line in table)


def test_the_16_bit_type_follows_the_device():
    assert gpu_check.half_precision("cuda:0") == "fp16"
    assert gpu_check.half_precision("cpu") == "bf16"
