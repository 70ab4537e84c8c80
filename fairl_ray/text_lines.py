"""Text-per-line files read the way ``wc -l`` counts them: lines end at "\\n" only.

``str.splitlines()`` also breaks on "\\f", "\\v", "\\x1c"-"\\x1e", U+0085, U+2028 and U+2029, all of which occur
inside real texts (and inside JSON strings written with ``ensure_ascii=False``); a file of 5 lines would give
more than 5 texts, and scores would no longer line up with their lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def iter_lines(path: str | Path) -> Iterator[str]:
    """The lines of a UTF-8 file, split on "\\n" only, without their "\\n" (or "\\r\\n"); streamed."""
    # newline="\n": lines end at "\n" only (no universal newlines), so a lone "\r" stays inside its line.
    with open(path, encoding="utf-8", newline="\n") as fh:
        for line in fh:
            if line.endswith("\n"):
                line = line[:-1]
                if line.endswith("\r"):
                    line = line[:-1]
            yield line


def read_lines(path: str | Path) -> list[str]:
    return list(iter_lines(path))


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` cannot be written as UTF-8 (a lone surrogate, e.g. from the JSON escape "\\ud83d"), or None.

    Such a text passes ``json.loads`` but breaks hashing, tokenizers and Parquet later, far from the file it came
    from; callers check it on reading and name the file, row and column."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"lone surrogate {text[err.start]!r} at character {err.start} (not valid Unicode text)"
    return None


def read_texts(path: Path) -> list[str]:
    """Texts of ``fairl score``: one per line (split on "\\n" only, as ``wc -l`` counts), or JSON lines."""
    if path.suffix != ".jsonl":
        return list(iter_lines(path))
    texts = []
    for line_no, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {line_no}: not valid JSON ({err.msg})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise ValueError(f"{path}: line {line_no}, column 'text': missing or not a string")
        problem = lone_surrogate(obj["text"])
        if problem:
            raise ValueError(f"{path}: line {line_no}, column 'text': {problem}")
        texts.append(obj["text"])
    return texts
