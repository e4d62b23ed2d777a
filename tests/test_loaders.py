"""The POPE and ScienceQA loaders read the real released formats and reject bad input with one-line HippErrors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from hipp_core.data.pope import load_pope, load_pope_dir
from hipp_core.data.records import PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.errors import HippError, collecting_notices

# the notice about a missing pid_splits.json is tested on its own; elsewhere it is expected noise
pytestmark = pytest.mark.filterwarnings("ignore::hipp_core.errors.HippNotice")

IMG_A = "COCO_val2014_000000310196.jpg"
IMG_B = "COCO_val2014_000000210789.jpg"
SUFFIX = "\nAnswer the question using a single word or phrase."


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2), "red").save(path)
    return path


def _jsonl(path: Path, rows: list[dict | str]) -> Path:
    """Rows as JSON Lines; a str row is written verbatim, to plant blank or broken lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _error(fn: Callable[[], object], *parts: str) -> str:
    """The HippError `fn` raises; its message must be one line naming every one of `parts`."""
    with pytest.raises(HippError) as err:
        fn()
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message
    return message


def _pope(qid: int, image: str, obj: str, label: str = "yes") -> dict:
    return {"question_id": qid, "image": image, "text": f"Is there a {obj} in the image?", "label": label}


def _llava(qid: int, image: str, obj: str, category: str) -> dict:
    return {"question_id": qid, "image": image, "text": f"Is there a {obj} in the image?{SUFFIX}", "category": category}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    _image(tmp_path / "val2014" / IMG_A)
    _image(tmp_path / "val2014" / IMG_B)
    return tmp_path / "val2014"


# --- POPE, official question files -------------------------------------------------------------------------------


def test_official_pope_file_loads_every_line_with_category_from_its_name(tmp_path: Path, images: Path) -> None:
    path = _jsonl(
        tmp_path / "coco_pope_random.json",
        [_pope(1, IMG_A, "snowboard", "Yes"), "", _pope(2, IMG_B, "dog", "no")],
    )

    items = load_pope(path, images)

    assert items == [
        PopeItem(1, images / IMG_A, "Is there a snowboard in the image?", "yes", "random"),
        PopeItem(2, images / IMG_B, "Is there a dog in the image?", "no", "random"),
    ]
    assert all(item.image.is_absolute() for item in items)


@pytest.mark.parametrize(
    ("name", "category", "expected"), [("mine.json", None, "pope"), ("mine.json", "popular", "popular")]
)
def test_official_pope_category_is_the_argument_else_pope(
    tmp_path: Path, images: Path, name: str, category: str | None, expected: str
) -> None:
    path = _jsonl(tmp_path / name, [_pope("q1", IMG_A, "car")])

    assert load_pope(path, images, category=category) == [
        PopeItem("q1", images / IMG_A, "Is there a car in the image?", "yes", expected)
    ]


def test_pope_dir_loads_each_category_file_in_canonical_order(tmp_path: Path) -> None:
    _image(tmp_path / "pope" / "images" / IMG_A)
    _jsonl(tmp_path / "pope" / "coco_pope_adversarial.json", [_pope(1, IMG_A, "skis", "no")])
    _jsonl(tmp_path / "pope" / "coco_pope_random.jsonl", [_pope(1, IMG_A, "person")])
    _jsonl(tmp_path / "pope" / "llava_pope_test.jsonl", [_llava(1, IMG_A, "person", "random")])
    image = tmp_path / "pope" / "images" / IMG_A

    loaded = load_pope_dir(tmp_path / "pope")

    assert list(loaded) == ["random", "adversarial"]
    assert loaded["random"] == [PopeItem(1, image, "Is there a person in the image?", "yes", "random")]
    assert loaded["adversarial"] == [PopeItem(1, image, "Is there a skis in the image?", "no", "adversarial")]


