"""Benchmark items as the evaluator sees them, whatever file format they came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

POPE_CATEGORIES = ("random", "popular", "adversarial")


@dataclass(frozen=True)
class PopeItem:
    question_id: int | str
    image: Path  # absolute path to the image file
    text: str  # the question, e.g. "Is there a red circle in the image?"
    label: str  # "yes" or "no"
    category: str  # random / popular / adversarial (or whatever the file's name says)


@dataclass(frozen=True)
class SQAItem:
    pid: str
    question: str
    choices: tuple[str, ...]
    answer: int  # index into choices
    hint: str
    image: Path | None  # absolute path, None for text-only problems
    split: str
