"""A user's LLaVA-format instruction file, as recovery training data.

The format is LLaVA's (`llava_instruct_*.json`): a JSON list of
`{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": ...}, ...]}`,
with `image` (optional: text-only items have none) relative to the file's folder. Every human turn followed by a gpt
turn becomes one single-turn example on the item's image; the `<image>` placeholder is dropped because the model's
own chat template places the image. Any malformed item is reported as one line naming the file, the item and the
field, before any training starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hipp_core.errors import HippError, json_problem

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class Instruction:
    prompt: str
    answer: str
    image: Path | None


def load_instructions(path: str | Path) -> list[Instruction]:
    path = Path(path).expanduser()
    try:
        items = json.loads(path.read_text())
    except FileNotFoundError:
        raise HippError(f"instruction file {path} does not exist; pass a LLaVA-format JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HippError(f"cannot read instruction file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise HippError(f"{path} is not valid JSON ({json_problem(exc)})") from None
    if not isinstance(items, list) or not items:
        raise HippError(f"{path} must hold a non-empty JSON list of LLaVA-format items, got {type(items).__name__}")
    out: list[Instruction] = []
    for index, item in enumerate(items):
        out += _item(path, index, item)
    return out


def _item(path: Path, index: int, item: object) -> list[Instruction]:
    where = f"{path}: item {index}"

    def fail(field: str, problem: str) -> HippError:
        return HippError(f"{where}, field {field!r}: {problem}; expected LLaVA's format (see `hipp recover --help`)")

    if not isinstance(item, dict):
        raise HippError(f"{where} is a {type(item).__name__}, not an object with 'conversations'")
    if "id" in item:
        where += f" (id {item['id']!r})"
    image = item.get("image")
    if image is not None:
        if not isinstance(image, str) or not image:
            raise fail("image", f"must be a file name relative to the file's folder, got {image!r}")
        image = path.parent / image
        if not image.is_file():
            raise fail("image", f"{image} does not exist")
    turns = item.get("conversations")
    if not isinstance(turns, list) or len(turns) < 2:
        raise fail("conversations", "must be a list of at least one human turn and one gpt turn")
    pairs = []
    for t, turn in enumerate(turns):
        expected = ("human", "gpt")[t % 2]
        if not isinstance(turn, dict) or turn.get("from") != expected:
            got = turn.get("from") if isinstance(turn, dict) else turn
            raise fail(f"conversations[{t}].from", f"must be {expected!r} (turns alternate), got {got!r}")
        value = turn.get("value")
        if not isinstance(value, str) or not value.strip():
            raise fail(f"conversations[{t}].value", "must be non-empty text")
        pairs.append(value)
    if len(pairs) % 2:
        raise fail(f"conversations[{len(pairs) - 1}]", "a human turn has no gpt answer")
    return [Instruction(_prompt(pairs[i]), pairs[i + 1].strip(), image) for i in range(0, len(pairs), 2)]


def _prompt(text: str) -> str:
    return text.replace(IMAGE_PLACEHOLDER, "").strip()
