"""benchmarks/gpu_7b.py runs its whole logic on the CPU with --tiny (small stand-ins of both 7B architectures) and
reports every mode the GPU run reports: prefill, eager and compiled decoding, FLOPs ratio and weight-read limit."""

import json
import os
import subprocess
import sys

import pytest
from conftest import BENCHMARKS, benchmark_module


def _positive(value) -> bool:
    return isinstance(value, float | int) and not isinstance(value, bool) and value > 0


def test_tiny_dry_run_reports_every_mode_with_positive_ratios(tmp_path):
    out = tmp_path / "gpu_7b.json"
    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent), "HIPP_THREADS": "1", "OMP_NUM_THREADS": "1"}
    child = subprocess.run(
        [sys.executable, "gpu_7b.py", "--tiny", "--sparsities", "0.5", "--out", str(out)],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(child.stdout) == report
    assert _positive(report["memory_bandwidth_gb_s"]) and "numbers mean nothing" in report["model"]
    assert set(report["archs"]) == {"llava-1.5-7b", "qwen2.5-vl-7b"}
    for arch in report["archs"].values():
        (plan,) = arch["plans"]
        assert abs(plan["sparsity_achieved"] - 0.5) <= 0.05 and plan["decoder_flops_ratio"] < 1
        for key in ("prefill_speedup", "flops_speedup", "weight_read_limit_speedup"):
            assert _positive(plan[key]), (key, plan[key])
        assert set(plan["decode_eager_speedup"]) == {"1", "4"}  # the GPU run: 1 and 64
        assert set(plan["decode_compiled_speedup"]) == {"1", "2"}  # the GPU run: 1 and 16
        speedups = [*plan["decode_eager_speedup"].values(), *plan["decode_compiled_speedup"].values()]
        assert all(_positive(x) for x in speedups), speedups
        assert set(arch["targets_at_0.5"]) == {
            "decode_compiled_speedup_batch1",
            "decode_eager_speedup_batch1",
            "prefill_speedup",
        }
    assert _positive(report["archs"]["llava-1.5-7b"]["masked_eval"]["seconds_per_plan"])


def test_tiny_numbers_are_never_saved_as_results():
    gpu_7b = benchmark_module("gpu_7b")
    with pytest.raises(SystemExit) as exit_info:
        gpu_7b.parse_args(["--tiny", "--save"])
    assert exit_info.value.code == 2
    assert gpu_7b.parse_args(["--tiny"]).compile_backend == "eager"
    assert gpu_7b.parse_args([]).eager_batches == [1, 64]
