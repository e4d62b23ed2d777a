"""POPE / ScienceQA metrics, answer parsing, and the batched scoring path on tiny checkpoints."""

from pathlib import Path

import pytest
import torch

from hipp_core.api import load_benchmark
from hipp_core.data.prompts import sqa_prompt
from hipp_core.data.records import SQAItem
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.benchmarks.pope import pope_metrics
from hipp_core.evaluation.benchmarks.sqa import sqa_metrics
from hipp_core.evaluation.engine import EvalResult, evaluate, open_image, score
from hipp_core.models.loading import load_model
from tests.conftest import tiny_adapter


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


@pytest.mark.parametrize("fixture", ["tiny_llava", "tiny_qwen"])
def test_logit_and_generate_scoring_run_on_real_layouts(fixture, request):
    loaded = load_model(str(request.getfixturevalue(fixture)))
    tasks = load_benchmark("all", "dev", limit=6)
    result = evaluate(loaded.adapter, loaded.model_id, tasks, "dev", batch_size=4)
    assert set(result.pope) == {"random", "popular", "adversarial"}
    assert result.questions == 3 * 6 + 6 and result.sqa.n == 6
    pope = benchmarks.get("pope")
    for category, items in tasks["pope"].items():  # each category's metrics are those of its own answers
        assert result.pope[category] == pope.metrics(items, score(loaded.adapter, pope, items, batch_size=6))
        blank = benchmarks.ImageFree(pope)
        assert result.pope_image_free[category] == blank.metrics(items, score(loaded.adapter, blank, items))
    assert EvalResult.from_json(result.to_json()) == result
    generated = score(loaded.adapter, pope, tasks["pope"]["random"][:4], scoring="generate", batch_size=2)
    assert len(generated) == 4 and set(generated) <= {0, 1}  # a POPE answer always reads as yes or no


@pytest.mark.parametrize("arch", ["llava", "qwen2_5_vl"])
def test_left_padded_last_position_logits_equal_right_padded_answer_logits(arch):
    """Scoring pads on the left and keeps one position's logits; a batch mixing image and text-only questions of
    different lengths (Qwen then derives its multimodal positions from the mask) must give each row the logits the
    full right-padded forward has at that row's last real token."""
    adapter = tiny_adapter(arch)
    sqa = [item for group in load_benchmark("sqa", "dev", limit=8)["sqa"].values() for item in group]
    texts = [sqa_prompt(it.question, it.choices, it.hint) for it in sqa]
    images = [open_image(it.image, False) if it.image is not None else None for it in sqa]
    assert 0 < sum(im is not None for im in images) < len(images)
    with torch.no_grad():
        right = adapter.encode(texts, images)
        lengths = right.inputs["attention_mask"].sum(1)
        assert len(set(lengths.tolist())) > 1  # the batch really is padded
        full = adapter.model(**right.inputs).logits[torch.arange(len(texts)), lengths - 1]
        left = adapter.encode(texts, images, padding_side="left")
        kept = adapter.model(**left.inputs, **adapter.padded_positions(left.inputs), use_cache=False, logits_to_keep=1)
        text_only = [i for i, im in enumerate(images) if im is None]
        alone = adapter.encode([texts[i] for i in text_only], [None] * len(text_only), padding_side="left")
        kept_alone = adapter.model(**alone.inputs, **adapter.padded_positions(alone.inputs), logits_to_keep=1)
    assert kept.logits.shape == (len(texts), 1, full.shape[-1])
    assert torch.allclose(kept.logits[:, -1], full, atol=1e-5, rtol=0)
    # Without images Qwen numbers positions itself; the explicit text positions must make that batch right too.
    assert torch.allclose(kept_alone.logits[:, -1], full[text_only], atol=1e-5, rtol=0)


def test_batching_does_not_change_predictions(tiny_llava):
    loaded = load_model(str(tiny_llava))
    items = load_benchmark("pope", "dev", limit=10)["pope"]["adversarial"]
    pope = benchmarks.get("pope")
    assert score(loaded.adapter, pope, items, batch_size=1) == score(loaded.adapter, pope, items, batch_size=7)


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


def test_generated_answers_are_stored_apart_per_parser(tiny_llava):
    from hipp_core.api import evaluate_model
    from plan_store import DENSE_PLAN_ID, PlanStore

    store = PlanStore()
    args = {"bench": "pope", "split": "dev", "limit": 2, "image_free": False, "store": store}
    official = evaluate_model(str(tiny_llava), scoring="generate", **args)
    lenient = evaluate_model(str(tiny_llava), scoring="generate", parser="lenient", **args)
    logits = evaluate_model(str(tiny_llava), **args)
    assert (official.parser, lenient.parser, logits.parser) == ("official", "lenient", None)
    assert not official.cached and not lenient.cached
    assert evaluate_model(str(tiny_llava), scoring="generate", **args).cached
    benches = {e.key.bench for e in store.plan_evaluations(DENSE_PLAN_ID) if e.key.model_id == official.model_id}
    assert any(b.endswith(":parser-official") for b in benches) and any(b.endswith(":parser-lenient") for b in benches)
