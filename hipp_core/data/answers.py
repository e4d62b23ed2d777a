"""Answer files made elsewhere, matched with the questions they answer, exactly as the official scripts match them.

Three layouts are read (one JSON object per line):
- POPE's answer format, `{"question", "answer"}`: the k-th answer is the answer to the k-th question of one POPE
  label file, as POPE's `evaluate.py` pairs them (a `question` that is not that question is refused).
- LLaVA's answer files, `{"question_id", "prompt", "text", ...}`, for POPE: answers find their question by id in
  LLaVA's `llava_pope_test.jsonl` (`questions`), whose k-th question of a category takes the label of the k-th line
  of `coco_pope_<category>.json`, as LLaVA's `eval_pope.py` does. Without `questions`, the label file itself is the
  question file and ids match directly.
- LLaVA's answer files for ScienceQA: every problem of the split (`pid_splits.json`) finds its answer by id; a
  problem without one counts as FAILED, and a problem is an image question when its answer's prompt holds
  `<image>`, both as LLaVA's `eval_science_qa.py` counts them.

Nothing here parses an answer (see `hipp_core.answer_parsing`) or computes a metric: this module says which text
answers which question and what the right answer is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from hipp_core.data.json_records import Record, read_records
from hipp_core.data.pope import load_pope
from hipp_core.data.records import POPE_CATEGORIES, PopeItem, SQAItem
from hipp_core.data.sqa import load_sqa
from hipp_core.errors import HippError, notice

IMAGE_TAG = "<image>"  # how LLaVA's eval_science_qa.py recognises an image question (in the answer's prompt)
_POPE_HINT = "pass --pope-labels (the POPE label file, or the folder of coco_pope_<category>.json files)"


@dataclass(frozen=True)
class PopeAnswers:
    """One POPE category: the model's answer texts and the labels they are scored against, in label order."""

    texts: list[str]
    labels: list[str]  # "yes" / "no"


@dataclass(frozen=True)
class SQAAnswers:
    """A ScienceQA split: one entry per problem, in the split's order."""

    problems: list[SQAItem]
    texts: list[str | None]  # None: the file has no answer for the problem (FAILED)
    with_image: list[bool]  # "<image>" in the answer's prompt; False without an answer, as LLaVA counts it


@dataclass
class MatchedAnswers:
    bench: str  # "pope" or "sqa"
    layout: str  # "pope" ({question, answer}) or "llava" ({question_id, prompt, text})
    pope: dict[str, PopeAnswers] = field(default_factory=dict)
    sqa: SQAAnswers | None = None
    model_name: str | None = None  # the `model_id` LLaVA's files carry, when they all agree
    sources: list[Path] = field(default_factory=list)  # every file read: what the result depends on

    @property
    def questions(self) -> int:
        return sum(len(a.texts) for a in self.pope.values()) + (len(self.sqa.texts) if self.sqa else 0)

    def content_key(self) -> str:
        """A hash of the answer file (first source) and of the reference files, for the plan store's key."""
        answers, *refs = self.sources
        h = hashlib.sha256()
        for path in refs:
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return f"answers-{_file_hash(answers)}:refs-{h.hexdigest()[:12]}"


def read_answers(
    answers: Path,
    questions: Path | None = None,
    pope_labels: Path | None = None,
    sqa_dir: Path | None = None,
    split: str = "test",
    sqa_images: Path | None = None,
) -> MatchedAnswers:
    """The answers of `answers` matched with their questions and right answers (see the module docstring)."""
    answers = _absolute(answers)
    if (pope_labels is None) == (sqa_dir is None):
        raise HippError(
            "say what the answers are for: --pope-labels FILE_OR_DIR for POPE, or --sqa-dir DIR for ScienceQA"
            + (" (not both)" if pope_labels is not None else "")
        )
    records = read_records(answers, "answer file")
    if not records:
        raise HippError(f"answer file {answers} holds no answers; score a complete answer file")
    layout = _layout(answers, records)
    if sqa_dir is not None:
        if layout != "llava":
            raise HippError(
                f"{answers} holds POPE-format answers ({{question, answer}}); ScienceQA answers must be LLaVA's "
                "answer files ({question_id, prompt, text})"
            )
        if questions is not None:
            raise HippError("--questions is LLaVA's POPE question file; ScienceQA answers need only --sqa-dir")
        return _sqa(answers, records, _absolute(sqa_dir), split, sqa_images)
    labels = _absolute(pope_labels)
    if layout == "pope":
        return _pope_by_position(answers, records, labels, questions)
    return _pope_by_id(answers, records, labels, _absolute(questions) if questions is not None else None)


