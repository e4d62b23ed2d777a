"""Read a file of JSON records, one per line or one JSON array, keeping each record's line number for errors.

POPE's COCO files are JSON Lines (some with CRLF line ends); its GQA and A-OKVQA files (`*_pope_seem_*.json`)
are one pretty-printed JSON array. Answer files from POPE's and LLaVA's scripts are JSON Lines.
"""

from __future__ import annotations

import json
from pathlib import Path

from hipp_core.errors import HippError, json_problem

Record = tuple[int, dict]  # 1-based line number where the record starts, the record


def read_records(path: Path, kind: str) -> list[Record]:
    """The JSON objects of `path` (`kind` names the file in messages, e.g. "POPE file"), blank lines skipped."""
    if not path.is_file():
        raise HippError(f"{kind} {path} not found; check the path")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        return _array(path, text)
    # split on "\n" only: a JSON string may hold other line separators (U+2028), and "\r" is JSON whitespace
    return [(n, _object(path, n, line)) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _object(path: Path, n: int, line: str) -> dict:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise HippError(
            f"{path} line {n}: not valid JSON ({e.msg.removesuffix(' at')} at column {e.colno}); "
            "the file must hold one JSON object per line, or one JSON array of objects"
        ) from None
    return _checked(path, n, rec)


def _checked(path: Path, n: int, rec: object) -> dict:
    if not isinstance(rec, dict):
        raise HippError(f"{path} line {n}: expected a JSON object, got {type(rec).__name__}")
    return rec


def _array(path: Path, text: str) -> list[Record]:
    """Each element of a JSON array with the line it starts on (decoded one by one to know where it is)."""
    decoder = json.JSONDecoder()
    records: list[Record] = []
    pos = text.index("[") + 1
    try:
        while True:
            pos = _skip_space(text, pos)
            if text.startswith("]", pos) and not records:
                break
            line = text.count("\n", 0, pos) + 1
            rec, pos = decoder.raw_decode(text, pos)
            records.append((line, _checked(path, line, rec)))
            pos = _skip_space(text, pos)
            if text.startswith("]", pos):
                break
            if not text.startswith(",", pos):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, pos)
            pos += 1
    except json.JSONDecodeError as e:
        raise HippError(f"{path}: not valid JSON ({json_problem(e)}); re-download the file") from None
    extra = len(text) - len(text[pos + 1 :].lstrip())  # where anything after the closing "]" starts
    if extra < len(text):
        line = text.count("\n", 0, extra) + 1
        raise HippError(f"{path} line {line}: text after the closing ']' of the JSON array; re-download the file")
    return records


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    if pos >= len(text):
        raise json.JSONDecodeError("Unexpected end of file, the array is not closed", text, pos)
    return pos
