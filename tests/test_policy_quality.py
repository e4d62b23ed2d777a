"""benchmarks/policy_quality.py: saved results of other models merge into a new report only in the current format."""

import json

from conftest import BENCHMARKS, benchmark_module


def test_saved_models_merge_only_when_in_the_current_format(capsys):
    policy_quality = benchmark_module("policy_quality")
    shipped = json.loads((BENCHMARKS / "results" / "policy_quality.json").read_text())["models"]
    llava, qwen = shipped["embedded"], shipped["embedded:qwen2_5_vl"]
    report = {"threads": 1, "models": {"embedded": llava}}
    both = policy_quality.merged(report, {"models": {"embedded:qwen2_5_vl": qwen, "embedded": {"stale": True}}})
    assert list(both["models"]) == ["embedded:qwen2_5_vl", "embedded"] and both["models"]["embedded"] is llava
    assert "#### embedded:qwen2_5_vl" in policy_quality.markdown(both)

    older = {k: v for k, v in qwen.items() if k != "controllability"} | {"controllability": {"spearman": None}}
    alone = policy_quality.merged(report, {"models": {"embedded:qwen2_5_vl": older}})
    assert list(alone["models"]) == ["embedded"], "an entry without the current sections is left out"
    assert "older format for embedded:qwen2_5_vl" in capsys.readouterr().err
    assert policy_quality.merged(report, None) == report

    unrecorded = {k: v for k, v in qwen.items() if k != "policy_id"}
    kept = policy_quality.merged(report, {"models": {"embedded:qwen2_5_vl": unrecorded}})
    assert kept["models"]["embedded:qwen2_5_vl"] is unrecorded, "a field that only records must not drop a model"
