"""benchmarks/sqa_kinds.py: per-kind ShapesSQA accuracy, open fact recall and the letter drill, on a tiny model."""

import json

import pytest
from conftest import benchmark_module

from hipp_core.data.prompts import LETTERS, sqa_prompt
from hipp_core.data.questions import FACT_KINDS, IMAGE_KINDS, TEXT_KINDS
from hipp_core.models.loading import load_model


@pytest.fixture(scope="module")
def sqa_kinds():
    return benchmark_module("sqa_kinds")


def test_picks_choose_only_among_each_questions_own_options(sqa_kinds, tiny_qwen):
    adapter = load_model(str(tiny_qwen)).adapter
    texts = [sqa_prompt("Which option is the red circle?", ("red circle", "blue ring", "red ring"), "")] * 3
    assert sqa_kinds.picks(adapter, texts, LETTERS[:3], [1, 1, 1]) == [0, 0, 0]
    assert all(p in (0, 1) for p in sqa_kinds.picks(adapter, texts, LETTERS[:3], [2, 2, 2]))


def test_report_has_every_kind_with_its_chance_level_and_the_fact_and_letter_checks(sqa_kinds, tiny_llava, capsys):
    sqa_kinds.main(["--models", str(tiny_llava), "--split", "calib", "--pointer", "12"])
    (model,) = json.loads(capsys.readouterr().out)["models"]
    assert model["split"] == "calib" and set(model["kinds"]) == set(IMAGE_KINDS) | set(TEXT_KINDS)
    for row in model["kinds"].values():
        assert 0 <= row["accuracy"] <= 1 and 0.2 <= row["chance"] <= 0.5 and row["n"] > 0  # 2 to 5 options
    assert set(model["fact_recall_open"]) == set(FACT_KINDS) == set(model["fact_multiple_choice"])
    assert all(0 <= v <= 1 for v in model["fact_recall_open"].values())
    assert 0 <= model["letter_drill"] <= 1 and model["letter_drill_questions"] == 12