def _seem(path: Path, rows: list[dict]) -> Path:
    """A GQA / A-OKVQA POPE file as released: one pretty-printed JSON array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    return path


def test_seem_pope_file_loads_as_one_json_array_with_category_from_its_name(tmp_path: Path, images: Path) -> None:
    path = _seem(tmp_path / "gqa_pope_seem_adversarial.json", [_pope(1, IMG_A, "bird"), _pope(2, IMG_B, "wall", "no")])

    assert load_pope(path, images) == [
        PopeItem(1, images / IMG_A, "Is there a bird in the image?", "yes", "adversarial"),
        PopeItem(2, images / IMG_B, "Is there a wall in the image?", "no", "adversarial"),
    ]


def test_pope_dir_finds_seem_files_and_crlf_coco_files(tmp_path: Path) -> None:
    _image(tmp_path / "seem" / "images" / IMG_A)
    _seem(tmp_path / "seem" / "aokvqa_pope_seem_random.json", [_pope(1, IMG_A, "bird")])
    _seem(tmp_path / "seem" / "aokvqa_pope_seem_popular.json", [_pope(1, IMG_A, "sky", "no")])
    coco = tmp_path / "coco" / "coco_pope_popular.json"
    coco.parent.mkdir()
    coco.write_bytes(b"".join(json.dumps(_pope(n, IMG_A, "car")).encode() + b"\r\n" for n in (1, 2)))

    seem = load_pope_dir(tmp_path / "seem")
    crlf = load_pope_dir(tmp_path / "coco", tmp_path / "seem" / "images")

    assert list(seem) == ["random", "popular"] and seem["popular"][0].label == "no"
    assert [item.question_id for item in crlf["popular"]] == [1, 2]


@pytest.mark.parametrize(("name", "text"), [("coco_pope_random.json", "\r\n"), ("gqa_pope_seem_random.json", "[\n]")])
def test_empty_pope_file_alone_or_in_a_folder_is_refused(tmp_path: Path, images: Path, name: str, text: str) -> None:
    (tmp_path / "pope").mkdir()
    path = tmp_path / "pope" / name
    path.write_text(text, encoding="utf-8")
    _jsonl(tmp_path / "pope" / "coco_pope_popular.json", [_pope(1, IMG_A, "dog")])

    _error(lambda: load_pope(path, images), str(path), "holds no questions")
    _error(lambda: load_pope_dir(tmp_path / "pope", images), str(path), "holds no questions")


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ('[\n  {"question_id": 1,\n  "image": "x.jpg"\n  {', "Expecting ',' delimiter at line 4 column 3"),
        ('[{"question_id": 1}, 2]', "line 1: expected a JSON object, got int"),
        ('[{"question_id": 1}]\n{"question_id": 2}', "line 2: text after the closing ']'"),
        ('[{"text": "unterminated', "Unterminated string starting at line 1 column 11"),
    ],
)
def test_broken_seem_file_is_one_line_naming_where(tmp_path: Path, images: Path, text: str, detail: str) -> None:
    path = tmp_path / "gqa_pope_seem_random.json"
    path.write_text(text, encoding="utf-8")

    _error(lambda: load_pope(path, images), str(path), detail)


# --- POPE, LLaVA's unlabelled question file ---------------------------------------------------------------------


@pytest.fixture
def llava(tmp_path: Path) -> tuple[Path, Path]:
    """llava_pope_test.jsonl with interleaved categories, and the POPE annotation folder it is labelled from."""
    questions = _jsonl(
        tmp_path / "llava_pope_test.jsonl",
        [
            _llava(101, IMG_A, "snowboard", "adversarial"),
            _llava(201, IMG_B, "truck", "popular"),
            _llava(102, IMG_A, "backpack", "adversarial"),
        ],
    )
    labels = tmp_path / "coco"
    _jsonl(
        labels / "coco_pope_adversarial.json", [_pope(1, IMG_A, "snowboard", "yes"), _pope(2, IMG_A, "backpack", "NO")]
    )
    _jsonl(labels / "coco_pope_popular.json", [_pope(1, IMG_B, "truck", "no")])
    return questions, labels


def test_llava_questions_get_labels_by_order_within_each_category(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava

    items = load_pope(questions, images, label_file=labels)

    assert items == [
        PopeItem(101, images / IMG_A, "Is there a snowboard in the image?", "yes", "adversarial"),
        PopeItem(201, images / IMG_B, "Is there a truck in the image?", "no", "popular"),
        PopeItem(102, images / IMG_A, "Is there a backpack in the image?", "no", "adversarial"),
    ]


def test_llava_single_label_file_selects_its_category(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava

    items = load_pope(questions, images, label_file=labels / "coco_pope_popular.json")

    assert items == [PopeItem(201, images / IMG_B, "Is there a truck in the image?", "no", "popular")]


def test_llava_category_argument_filters_questions(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava

    items = load_pope(questions, images, category="adversarial", label_file=labels)

    assert [(item.question_id, item.label) for item in items] == [(101, "yes"), (102, "no")]


# --- POPE errors ---------------------------------------------------------------------------------------------------


def test_pope_missing_file(tmp_path: Path, images: Path) -> None:
    _error(lambda: load_pope(tmp_path / "coco_pope_random.json", images), "coco_pope_random.json", "not found")


@pytest.mark.parametrize(
    ("line", "detail"), [('{"question_id": 2,', "not valid JSON"), ("[2]", "expected a JSON object")]
)
def test_pope_line_that_is_not_a_json_object(tmp_path: Path, images: Path, line: str, detail: str) -> None:
    path = _jsonl(tmp_path / "coco_pope_random.json", [_pope(1, IMG_A, "dog"), line])

    _error(lambda: load_pope(path, images), str(path), "line 2", detail)


@pytest.mark.parametrize(
    ("field", "row"),
    [
        ("'text'", {"question_id": 1, "image": IMG_A, "label": "yes"}),
        ("'image'", {**_pope(1, IMG_A, "dog"), "image": 7}),
        ("'question_id'", {**_pope(1, IMG_A, "dog"), "question_id": True}),
        ("'question_id'", {"image": IMG_A, "text": "Is there a dog in the image?", "label": "no"}),
        ("'label'", {"question_id": 1, "image": IMG_A, "text": "Is there a dog in the image?"}),
    ],
)
def test_pope_missing_or_mistyped_field(tmp_path: Path, images: Path, field: str, row: dict) -> None:
    path = _jsonl(tmp_path / "coco_pope_random.json", ["", row])

    _error(lambda: load_pope(path, images), str(path), "line 2", field)


def test_pope_missing_label_points_llava_users_to_label_file(tmp_path: Path, images: Path) -> None:
    path = _jsonl(tmp_path / "llava_pope_test.jsonl", [_llava(1, IMG_A, "dog", "random")])

    _error(lambda: load_pope(path, images), str(path), "line 1", "'label'", "--pope-labels")


def test_pope_label_not_yes_or_no(tmp_path: Path, images: Path) -> None:
    path = _jsonl(tmp_path / "coco_pope_random.json", [_pope(1, IMG_A, "dog", "maybe")])

    _error(lambda: load_pope(path, images), str(path), "line 1", "'label'", "'maybe'")


def test_pope_duplicate_question_id(tmp_path: Path, images: Path) -> None:
    path = _jsonl(tmp_path / "coco_pope_random.json", [_pope(4, IMG_A, "dog"), _pope(4, IMG_B, "cat")])

    _error(lambda: load_pope(path, images), str(path), "line 2", "'question_id'", "4", "line 1")


def test_pope_missing_image(tmp_path: Path, images: Path) -> None:
    path = _jsonl(tmp_path / "coco_pope_random.json", [_pope(9, "COCO_val2014_000000000001.jpg", "dog")])

    _error(
        lambda: load_pope(path, images),
        str(path),
        "question 9",
        "'image'",
        str(images / "COCO_val2014_000000000001.jpg"),
        "--pope-images",
    )


@pytest.mark.parametrize(("field", "bad"), [("text", "Is there a ski in the image?"), ("image", IMG_B)])
def test_llava_question_disagreeing_with_its_label_line(
    llava: tuple[Path, Path], images: Path, field: str, bad: str
) -> None:
    questions, labels = llava
    annotation = labels / "coco_pope_adversarial.json"
    _jsonl(annotation, [_pope(1, IMG_A, "snowboard"), {**_pope(2, IMG_A, "backpack"), field: bad}])

    _error(
        lambda: load_pope(questions, images, label_file=labels),
        str(questions),
        "line 3",
        str(annotation),
        f"line 2 of {annotation}",
        f"'{field}'",
    )


def test_llava_question_and_label_counts_differ(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava
    _jsonl(labels / "coco_pope_popular.json", [_pope(1, IMG_B, "truck"), _pope(2, IMG_B, "car")])

    _error(
        lambda: load_pope(questions, images, label_file=labels),
        str(questions),
        str(labels / "coco_pope_popular.json"),
        "1 questions",
        "'popular'",
        "2 labelled lines",
    )


def test_llava_label_file_for_a_category_is_missing(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava
    (labels / "coco_pope_popular.json").unlink()

    _error(
        lambda: load_pope(questions, images, label_file=labels),
        f"{questions} line 2",
        "'category'",
        str(labels / "coco_pope_popular.json"),
    )


def test_llava_single_unnamed_label_file_for_mixed_categories(llava: tuple[Path, Path], images: Path) -> None:
    questions, labels = llava
    single = (labels / "coco_pope_popular.json").rename(labels / "labels.json")

    _error(
        lambda: load_pope(questions, images, label_file=single),
        str(questions),
        str(single),
        "adversarial, popular",
        "--pope-labels",
    )


def test_pope_dir_without_category_files(tmp_path: Path) -> None:
    _jsonl(tmp_path / "llava_pope_test.jsonl", [_llava(1, IMG_A, "dog", "random")])

    _error(lambda: load_pope_dir(tmp_path), str(tmp_path), "*_pope_<category>.json")


def test_pope_dir_with_two_files_for_one_category(tmp_path: Path) -> None:
    _jsonl(tmp_path / "coco_pope_random.json", [_pope(1, IMG_A, "dog")])
    _jsonl(tmp_path / "aokvqa_pope_random.json", [_pope(1, IMG_A, "dog")])

    _error(lambda: load_pope_dir(tmp_path), str(tmp_path), "'random'", "aokvqa_pope_random.json, coco_pope_random.json")


# --- ScienceQA -----------------------------------------------------------------------------------------------------


def _problem(split: str = "test", image: str | None = "image.png", **fields: object) -> dict:
    """A problem as in ScienceQA's problems.json."""
    return {
        "question": "Which property do these two objects have in common?",
        "choices": ["hard", "soft"],
        "answer": 1,
        "hint": "Select the best answer.",
        "image": image,
        "task": "closed choice",
        "grade": "grade2",
        "subject": "natural science",
        "topic": "physics",
        "category": "Physical properties",
        "skill": "Compare properties of objects",
        "lecture": "An object has different properties.",
        "solution": "Look at each object.",
        "split": split,
        **fields,
    }


