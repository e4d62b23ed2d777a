"""Answer parsing follows the official scripts' rules exactly (POPE's evaluate.py = LLaVA's eval_pope.py, LLaVA's
eval_science_qa.py); the project's older lenient reading stays available under its own name."""

import pytest

from hipp_core.answer_parsing import FAILED, parse_choice, parse_pope_answer
from hipp_core.errors import HippError

# POPE, official: text before the first ".", commas deleted, split on single spaces, exactly No / not / no -> no.
OFFICIAL_POPE = [
    ("Yes", "yes"),
    ("No", "no"),
    ("no", "no"),
    ("No.", "no"),
    ("NO", "yes"),  # case-sensitive: only No / no / not
    ("Not", "yes"),
    ("Not really.", "yes"),
    ("Nope", "yes"),
    ("There is not a dog in the image.", "no"),
    ("Yes, there is no dog.", "no"),  # any piece of the first sentence
    ("No,there is none", "yes"),  # the comma is deleted, leaving "Nothere"
    ("No\n", "yes"),  # a newline does not split
    ("No\tthere is none", "yes"),
    ("  No  ", "no"),  # single-space split keeps "No" among empty pieces
    ("There is a cat. No dog.", "yes"),  # only the first sentence counts
    ("Cannot tell", "yes"),
    ("", "yes"),
    ("I do not know", "no"),
]


@pytest.mark.parametrize(("text", "expected"), OFFICIAL_POPE)
def test_pope_official_rule_reads_like_the_pope_script(text, expected):
    assert parse_pope_answer(text) == expected
    assert parse_pope_answer(text, "official") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("NO", "no"), ("Not really.", "no"), ("No\n", "no"), ("No\tthere is none", "no"), ("Yes", "yes")],
)
def test_pope_lenient_rule_splits_on_any_whitespace_and_takes_upper_case(text, expected):
    assert parse_pope_answer(text, "lenient") == expected


# ScienceQA, official: the whole text is a letter A-E; or >= 3 characters "<letter>. ..."; or "The answer is X"
# plus one more character, exactly once. Letters past the choices, and everything else, FAILED.
TWO = ("chiasmus", "apostrophe")
FIVE = ("0:4", "4:0", "2:2", "1:3", "3:1")
OFFICIAL_SQA = [
    ("B", TWO, 1),
    ("A. chiasmus", TWO, 0),
    ("B. ", TWO, 1),
    ("B.", TWO, FAILED),  # two characters: neither a bare letter nor "<letter>. "
    ("B is the run-on sentence.", TWO, FAILED),
    ("The answer is B.", TWO, 1),
    ("Therefore, The answer is A!", TWO, 0),
    ("The answer is B", TWO, FAILED),  # the pattern wants one character after the letter
    ("the answer is B.", TWO, FAILED),  # case-sensitive
    ("The answer is A. The answer is B.", TWO, FAILED),  # found twice
    ("(B)", TWO, FAILED),
    (" B", TWO, FAILED),  # not stripped: LLaVA strips before writing
    ("B\n", TWO, FAILED),
    ("b", TWO, FAILED),
    ("apostrophe", TWO, FAILED),  # option text is never matched
    ("E", TWO, FAILED),  # a letter past the choices
    ("E", FIVE, 4),
    ("E. 3:1", FIVE, 4),
    ("The answer is F.", FIVE, FAILED),
    ("F", FIVE, FAILED),
    ("", TWO, FAILED),
]


@pytest.mark.parametrize(("text", "choices", "expected"), OFFICIAL_SQA)
def test_sqa_official_rule_reads_like_llavas_script(text, choices, expected):
    assert parse_choice(text, choices) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("B is the run-on sentence.", 1), ("(B)", 1), (" B", 1), ("it is apostrophe", 1), ("E", FAILED), ("?", FAILED)],
)
def test_sqa_lenient_rule_takes_leading_letters_and_option_text(text, expected):
    assert parse_choice(text, TWO, "lenient") == expected


def test_unknown_parser_names_the_flag():
    with pytest.raises(HippError, match="--parser 'strict'.*official, lenient"):
        parse_pope_answer("Yes", "strict")
