"""The benchmark registry: stored metric names stay what they were, a third benchmark (MME) plugs in with its own
file layout, parser and metrics, and bad input is one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hipp_core.api import evaluate_model, load_benchmark
from hipp_core.errors import HippError
from hipp_core.evaluation import benchmarks
from hipp_core.evaluation.benchmarks.mme import mme_metrics, parse_mme_answer
from hipp_core.evaluation.engine import EvalResult
from plan_store import PlanStore
from tests.conftest import invoke


def test_registry_lists_the_benchmarks_and_refuses_unknown_ones():
    assert {"pope", "sqa", "mme"} <= set(benchmarks.names())
    assert benchmarks.embedded_names() == ["pope", "sqa"]  # what `all` means: ShapesWorld has no MME files
    with pytest.raises(HippError, match="unknown benchmark 'vqa'; available: .*mme.*pope.*sqa"):
        benchmarks.select("pope,vqa")


def test_stored_metric_names_are_unchanged(tiny_llava):
    """Results stored before the registry existed must keep being read: the flat names are a stored format."""
    result = evaluate_model(str(tiny_llava), "all", "dev", limit=2, store=PlanStore())
    fields = ("n", "accuracy", "precision", "recall", "f1", "yes_ratio", "balanced_accuracy")
    sqa_fields = ("n", "accuracy", "n_image", "accuracy_image", "n_text", "accuracy_text")
    expected = {"questions", "pope_balanced_accuracy"}
    expected |= {
        f"{part}.{cat}.{f}"
        for part in ("pope", "pope_free")
        for cat in ("random", "popular", "adversarial")
        for f in fields
    }
    expected |= {f"{part}.{f}" for part in ("sqa", "sqa_free") for f in sqa_fields}
    flat = result.to_metrics()
    assert set(flat) == expected
    assert flat["pope_balanced_accuracy"] == pytest.approx(sum(m.balanced_accuracy for m in result.pope.values()) / 3)
    assert EvalResult.from_metrics(result.model_id, "dev", "logits", flat, 0.0, False).results == result.results


@pytest.mark.parametrize(
    ("answer", "read"),
    [("Yes", "yes"), ("no", "no"), ("Yes, there is.", "yes"), ("No.", "no"), ("not really", "no"),
     ("There is a dog", "other"), (" yes", "yes"), ("Nope", "no"), ("I think yes", "other")],
)  # fmt: skip
def test_mme_reads_answers_as_its_eval_tool(answer, read):
    assert parse_mme_answer(answer) == read


def test_mme_score_counts_accuracy_plus_per_image():
    from hipp_core.data.mme import MMEItem

    a, b = Path("a.png"), Path("b.png")
    items = [MMEItem("existence", a, "q1", "yes"), MMEItem("existence", a, "q2", "no")]
    items += [MMEItem("existence", b, "q3", "yes"), MMEItem("existence", b, "q4", "no")]
    m = mme_metrics(items, ["yes", "no", "yes", "yes"])  # image a both right, image b one wrong
    assert (m.n, m.n_images, m.accuracy, m.accuracy_plus) == (4, 2, 0.75, 0.5) and m.score == pytest.approx(125.0)


def mme_folder(root: Path) -> Path:
    """An MME release-layout folder built from ShapesWorld dev images: `existence` with images and question files
    side by side, `color` in the images/ + questions_answers_YN/ layout; two questions per image."""
    pope = load_benchmark("pope", "dev", limit=60)["pope"]["random"]
    by_image: dict[Path, list] = {}
    for item in pope:
        by_image.setdefault(item.image, []).append(item)
    pairs = [items[:2] for items in by_image.values() if len(items) >= 2][:3]
    assert len(pairs) == 3, "ShapesWorld dev should ask several questions about an image"
    for subtask, nested in (("existence", False), ("color", True)):
        images = root / subtask / ("images" if nested else "")
        texts = root / subtask / ("questions_answers_YN" if nested else "")
        images.mkdir(parents=True, exist_ok=True)
        texts.mkdir(parents=True, exist_ok=True)
        for i, pair in enumerate(pairs):
            (images / f"img{i}.png").write_bytes(pair[0].image.read_bytes())
            lines = [f"{it.text} Please answer yes or no.\t{it.label.capitalize()}" for it in pair]
            (texts / f"img{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_mme_evaluates_through_the_one_path_and_is_stored(tiny_llava, tmp_path):
    folder = mme_folder(tmp_path / "MME")
    store = PlanStore()
    result = evaluate_model(str(tiny_llava), "mme", "test", store=store, folders={"mme": folder}, image_free=False)
    groups = result.results["mme"]
    assert list(groups) == ["color", "existence"] and all(m.n == 6 and m.n_images == 3 for m in groups.values())
    flat = result.to_metrics()
    assert flat["mme_perception"] == pytest.approx(sum(m.score for m in groups.values()))
    again = evaluate_model(str(tiny_llava), "mme", "test", store=store, folders={"mme": folder}, image_free=False)
    assert again.cached and again.results == result.results


def test_cli_takes_a_benchmark_folder_by_name(tiny_llava, tmp_path):
    folder = mme_folder(tmp_path / "MME")
    ok = invoke("eval", str(tiny_llava), "--bench", "mme", "--data", f"mme={folder}", "--json")
    assert ok.returncode == 0, ok.output
    missing = invoke("eval", str(tiny_llava), "--bench", "mme")
    assert missing.returncode == 2 and "--data mme=DIR" in missing.output
    malformed = invoke("eval", str(tiny_llava), "--bench", "mme", "--data", str(folder))
    assert malformed.returncode == 2 and "NAME=DIR" in malformed.output
    (folder / "existence" / "img0.txt").write_text("Is there a cat?\tMaybe\n")
    bad = invoke("eval", str(tiny_llava), "--bench", "mme", "--data", f"mme={folder}")
    assert bad.returncode == 2 and "img0.txt line 1" in bad.output