def _sqa(tmp_path: Path, problems: dict[str, dict], pid_splits: dict[str, list[str]] | None = None) -> Path:
    root = tmp_path / "scienceqa"
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems, indent=1), encoding="utf-8")
    if pid_splits is not None:
        (root / "pid_splits.json").write_text(json.dumps(pid_splits), encoding="utf-8")
    return root


def test_sqa_with_pid_splits_keeps_their_order_and_finds_split_images(tmp_path: Path) -> None:
    problems = {
        "1": _problem(),
        "2": _problem(image=None, question="Which word would come first in a dictionary?", hint="", answer=0),
        "3": _problem(split="train"),
    }
    root = _sqa(tmp_path, problems, {"train": ["3"], "val": [], "test": ["2", "1"]})
    image = _image(root / "images" / "test" / "1" / "image.png")

    items = load_sqa(root)

    assert items == [
        SQAItem("2", "Which word would come first in a dictionary?", ("hard", "soft"), 0, "", None, "test"),
        SQAItem("1", problems["1"]["question"], ("hard", "soft"), 1, "Select the best answer.", image, "test"),
    ]


def test_sqa_without_pid_splits_uses_split_field_and_numeric_pid_order_with_a_notice(tmp_path: Path) -> None:
    problems = {
        "10": _problem(choices=["a", "b", "c", "d", "e"], answer=4),
        "9": _problem(image=None, hint=None),
        "2": _problem(),
        "5": _problem(split="val"),
    }
    root = _sqa(tmp_path, problems)
    flat = tmp_path / "flat_images"
    image_2, image_10 = _image(flat / "2" / "image.png"), _image(flat / "10" / "image.png")

    with collecting_notices() as notices:
        items = load_sqa(root, image_root=flat)

    assert len(notices) == 1 and str(root / "pid_splits.json") in notices[0] and "'split' field" in notices[0]
    question = problems["2"]["question"]
    assert items == [
        SQAItem("2", question, ("hard", "soft"), 1, "Select the best answer.", image_2, "test"),
        SQAItem("9", question, ("hard", "soft"), 1, "", None, "test"),
        SQAItem("10", question, ("a", "b", "c", "d", "e"), 4, "Select the best answer.", image_10, "test"),
    ]


