"""Scoring answer files made elsewhere: POPE's and LLaVA's layouts are matched as the official scripts match them,
scored with the metrics of `hipp eval`, stored as an evaluation of the named model; bad input is one line, exit 2,
and leaves the store untouched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from hipp_core.api import score_answers
from hipp_core.data.answers import read_answers
from hipp_core.errors import HippError, collecting_notices
from plan_store import DENSE_PLAN_ID, PlanStore
from tests.conftest import invoke

SUFFIX = "\nAnswer the question using a single word or phrase."
OBJECTS = ["dog", "cat", "car", "tree", "boat", "cup"]
LABELS = ["yes", "no", "yes", "no", "yes", "no"]
# tricky phrasings with the official reading in the comment: yes, yes, no, yes, no, no
ANSWERS = ["Yes", "NO", "No, there is none.", "Not sure", "There is not a boat.", "no"]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def _jsonl(path: Path, rows: list[dict], newline: str = "\n") -> Path:
    return _write(path, "".join(json.dumps(r) + newline for r in rows))


def _pope_rows(start: int = 1) -> list[dict]:
    return [
        {"question_id": start + i, "image": f"img{i // 2}.jpg", "text": f"Is there a {o} in the image?", "label": y}
        for i, (o, y) in enumerate(zip(OBJECTS, LABELS))
    ]


def _seem(path: Path) -> Path:
    """A GQA / A-OKVQA POPE file: one pretty-printed JSON array."""
    return _write(path, json.dumps(_pope_rows(), indent=4))


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """The official COCO label folder, CRLF line ends as released, and LLaVA's question file over two categories."""
    folder = tmp_path / "coco"
    _jsonl(folder / "coco_pope_random.json", _pope_rows(), newline="\r\n")
    _jsonl(folder / "coco_pope_adversarial.json", _pope_rows()[::-1], newline="\r\n")
    questions = [
        {"question_id": 100 + i, "image": r["image"], "text": r["text"] + SUFFIX, "category": "adversarial"}
        for i, r in enumerate(_pope_rows()[::-1])
    ] + [
        {"question_id": 1 + i, "image": r["image"], "text": r["text"] + SUFFIX, "category": "random"}
        for i, r in enumerate(_pope_rows())
    ]
    _jsonl(tmp_path / "llava_pope_test.jsonl", questions)
    return folder


def _llava_answers(path: Path, pairs: list[tuple[int | str, str]], prompts: list[str] | None = None) -> Path:
    prompts = prompts or ["q"] * len(pairs)
    rows = [
        {"question_id": q, "prompt": p, "text": t, "answer_id": f"a{i}", "model_id": "llava-v1.5-13b", "metadata": {}}
        for i, ((q, t), p) in enumerate(zip(pairs, prompts))
    ]
    return _jsonl(path, rows)


# --- POPE's answer format -------------------------------------------------------------------------------------------


def test_pope_format_pairs_answers_by_position_with_a_seem_label_file(tmp_path: Path) -> None:
    labels = _seem(tmp_path / "gqa_pope_seem_popular.json")
    rows = [{"question": f"is there a {o} in the image?", "answer": a} for o, a in zip(OBJECTS, ANSWERS)]
    answers = _jsonl(tmp_path / "answers.json", rows)

    matched = read_answers(answers, pope_labels=labels)

    assert list(matched.pope) == ["popular"]
    assert matched.pope["popular"].texts == ANSWERS and matched.pope["popular"].labels == LABELS


def test_pope_format_answer_to_another_question_is_refused(tmp_path: Path) -> None:
    labels = _jsonl(tmp_path / "coco_pope_random.json", _pope_rows())
    rows = [{"question": f"Is there a {o} in the image?", "answer": "yes"} for o in OBJECTS[::-1]]
    answers = _jsonl(tmp_path / "answers.json", rows)

    with pytest.raises(HippError, match=r"answers.json line 1: field 'question' .* not in the same order"):
        read_answers(answers, pope_labels=labels)


# --- LLaVA's answer files for POPE ----------------------------------------------------------------------------------


def test_llava_pope_answers_find_labels_through_the_question_file(tmp_path: Path, coco: Path) -> None:
    pairs = [(1 + i, a) for i, a in enumerate(ANSWERS)] + [(100 + i, a) for i, a in enumerate(ANSWERS)]
    answers = _llava_answers(tmp_path / "answers" / "llava-v1.5-13b.jsonl", pairs[::-1])  # any order

    matched = read_answers(answers, questions=tmp_path / "llava_pope_test.jsonl", pope_labels=coco)

    assert list(matched.pope) == ["random", "adversarial"]
    assert matched.pope["random"].texts == ANSWERS and matched.pope["random"].labels == LABELS
    assert matched.pope["adversarial"].texts == ANSWERS and matched.pope["adversarial"].labels == LABELS[::-1]
    assert matched.model_name == "llava-v1.5-13b"


