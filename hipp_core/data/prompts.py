"""Prompt text for each benchmark, shared by training and evaluation so the model is asked exactly as taught.

The wording follows LLaVA's evaluation prompts for POPE and ScienceQA, so real chat models are asked the way
their authors evaluated them.
"""

from __future__ import annotations

LETTERS = "ABCDE"
POPE_SUFFIX = "Answer the question using a single word or phrase."
SQA_SUFFIX = "Answer with the option's letter from the given choices directly."
CAPTION_PROMPT = "List the objects in the image."


def pope_prompt(text: str) -> str:
    return f"{text}\n{POPE_SUFFIX}"


def sqa_prompt(question: str, choices: list[str] | tuple[str, ...], hint: str = "") -> str:
    if len(choices) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} choices are supported, got {len(choices)}")
    lines = [f"Context: {hint}", question] if hint else [question]  # context first, as LLaVA's CQM-A files ask
    lines += [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)]
    lines.append(SQA_SUFFIX)
    return "\n".join(lines)