def test_sqa_combined_split_finds_images_under_each_problems_own_split(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"1": _problem(split="train"), "2": _problem(split="val")}, {"trainval": ["1", "2"]})
    image_1, image_2 = _image(root / "images" / "train" / "1" / "image.png"), _image(root / "images/val/2/image.png")

    assert [item.image for item in load_sqa(root, split="trainval")] == [image_1, image_2]


# --- ScienceQA errors ----------------------------------------------------------------------------------------------


def test_sqa_problems_json_missing(tmp_path: Path) -> None:
    _error(lambda: load_sqa(tmp_path), str(tmp_path / "problems.json"), "not found", "--sqa-dir")


def test_sqa_problems_json_not_json(tmp_path: Path) -> None:
    (tmp_path / "problems.json").write_text('{\n "1": {"question": }\n}', encoding="utf-8")

    _error(
        lambda: load_sqa(tmp_path),
        str(tmp_path / "problems.json"),
        "not valid JSON (Expecting value at line 2 column 20)",
    )


def test_sqa_unknown_split_in_pid_splits_lists_available(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"1": _problem(image=None)}, {"train": [], "val": [], "test": ["1"]})

    _error(lambda: load_sqa(root, split="dev"), str(root / "pid_splits.json"), "'dev'", "train, val, test")


