"""The token ids that stand for each answer right after the prompt: what logit scoring compares.

Logit scoring reads one next-token distribution, at the prompt's last position, so an answer is represented by
the ids its first token can take *there*. Encoding an answer on its own gets this wrong for the SentencePiece
tokenizers of the Llama family, which begin every text with a word boundary: `" yes"` alone encodes as
`['▁', '▁yes']`, so yes, no and every option letter would all start with the same bare `'▁'`, score the same,
and the tie would go to the first answer. Here each answer is encoded after the prompt instead, and its
candidate is the first token that the prompt's own encoding does not have.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from hipp_core.errors import HippError


def spellings(answer: str, any_case: bool = False) -> list[str]:
    """How a reply may write `answer` straight after the prompt: as is and after a space; with `any_case` also
    lower-case and capitalised ("Yes" and "yes" both mean yes, but "a" is not option "A")."""
    forms = dict.fromkeys([answer, answer.lower(), answer.capitalize()] if any_case else [answer])
    return [space + form for space in ("", " ") for form in forms]


def answer_candidates(tokenizer, prompt: str, answers: Sequence[str], any_case: bool = False) -> list[list[int]]:
    """For each answer, the sorted ids its first token can take after `prompt` (the full text the model reads,
    chat template applied), without the ids another answer can also start with: a shared id scores both answers
    the same, so it can only produce ties.

    Raises a HippError when the tokenizer cannot write an answer after the prompt, or when two answers have no
    id that tells them apart.
    """
    base = tokenizer(prompt, add_special_tokens=False).input_ids
    n = len(base)
    found: list[set[int]] = []
    for answer in answers:
        ids = set()
        texts = [prompt + s for s in spellings(answer, any_case)]
        for full in tokenizer(texts, add_special_tokens=False).input_ids:
            # A spelling that merges into the prompt's last token changes the prompt itself; it cannot be read at
            # the prompt's last position, so it has no candidate there.
            if len(full) > n and full[:n] == base and full[n] != tokenizer.unk_token_id:
                ids.add(full[n])
        if not ids:
            raise HippError(f"the tokenizer cannot write the answer {answer!r} after the prompt; is this a chat VLM?")
        found.append(ids)
    uses = Counter(i for ids in found for i in ids)
    for a, ids in enumerate(found):
        if all(uses[i] > 1 for i in ids):
            b = next(b for b, other in enumerate(found) if b != a and ids & other)
            shared = tokenizer.convert_ids_to_tokens(sorted(ids & found[b]))
            raise HippError(
                f"after the prompt, the answers {answers[a]!r} and {answers[b]!r} begin with the same tokens "
                f"{shared} and {answers[a]!r} has no token of its own, so logit scoring cannot tell them apart; "
                "score by generation instead (hipp eval --generate)"
            )
    return [sorted(i for i in ids if uses[i] == 1) for ids in found]


def reply_token_count(tokenizer, prompt: str, reply: str) -> int:
    """How many of the tokens of `prompt + reply` belong to the reply: those past the longest prefix that the
    encoding of `prompt` alone shares. Counting the reply's tokens encoded alone is wrong for tokenizers whose
    encoding depends on what precedes (a SentencePiece word boundary, a merge across the seam); a token that spans
    the seam counts as the reply's, since the model must write it."""
    base = tokenizer(prompt, add_special_tokens=False).input_ids
    full = tokenizer(prompt + reply, add_special_tokens=False).input_ids
    shared = 0
    for a, b in zip(base, full):
        if a != b:
            break
        shared += 1
    return len(full) - shared
