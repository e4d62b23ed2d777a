"""POPE / ScienceQA metrics, answer parsing, and the batched scoring path on tiny checkpoints."""

from pathlib import Path

import pytest

from hipp_core.api import load_benchmark
from hipp_core.data.records import SQAItem
from hipp_core.evaluation.engine import (
    EvalResult,
    evaluate,
    parse_choice,
    parse_pope_answer,
    pope_metrics,
    score_pope,
    sqa_metrics,
)
from hipp_core.models.loading import load_model


def test_pope_metrics_match_hand_computation():
    labels = ["yes", "yes", "yes", "no", "no", "no", "no", "no"]
    preds = ["yes", "yes", "no", "yes", "no", "no", "no", "no"]
    m = pope_metrics(preds, labels)
    assert m.n == 8 and m.accuracy == pytest.approx(6 / 8)
    assert m.precision == pytest.approx(2 / 3) and m.recall == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3) and m.yes_ratio == pytest.approx(3 / 8)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 4 / 5) / 2)
    always_yes = pope_metrics(["yes"] * 8, labels)
    assert always_yes.balanced_accuracy == 0.5 and always_yes.yes_ratio == 1.0


def test_sqa_metrics_split_by_image():
    items = [
        SQAItem("1", "q", ("a", "b"), 0, "", Path("x.png"), "test"),
        SQAItem("2", "q", ("a", "b"), 1, "", None, "test"),
        SQAItem("3", "q", ("a", "b", "c"), 2, "", None, "test"),
    ]
    m = sqa_metrics([0, 0, 2], items)
    assert (m.n, m.n_image, m.n_text) == (3, 1, 2)
    assert m.accuracy == pytest.approx(2 / 3) and m.accuracy_image == 1.0 and m.accuracy_text == 0.5


@pytest.mark.parametrize(
    "text,expected",
    [("Yes, there is a cat.", "yes"), ("No.", "no"), ("There is not a dog", "no"), ("yes", "yes"), ("no", "no")],
)
def test_pope_answers_parse_like_the_pope_script(text, expected):
    assert parse_pope_answer(text) == expected


def test_choice_parsing_reads_letters_then_option_text():
    choices = ("red", "blue", "green")
    assert parse_choice("B", choices) == 1
    assert parse_choice("C. green", choices) == 2
    assert parse_choice("The answer is A.", choices) == 0
    assert parse_choice("it is blue", choices) == 1
    assert parse_choice("E", choices) == -1 and parse_choice("no idea", choices) == -1


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_qwen"])
def test_logit_and_generate_scoring_run_on_real_layouts(fixture, request):
    loaded = load_model(str(request.getfixturevalue(fixture)))
    pope, sqa = load_benchmark("all", "dev", limit=6)
    result = evaluate(loaded.adapter, loaded.model_id, pope, sqa, "dev", batch_size=4)
    assert set(result.pope) == {"random", "popular", "adversarial"}
    assert result.questions == 3 * 6 + 6 and result.sqa.n == 6
    for category, items in pope.items():  # each category's metrics are its own questions', asked one at a time
        labels = [it.label for it in items]
        assert result.pope[category] == pope_metrics(score_pope(loaded.adapter, items, batch_size=1), labels)
        blank = score_pope(loaded.adapter, items, blank=True, batch_size=1)
        assert result.pope_image_free[category] == pope_metrics(blank, labels)
    assert EvalResult.from_json(result.to_json()) == result
    generated = score_pope(loaded.adapter, pope["random"][:4], scoring="generate", batch_size=2)
    assert len(generated) == 4 and set(generated) <= {"yes", "no"}


def test_batching_does_not_change_predictions(tiny_llava):
    loaded = load_model(str(tiny_llava))
    pope, _ = load_benchmark("pope", "dev", limit=10)
    items = pope["adversarial"]
    assert score_pope(loaded.adapter, items, batch_size=1) == score_pope(loaded.adapter, items, batch_size=7)


def test_eval_result_survives_the_store_round_trip(tiny_llava):
    from hipp_core.api import evaluate_model
    from plan_store import PlanStore

    store = PlanStore()
    first = evaluate_model(str(tiny_llava), "all", "dev", limit=4, store=store)
    second = evaluate_model(str(tiny_llava), "all", "dev", limit=4, store=store)
    assert not first.cached and second.cached
    assert second.pope == first.pope and second.sqa == first.sqa and second.pope_image_free == first.pope_image_free
    assert list(second.pope) == ["random", "popular", "adversarial"]
    other = evaluate_model(str(tiny_llava), "pope", "dev", limit=4, image_free=False, store=store)
    assert not other.cached and other.sqa is None and not other.pope_image_free
