"""benchmarks/results_io.py: models measured in separate runs land in one results file, whichever shape it has."""

import json

import pytest
from conftest import benchmark_module


@pytest.fixture
def results_io(tmp_path, monkeypatch):
    module = benchmark_module("results_io")
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    return module


def test_a_model_run_again_replaces_only_its_own_entry_in_a_list(results_io):
    saved = {"seed": 0, "models": [{"model": "embedded", "n": 1}, {"model": "embedded:qwen2_5_vl", "n": 1}]}
    new = {"seed": 1, "models": [{"model": "embedded", "n": 2}]}
    assert results_io.merged(saved, new) == {
        "seed": 1,
        "models": [{"model": "embedded:qwen2_5_vl", "n": 1}, {"model": "embedded", "n": 2}],
    }
    assert results_io.merged(None, new) == new


def test_a_model_run_again_replaces_only_its_own_entry_in_a_dict(results_io, capsys):
    results_io.emit("bench", {"split": "dev", "models": {"a": 1, "b": 1}}, save=True)
    capsys.readouterr()
    results_io.emit("bench", {"split": "test", "models": {"b": 2}}, save=True)
    assert json.loads(capsys.readouterr().out) == {"split": "test", "models": {"b": 2}}, "prints what it measured"
    assert results_io.load("bench") == {"split": "test", "models": {"a": 1, "b": 2}}
    results_io.emit("bench", {"models": {"b": 3}}, save=True, merge=False)
    assert results_io.load("bench") == {"models": {"b": 3}}


def test_a_report_without_models_replaces_the_file(results_io):
    results_io.emit("bench", {"model": "embedded", "rows": [1]}, save=True)
    results_io.emit("bench", {"model": "embedded", "rows": [2]}, save=True)
    assert results_io.load("bench") == {"model": "embedded", "rows": [2]}
    assert [p.name for p in results_io.RESULTS.iterdir()] == ["bench.json"], "no temporary file left behind"
