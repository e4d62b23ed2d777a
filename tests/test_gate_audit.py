"""benchmarks/gate_audit.py: the false-gate table per threshold, and the script end to end on tiny settings."""

import json

import numpy as np
import pytest
from conftest import benchmark_module


@pytest.fixture(scope="module")
def gate_audit():
    return benchmark_module("gate_audit")


def test_false_gate_rate_counts_fine_plans_below_each_threshold(gate_audit):
    stab = np.array([0.05, 0.12, 0.12, 0.18, 0.22, 0.22, 0.3, 0.6])
    fine = np.array([False, False, False, False, True, True, True, False])
    table = {t["tau"]: t for t in gate_audit.thresholds(stab, fine)}
    assert table[0.1] == {"tau": 0.1, "gated": 1, "false_gate_rate": 0.0}
    assert table[0.2] == {"tau": 0.2, "gated": 4, "false_gate_rate": 0.0}
    assert table[0.25] == {"tau": 0.25, "gated": 6, "false_gate_rate": round(2 / 6, 3)}
    assert table[0.5] == {"tau": 0.5, "gated": 7, "false_gate_rate": round(3 / 7, 3)}
    # 0.2 gates only 4 (fewer than MIN_GATED); from 0.25 on the rate is above the target: nothing qualifies
    assert gate_audit.largest_tau_meeting_target(list(table.values())) is None
    fine[4:6] = False  # now 0.25 .. 0.3 gate 6 plans of which none was fine, and 0.35 on gate 7 with 1 fine
    assert gate_audit.largest_tau_meeting_target(gate_audit.thresholds(stab, fine)) == 0.5


def test_audit_runs_on_calib_and_reports_every_threshold(gate_audit, shapes_world, capsys):
    gate_audit.main(["--models", "embedded", "--plans", "4", "--limit", "4"])
    report = json.loads(capsys.readouterr().out)
    (model,) = report["models"]
    assert model["split"] == "calib" and model["plans"] == 4 and report["target_false_gate_rate"] == 0.25
    assert [t["tau"] for t in model["thresholds"]] == list(gate_audit.TAUS)
    assert all(0 <= t["gated"] <= 4 for t in model["thresholds"])
    assert 0 <= model["stability_range"][0] <= model["stability_range"][1] <= 1