def test_llava_answers_to_an_official_file_match_by_question_id(tmp_path: Path) -> None:
    labels = _jsonl(tmp_path / "coco_pope_popular.json", _pope_rows())
    answers = _llava_answers(tmp_path / "a.jsonl", [(1 + i, a) for i, a in enumerate(ANSWERS)])

    assert read_answers(answers, pope_labels=labels).pope["popular"].labels == LABELS


def test_llava_pope_answers_for_a_category_without_labels_are_left_out_with_a_notice(
    tmp_path: Path, coco: Path
) -> None:
    pairs = [(1 + i, a) for i, a in enumerate(ANSWERS)] + [(100 + i, a) for i, a in enumerate(ANSWERS)]
    answers = _llava_answers(tmp_path / "a.jsonl", pairs)

    with collecting_notices() as notices:
        matched = read_answers(
            answers, questions=tmp_path / "llava_pope_test.jsonl", pope_labels=coco / "coco_pope_random.json"
        )

    assert list(matched.pope) == ["random"]
    assert len(notices) == 1 and "6 answers" in notices[0] and "not scored" in notices[0]


@pytest.mark.parametrize(
    ("pairs", "fragments"),
    [
        ([(1, "Yes")], ["no answer for 11 of the 12 questions", "score a complete answer file"]),
        ([(1, "Yes"), (1, "No")], ["line 2", "question_id 1", "line 1"]),
        ([(999, "Yes")], ["line 1", "question_id 999", "llava_pope_test.jsonl"]),
        ([(True, "Yes")], ["line 1", "'question_id'", "True"]),
    ],
)
def test_llava_pope_answers_incomplete_duplicated_or_unknown(
    tmp_path: Path, coco: Path, pairs: list, fragments: list[str]
) -> None:
    answers = _llava_answers(tmp_path / "a.jsonl", pairs)

    message = _error(lambda: read_answers(answers, questions=tmp_path / "llava_pope_test.jsonl", pope_labels=coco))

    assert all(f in message for f in fragments), message


# --- LLaVA's answer files for ScienceQA -----------------------------------------------------------------------------


@pytest.fixture
def sqa(tmp_path: Path) -> Path:
    problems = {
        pid: {"question": "Which?", "choices": choices, "answer": answer, "hint": "", "image": image, "split": split}
        for pid, choices, answer, image, split in [
            ("4", ["chiasmus", "apostrophe"], 1, None, "test"),
            ("5", ["a", "b", "c"], 1, "image.png", "test"),
            ("11", ["a", "b", "c", "d"], 3, "image.png", "test"),
            ("15", ["no", "yes"], 1, None, "test"),
            ("1", ["a", "b"], 0, None, "train"),
        ]
    }
    root = tmp_path / "scienceqa"
    _write(root / "problems.json", json.dumps(problems, indent=1))
    _write(root / "pid_splits.json", json.dumps({"train": ["1"], "val": [], "test": ["4", "5", "11", "15"]}))
    return root


def test_llava_sqa_answers_count_missing_as_wrong_and_read_images_from_prompts(tmp_path: Path, sqa: Path) -> None:
    answers = _llava_answers(
        tmp_path / "sqa.jsonl",
        [("4", "B is the run-on sentence."), ("5", "B"), ("15", "B. yes"), ("1", "A")],
        ["text", "<image>\nContext: ...", "text", "text"],
    )

    with collecting_notices() as notices:
        matched = read_answers(answers, sqa_dir=sqa)

    assert [p.pid for p in matched.sqa.problems] == ["4", "5", "11", "15"]  # pid_splits order
    assert matched.sqa.texts == ["B is the run-on sentence.", "B", None, "B. yes"]
    assert matched.sqa.with_image == [False, True, False, False]  # "11" has an image but no answer: not counted as one
    assert any("1 answers" in n and "outside split 'test'" in n for n in notices)
    assert any("1 of the 4 problems" in n and "count as wrong" in n for n in notices)


def test_score_answers_sqa_counts_like_llavas_script(tmp_path: Path, sqa: Path) -> None:
    answers = _llava_answers(
        tmp_path / "sqa.jsonl",
        [("4", "B is the run-on sentence."), ("5", "B"), ("11", "The answer is D."), ("15", "B. yes")],
        ["text", "<image>\nq", "<image>\nq", "text"],
    )

    official = score_answers(answers, sqa_dir=sqa)
    lenient = score_answers(answers, sqa_dir=sqa, parser="lenient")

    assert (official.sqa.n, official.sqa.accuracy, official.sqa.n_image, official.sqa.accuracy_image) == (4, 0.75, 2, 1)
    assert official.sqa.accuracy_text == 0.5 and official.parser == "official"
    assert lenient.sqa.accuracy == 1.0 and lenient.parser == "lenient" and not lenient.cached


def test_sqa_answers_for_another_split_are_refused(tmp_path: Path, sqa: Path) -> None:
    answers = _llava_answers(tmp_path / "sqa.jsonl", [("1", "A")])

    _error(lambda: read_answers(answers, sqa_dir=sqa), "none of the 1 answers", "split 'test'", "--split")


# --- scoring and storing --------------------------------------------------------------------------------------------


