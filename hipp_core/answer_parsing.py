"""From a model's free-text answer to a prediction, the way the benchmarks' official scripts read it.

`official` (the default) follows the published scripts rule for rule, so that an answer file scored here gives
the numbers its authors printed:

- POPE (AoiDragon/POPE `evaluate.py`, identical in LLaVA's `llava/eval/eval_pope.py`): keep the text before the
  first ".", delete commas, split on single spaces; the answer is "no" when one piece is exactly "No", "not" or
  "no", else "yes". So "NO" and "Not really" read as yes, and so does "No\\n" (a newline does not split).
- ScienceQA (LLaVA's `llava/eval/eval_science_qa.py`): the whole text is one letter A-E; or it has at least three
  characters, starts with a letter A-E and continues with ". "; or "The answer is X" followed by any one character
  occurs exactly once (X any capital). Anything else FAILED, and so does a letter past the problem's choices;
  FAILED counts as wrong. The text is not stripped: LLaVA strips answers before writing them.

`lenient` is the reading this project used before, kept for comparison and never mixed with official results:
POPE splits on any whitespace and also takes "NO" and "Not" as no; ScienceQA takes a leading letter ("B", "(B)",
"B is ..."), "answer is B", or the text of exactly one option.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hipp_core.errors import HippError

PARSERS = ("official", "lenient")
OFFICIAL_OPTIONS = "ABCDE"  # eval_science_qa.py's --options default
FAILED = -1  # the choice index of an answer no rule reads

_OFFICIAL_NO = frozenset(("No", "not", "no"))
_LENIENT_NO = frozenset(("No", "no", "not", "NO", "Not"))
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def check_parser(parser: str) -> str:
    if parser not in PARSERS:
        raise HippError(f"unknown --parser {parser!r}; use one of {', '.join(PARSERS)}")
    return parser


def parse_pope_answer(text: str, parser: str = "official") -> str:
    """'yes' or 'no'."""
    first = text.split(".")[0].replace(",", "")
    if check_parser(parser) == "official":
        return "no" if not _OFFICIAL_NO.isdisjoint(first.split(" ")) else "yes"
    return "no" if not _LENIENT_NO.isdisjoint(first.split()) else "yes"


def parse_choice(text: str, choices: Sequence[str], parser: str = "official") -> int:
    """The index of the chosen option among `choices`, or FAILED (-1)."""
    if check_parser(parser) == "lenient":
        return _lenient_choice(text, choices)
    letter = _official_letter(text)
    return OFFICIAL_OPTIONS.index(letter) if letter in OFFICIAL_OPTIONS[: len(choices)] else FAILED


def _official_letter(text: str) -> str:
    if len(text) == 1 and text in OFFICIAL_OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OFFICIAL_OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def _lenient_choice(text: str, choices: Sequence[str]) -> int:
    text = text.strip()
    match = re.match(r"^\(?([A-E])\b", text) or re.search(r"answer is \(?([A-E])\b", text)
    if match and OFFICIAL_OPTIONS.index(match.group(1)) < len(choices):
        return OFFICIAL_OPTIONS.index(match.group(1))
    lowered = text.lower()
    hits = [i for i, c in enumerate(choices) if c.lower() in lowered]
    return hits[0] if len(hits) == 1 else FAILED