def _absolute(path: Path) -> Path:
    return Path(path).expanduser().absolute()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _layout(path: Path, records: list[Record]) -> str:
    n, first = records[0]
    if "question_id" in first and "text" in first:
        layout, needed = "llava", ("question_id", "text")
    elif "answer" in first:
        layout, needed = "pope", ("answer",)
    else:
        raise HippError(
            f'{path} line {n}: not an answer: expected POPE\'s {{"question", "answer"}} or LLaVA\'s '
            f'{{"question_id", "prompt", "text"}}, got fields {", ".join(first) or "none"}'
        )
    for n, rec in records:
        for name in needed:
            if name not in rec:
                raise HippError(f"{path} line {n}: field {name!r} is missing; every line needs {', '.join(needed)}")
        text = rec[needed[-1]]
        if not isinstance(text, str):
            raise HippError(f"{path} line {n}: field {needed[-1]!r} must be the answer text, got {text!r}")
    return layout


# -- POPE ----------------------------------------------------------------------------------------------------------


def _pope_by_position(answers: Path, records: list[Record], labels: Path, questions: Path | None) -> MatchedAnswers:
    if questions is not None:
        raise HippError(
            f"{answers} holds POPE-format answers, which pair with the label file by position; "
            "--questions is for LLaVA's answer files"
        )
    if labels.is_dir():
        raise HippError(
            f"{answers} holds POPE-format answers, which pair by position with one label file; pass that "
            f"*_pope_<category>.json file to --pope-labels, not the folder {labels}"
        )
    items = load_pope(labels, None)
    if len(records) != len(items):
        raise HippError(
            f"{answers} has {len(records)} answers but {labels} has {len(items)} questions; answers pair with "
            "questions by position, so use the label file the answers were made for"
        )
    for (n, rec), item in zip(records, items):
        asked = rec.get("question")
        if isinstance(asked, str) and _plain(item.text) not in _plain(asked):
            raise HippError(
                f"{answers} line {n}: field 'question' is {asked!r} but question {n} of {labels} (its label by "
                f"position) is {item.text!r}; the answer and label files are not in the same order"
            )
    texts = [rec["answer"] for _, rec in records]
    return MatchedAnswers(
        "pope",
        "pope",
        pope={items[0].category: PopeAnswers(texts, [it.label for it in items])},
        sources=[answers, labels],
    )


def _plain(text: str) -> str:
    return " ".join(text.lower().split())


def _pope_by_id(answers: Path, records: list[Record], labels: Path, questions: Path | None) -> MatchedAnswers:
    if questions is None and labels.is_dir():
        raise HippError(
            f"{answers} holds LLaVA answers: pass LLaVA's question file (llava_pope_test.jsonl) with --questions "
            f"to match them with the label files in {labels}, or one labelled POPE file to --pope-labels"
        )
    items = load_pope(questions, None, label_file=labels) if questions is not None else load_pope(labels, None)
    by_id = _answers_by_id(answers, records)
    scored = {str(it.question_id) for it in items}
    asked = questions if questions is not None else labels
    known = scored if questions is None else {str(q) for q in _question_ids(questions)}
    strangers = [qid for qid in by_id if qid not in known]
    if strangers:
        n = by_id[strangers[0]][0]
        raise HippError(
            f"{answers} line {n}: question_id {strangers[0]} is not in {asked}; pass the question file the "
            "answers were made for with --questions"
        )
    missing = [it for it in items if str(it.question_id) not in by_id]
    if missing:
        raise HippError(
            f"{answers} has no answer for {len(missing)} of the {len(items)} questions to score (first: question_id "
            f"{missing[0].question_id}, category {missing[0].category!r}); score a complete answer file"
        )
    skipped = len(by_id) - len(items)
    if skipped:
        notice(f"{skipped} answers of {answers} are for categories {labels} has no labels for; they were not scored")
    grouped: dict[str, PopeAnswers] = {}
    for it in _category_order(items):
        group = grouped.setdefault(it.category, PopeAnswers([], []))
        group.texts.append(by_id[str(it.question_id)][1]["text"])
        group.labels.append(it.label)
    sources = [answers, *([questions] if questions else []), *_label_files(labels, grouped)]
    return MatchedAnswers("pope", "llava", pope=grouped, model_name=_model_name(records), sources=sources)