def test_score_answers_gives_pope_metrics_and_stores_them_under_the_name(tmp_path: Path) -> None:
    labels = _jsonl(tmp_path / "coco_pope_random.json", _pope_rows(), newline="\r\n")
    rows = [{"question": f"Is there a {o} in the image?", "answer": a} for o, a in zip(OBJECTS, ANSWERS)]
    answers = _jsonl(tmp_path / "ans.json", rows)

    result = score_answers(answers, pope_labels=labels, name="my model")

    m = result.pope["random"]  # predictions yes, yes, no, yes, no, no against yes, no, yes, no, yes, no
    assert (m.n, m.accuracy, m.precision, m.recall, m.yes_ratio) == (6, 2 / 6, 1 / 3, 1 / 3, 3 / 6)
    assert m.f1 == 2 * (1 / 3) * (1 / 3) / (1 / 3 + 1 / 3) and result.scoring == "generate"
    model_id = hashlib.sha256(b"answers:my model").hexdigest()[:16]
    assert result.model_id == model_id and not result.cached
    stored = PlanStore().plan_evaluations(DENSE_PLAN_ID)
    assert len(stored) == 1 and stored[0].key.model_id == model_id and stored[0].key.mode == "dense"
    assert "answers-" in stored[0].key.bench and stored[0].key.bench.endswith(":parser-official")
    assert PlanStore().get_model(model_id).spec == "my model"
    assert score_answers(answers, pope_labels=labels, name="my model").cached
    _jsonl(answers, [{**row, "answer": "yes"} for row in rows])  # new content: a new key
    assert not score_answers(answers, pope_labels=labels, name="my model").cached


def _error(fn, *fragments: str) -> str:
    with pytest.raises(HippError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    assert all(f in message for f in fragments), message
    return message


# --- the command ----------------------------------------------------------------------------------------------------


def test_score_command_prints_the_eval_tables_and_json(tmp_path: Path, coco: Path) -> None:
    pairs = [(1 + i, a) for i, a in enumerate(ANSWERS)] + [(100 + i, a) for i, a in enumerate(ANSWERS)]
    answers = _llava_answers(tmp_path / "llava-v1.5-13b.jsonl", pairs)
    args = ["score", str(answers), "--questions", str(tmp_path / "llava_pope_test.jsonl"), "--pope-labels", str(coco)]

    table = invoke(*args)
    data = json.loads(invoke(*args, "--json").stdout)

    assert table.returncode == 0, table.output
    assert "POPE (test, generate, official parser)" in table.stdout and "adversarial" in table.stdout
    assert "llava-v1.5-13b (answers)" in table.stdout
    assert data["cached"] is True and data["parser"] == "official" and data["pope"]["random"]["n"] == 6


def test_score_command_bad_inputs_are_one_line_exit_2_and_store_nothing(tmp_path: Path, coco: Path, sqa: Path) -> None:
    good = _llava_answers(tmp_path / "a.jsonl", [(1, "Yes")])
    good_sqa = _llava_answers(tmp_path / "s.jsonl", [("4", "B")])
    pope_format = _jsonl(tmp_path / "p.jsonl", [{"question": "Is there a dog?", "answer": "yes"}])
    empty = _write(tmp_path / "empty.jsonl", "\n")
    broken = _write(tmp_path / "broken.jsonl", '{"question_id": 1, "text": "Unterminated}\n')
    questions = str(tmp_path / "llava_pope_test.jsonl")
    empty_labels = _write(tmp_path / "labels" / "coco_pope_random.json", "")
    cases = [
        ([str(good)], "--pope-labels"),
        ([str(good), "--pope-labels", str(coco), "--sqa-dir", str(sqa)], "not both"),
        ([str(tmp_path / "nope.jsonl"), "--sqa-dir", str(sqa)], "not found"),
        ([str(empty), "--sqa-dir", str(sqa)], "holds no answers"),
        ([str(broken), "--sqa-dir", str(sqa)], "Unterminated string starting at column"),
        ([str(good), "--questions", questions, "--pope-labels", str(coco)], "no answer for 11 of the 12"),
        ([str(good), "--pope-labels", str(coco)], "--questions"),
        ([str(pope_format), "--pope-labels", str(coco)], "one label file"),
        ([str(pope_format), "--pope-labels", str(empty_labels)], "holds no questions"),
        ([str(pope_format), "--sqa-dir", str(sqa)], "LLaVA's answer files"),
        ([str(good), "--sqa-dir", str(sqa), "--split", "val"], "lists no problems"),
        ([str(good), "--sqa-dir", str(sqa), "--parser", "strict"], "--parser 'strict'"),
        ([str(good_sqa), "--sqa-dir", str(sqa), "--name", " "], "--name"),
    ]
    for args, fragment in cases:
        result = invoke("score", *args)
        assert result.returncode == 2, (args, result.output)
        assert result.stderr.strip().count("\n") == 0 and fragment in result.stderr, (fragment, result.stderr)
    assert PlanStore().plan_evaluations(DENSE_PLAN_ID) == []