def test_sqa_unknown_split_without_pid_splits_lists_available(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"1": _problem(image=None), "2": _problem(split="val", image=None)})

    _error(lambda: load_sqa(root, split="dev"), str(root / "problems.json"), "'dev'", "test, val")


def test_sqa_split_without_problems_is_refused(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"1": _problem(image=None)}, {"val": [], "test": ["1"]})

    _error(lambda: load_sqa(root, split="val"), str(root / "pid_splits.json"), "'val'", "lists no problems")


def test_sqa_images_are_not_needed_to_score_answers(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"8": _problem()}, {"test": ["8"]})

    assert load_sqa(root, need_images=False)[0].image == root / "images" / "test" / "8" / "image.png"
    _error(lambda: load_sqa(root, image_root=tmp_path / "img", need_images=False), "--sqa-images")


def test_sqa_pid_split_names_a_problem_that_does_not_exist(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"1": _problem(image=None)}, {"test": ["1", "77"]})

    _error(lambda: load_sqa(root), str(root / "pid_splits.json"), "'77'", str(root / "problems.json"))


@pytest.mark.parametrize(
    ("fields", "field", "detail"),
    [
        ({"choices": "hard or soft"}, "'choices'", "list of strings"),
        ({"choices": ["hard", 2]}, "'choices'", "list of strings"),
        ({"choices": ["hard"], "answer": 0}, "'choices'", "at least 2"),
        ({"choices": list("abcdef"), "answer": 0}, "'choices'", "at most 5 choices are supported by the letter prompt"),
        ({"answer": 2}, "'answer'", "got 2"),
        ({"answer": "1"}, "'answer'", "got '1'"),
        ({"answer": True}, "'answer'", "got True"),
        ({"question": 5}, "'question'", "must be a string"),
        ({"hint": 3}, "'hint'", "must be a string"),
    ],
)
def test_sqa_bad_problem_field(tmp_path: Path, fields: dict, field: str, detail: str) -> None:
    root = _sqa(tmp_path, {"1": _problem(image=None), "42": _problem(image=None, **fields)})

    _error(lambda: load_sqa(root), str(root / "problems.json"), "problem 42", field, detail)


def test_sqa_question_missing(tmp_path: Path) -> None:
    problem = _problem(image=None)
    del problem["question"]
    root = _sqa(tmp_path, {"3": problem})

    _error(lambda: load_sqa(root), str(root / "problems.json"), "problem 3", "'question'", "missing")


def test_sqa_named_image_missing(tmp_path: Path) -> None:
    root = _sqa(tmp_path, {"8": _problem()})

    _error(
        lambda: load_sqa(root),
        str(root / "problems.json"),
        "problem 8",
        "'image'",
        str(root / "images" / "test" / "8" / "image.png"),
        "--sqa-images",
    )