def _answers_by_id(answers: Path, records: list[Record]) -> dict[str, Record]:
    by_id: dict[str, Record] = {}
    for n, rec in records:
        qid = rec["question_id"]
        if isinstance(qid, bool) or not isinstance(qid, int | str):
            raise HippError(f"{answers} line {n}: field 'question_id' must be an integer or string, got {qid!r}")
        if str(qid) in by_id:
            raise HippError(
                f"{answers} line {n}: question_id {qid!r} was answered already on line {by_id[str(qid)][0]}; "
                "keep one answer per question"
            )
        by_id[str(qid)] = (n, rec)
    return by_id


def _question_ids(questions: Path) -> list:
    return [rec.get("question_id") for _, rec in read_records(questions, "question file")]


def _category_order(items: list[PopeItem]) -> list[PopeItem]:
    rank = {c: i for i, c in enumerate(POPE_CATEGORIES)}
    return sorted(items, key=lambda it: rank.get(it.category, len(rank)))  # stable: file order within a category


def _label_files(labels: Path, grouped: dict[str, PopeAnswers]) -> list[Path]:
    if not labels.is_dir():
        return [labels]
    return [labels / f"coco_pope_{category}.json" for category in grouped]


def _model_name(records: list[Record]) -> str | None:
    names = {rec.get("model_id") if isinstance(rec.get("model_id"), str) else None for _, rec in records}
    name = names.pop() if len(names) == 1 else None
    return name if isinstance(name, str) and name else None


# -- ScienceQA -----------------------------------------------------------------------------------------------------


def _sqa(answers: Path, records: list[Record], sqa_dir: Path, split: str, images: Path | None) -> MatchedAnswers:
    problems = load_sqa(sqa_dir, split, image_root=images, need_images=False)
    by_id = _answers_by_id(answers, records)
    in_split = {p.pid for p in problems}
    outside = [qid for qid in by_id if qid not in in_split]
    if len(outside) == len(by_id):
        raise HippError(
            f"none of the {len(by_id)} answers in {answers} is for a problem of split {split!r} of {sqa_dir}; "
            "pass the split the answers were made for with --split"
        )
    if outside:
        notice(f"{len(outside)} answers of {answers} are for problems outside split {split!r}; they were not scored")
    missing = sum(p.pid not in by_id for p in problems)
    if missing:
        notice(
            f"{missing} of the {len(problems)} problems of split {split!r} have no answer in {answers}; "
            "they count as wrong, as LLaVA's eval_science_qa.py counts them"
        )
    texts = [by_id[p.pid][1]["text"] if p.pid in by_id else None for p in problems]
    with_image = [p.pid in by_id and IMAGE_TAG in _prompt(answers, *by_id[p.pid]) for p in problems]
    sources = [answers, *(f for f in (sqa_dir / "problems.json", sqa_dir / "pid_splits.json") if f.is_file())]
    return MatchedAnswers(
        "sqa", "llava", sqa=SQAAnswers(problems, texts, with_image), model_name=_model_name(records), sources=sources
    )


def _prompt(answers: Path, n: int, rec: dict) -> str:
    prompt = rec.get("prompt", "")
    if not isinstance(prompt, str):
        raise HippError(f"{answers} line {n}: field 'prompt' must be the question text, got {prompt!r}")
    return prompt


def default_name(matched: MatchedAnswers, answers: Path) -> str:
    """What the scored model is called when the user does not say: the answers' `model_id`, else the file name."""
    base = matched.model_name or re.sub(r"\.jsonl?$", "", Path(answers).name)
    return f"{base} (answers)"
