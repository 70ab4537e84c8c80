"""Preference-pairs files in the TRL convention, validated on every read and write (DESIGN §2).

Columns (one row = one pair o+ ≻ o−; o+ is the aligned model's output):

===================  ========  ==================================================================================
column               required  values
===================  ========  ==================================================================================
``prompt``           yes       string, may be empty ("" for unconditional generations); null is an error
``chosen``           yes       o+: non-empty string (whitespace-only counts as empty)
``rejected``         yes       o−: non-empty string
``chosen_label``     no        label of o+: 1 = non-toxic / good, −1 = toxic / bad, 0 or null = unknown
``rejected_label``   no        label of o−, same convention. Integers or integral floats (1.0); booleans and
                               strings are rejected (``True``/``False`` would be ambiguous between {0,1} and
                               {−1,1}). This is the FA-IRL y(o) ∈ {−1, +1} convention plus 0 for unknown;
                               :func:`labels_to_binary` maps it to the metrics' {0, 1} classes.
``chosen_reward``    no        R*(o+): finite number, or null (unknown); NaN / ±inf are errors
``rejected_reward``  no        R*(o−), same
``subtype``          no        string or null (e.g. toxic subtype: insult, obscene, threat, identity_attack)
``split``            no        "train" or "test" (null is an error); honoured by :func:`split_pairs`
===================  ========  ==================================================================================

Other columns are kept as they are. The returned table has the canonical types (strings, int8 labels, float64
rewards), the known columns first in the order above, then the others in file order.

Errors are :class:`PairsFileError` naming file, row and column, e.g.
``pairs.jsonl: row 7 (line 8), column 'chosen': empty text``. Rows are 0-based record indices (as ``datasets``
and pyarrow index them); JSON-lines files also give the 1-based line number (blank lines are skipped but
counted). The first bad row (in row order) is reported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from fairl_ray.atomic_io import atomic_file
from fairl_ray.text_lines import lone_surrogate

__all__ = [
    "LABEL_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "REWARD_COLUMNS",
    "PairsFileError",
    "drop_degenerate",
    "labels_to_binary",
    "read_pairs",
    "split_pairs",
    "split_warnings",
    "validate_pairs",
    "write_pairs",
]

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected")
LABEL_COLUMNS = ("chosen_label", "rejected_label")
REWARD_COLUMNS = ("chosen_reward", "rejected_reward")
OPTIONAL_COLUMNS = LABEL_COLUMNS + REWARD_COLUMNS + ("subtype", "split")
SPLITS = ("train", "test")
_TYPES = {
    "prompt": pa.string(),
    "chosen": pa.string(),
    "rejected": pa.string(),
    "chosen_label": pa.int8(),
    "rejected_label": pa.int8(),
    "chosen_reward": pa.float64(),
    "rejected_reward": pa.float64(),
    "subtype": pa.string(),
    "split": pa.string(),
}
_MISSING = object()  # a JSON record without the key
_JSON_BLOCK_BYTES = 16 << 20  # pyarrow needs each JSON line inside one block; longer lines take the row-wise path


class PairsFileError(ValueError):
    """A pairs file (or table) that breaks the convention; the message names file, row and column.

    Attributes: ``path`` (str), ``row`` (0-based record index or None), ``line`` (1-based JSONL line or None),
    ``column`` (str or None), ``reason`` (str).
    """

    def __init__(
        self, path, reason: str, *, row: int | None = None, line: int | None = None, column: str | None = None
    ):
        self.path, self.row, self.line, self.column, self.reason = str(path), row, line, column, reason
        where = []
        if row is not None:
            where.append(f"row {row}" + (f" (line {line})" if line is not None else ""))
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{self.path}: " + (", ".join(where) + ": " if where else "") + reason)


# --------------------------------------------------------------------------------------------- values


def _type_name(v) -> str:
    return "null" if v is None else type(v).__name__


def _check_text(v, column: str) -> str | None:
    """Reason the value is bad, or None."""
    if v is _MISSING:
        return "missing value"
    if v is None:
        return "missing text (null)"
    if not isinstance(v, str):
        return f"expected a string, got {_type_name(v)} {v!r}"[:200]
    if column != "prompt" and not v.strip():
        return "empty text"
    return lone_surrogate(v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _label(v) -> tuple[int | None, str | None]:
    if v is None or v is _MISSING:
        return 0, None
    if isinstance(v, (bool, np.bool_)):
        return None, f"boolean label {v!r} is ambiguous; use 1 (non-toxic/good), -1 (toxic/bad) or 0 (unknown)"
    if not _is_number(v):
        return None, f"non-numeric label {v!r}; use 1 (non-toxic/good), -1 (toxic/bad) or 0 (unknown)"[:200]
    f = float(v)
    if f not in (-1.0, 0.0, 1.0):
        return None, f"label {v!r} not in {{-1, 0, 1}} (1 = non-toxic/good, -1 = toxic/bad, 0 = unknown)"
    return int(f), None


def _reward(v) -> tuple[float | None, str | None]:
    if v is None or v is _MISSING:
        return None, None
    if not _is_number(v):
        return None, f"non-numeric reward {v!r}"[:200]
    f = float(v)
    if not math.isfinite(f):
        return None, f"reward must be finite, got {f}"
    return f, None


# ----------------------------------------------------------------------------------------- validation


def _build(columns: dict[str, list], n: int, source, line_of: Callable[[int], int | None] = lambda r: None) -> pa.Table:
    """Validate column lists (row-major, first bad row wins) and build the canonical table."""
    for c in REQUIRED_COLUMNS:
        if c not in columns:
            required = ", ".join(REQUIRED_COLUMNS)
            raise PairsFileError(source, f"missing required column {c!r} (required: {required})", column=c)
    if n == 0:
        raise PairsFileError(source, "contains no pairs")
    present = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in columns]
    out: dict[str, list] = {c: [None] * n for c in present}

    def fail(r: int, c: str, reason: str):
        raise PairsFileError(source, reason, row=r, line=line_of(r), column=c)

    for r in range(n):
        for c in present:
            v = columns[c][r]
            if c in REQUIRED_COLUMNS:
                reason = _check_text(v, c)
                if reason:
                    fail(r, c, reason)
                out[c][r] = v
            elif c in LABEL_COLUMNS:
                out[c][r], reason = _label(v)
                if reason:
                    fail(r, c, reason)
            elif c in REWARD_COLUMNS:
                out[c][r], reason = _reward(v)
                if reason:
                    fail(r, c, reason)
            elif c == "subtype":
                if v is not None and v is not _MISSING and not isinstance(v, str):
                    fail(r, c, f"subtype must be a string or null, got {_type_name(v)} {v!r}"[:200])
                out[c][r] = None if v is _MISSING else v
            elif c == "split":
                if v not in SPLITS:
                    fail(r, c, f"bad split value {None if v is _MISSING else v!r}; expected 'train' or 'test'")
                out[c][r] = v

    arrays, names = [], []
    for c in present:
        arrays.append(pa.array(out[c], type=_TYPES[c]))
        names.append(c)
    for c, values in columns.items():
        if c in _TYPES:
            continue
        try:
            arrays.append(
                values
                if isinstance(values, (pa.Array, pa.ChunkedArray))
                else pa.array([None if v is _MISSING else v for v in values])
            )
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise PairsFileError(source, f"values of mixed or unsupported types: {exc}", column=c) from exc
        names.append(str(c))
    return pa.table(arrays, names=names)


def _check_table_types(table: pa.Table, source) -> None:
    """Typed tables (Parquet, Arrow) must have the right column types; a wrong type is a column-level error."""
    t = pa.types
    for field in table.schema:
        c, ty = field.name, field.type
        if t.is_dictionary(ty):
            ty = ty.value_type
        if t.is_null(ty) or c not in _TYPES:
            continue
        if c in REQUIRED_COLUMNS or c in ("subtype", "split"):
            ok, want = t.is_string(ty) or t.is_large_string(ty), "strings"
        elif c in LABEL_COLUMNS:
            ok, want = t.is_integer(ty) or t.is_floating(ty), "integers in {-1, 0, 1}"
        else:
            ok, want = t.is_integer(ty) or t.is_floating(ty), "finite numbers"
        if not ok:
            raise PairsFileError(source, f"column has type {field.type}, expected {want}", column=c)


def _table_columns(table: pa.Table, source) -> dict[str, list]:
    _check_table_types(table, source)
    cols: dict[str, list] = {}
    for name in table.column_names:
        col = table.column(name)
        cols[name] = col.to_pylist() if name in _TYPES else col
    return cols


def _rows_to_columns(rows: Sequence[Mapping], source, line_of=lambda r: None) -> dict[str, list]:
    names: dict[str, None] = {}
    for r, rec in enumerate(rows):
        if not isinstance(rec, Mapping):
            raise PairsFileError(
                source, f"expected a JSON object (mapping), got {_type_name(rec)}", row=r, line=line_of(r)
            )
        names.update(dict.fromkeys(rec))
    return {c: [rec.get(c, _MISSING) for rec in rows] for c in names}


def validate_pairs(data, source: str = "<pairs>") -> pa.Table:
    """Validate a ``pyarrow.Table``, ``datasets.Dataset``, list of row dicts or dict of columns; return the
    canonical table (see module docstring). Raises :class:`PairsFileError` naming ``source``, row and column.
    """
    if isinstance(data, pa.Table):
        return _build(_table_columns(data, source), data.num_rows, source)
    if hasattr(data, "flatten_indices") and hasattr(data, "data"):  # datasets.Dataset (respect select/shuffle)
        table = data.flatten_indices().data
        table = getattr(table, "table", table)
        return _build(_table_columns(table, source), table.num_rows, source)
    if isinstance(data, Mapping):
        cols = {str(k): list(v) for k, v in data.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) > 1:
            raise PairsFileError(source, f"columns have different lengths: { {k: len(v) for k, v in cols.items()} }")
        return _build(cols, lengths.pop() if lengths else 0, source)
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        rows = list(data)
        return _build(_rows_to_columns(rows, source), len(rows), source)
    raise TypeError(f"cannot read pairs from {type(data).__name__}; pass a pyarrow Table, Dataset, rows or columns")


# ------------------------------------------------------------------------------------------------ I/O


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "parquet"
    if suffix in (".jsonl", ".json"):
        return "jsonl"
    raise PairsFileError(path, f"unknown pairs file type {suffix or '(no suffix)'!r}; use .parquet, .jsonl or .json")


def _read_jsonl(path: Path) -> pa.Table:
    """JSON lines, read column-wise by pyarrow (memory a small multiple of the file); any problem is re-read
    row by row, which names the first bad row, its line and column exactly as the checks word it."""
    import pyarrow.json as pj

    if not _is_json_array(path):
        try:
            table = pj.read_json(path, read_options=pj.ReadOptions(block_size=_JSON_BLOCK_BYTES))
            return _build(_table_columns(table, path), table.num_rows, path)
        except UnicodeDecodeError:  # pyarrow keeps invalid UTF-8 in its strings; reading them out fails
            raise _not_utf8(path) from None
        except (pa.ArrowException, PairsFileError):
            pass
    return _read_json_rows(path)


def _first_byte(path: Path) -> bytes:
    """The file's first non-whitespace byte, or b"" for a file of whitespace only (stops reading there)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 16):
            head = chunk.lstrip()
            if head:
                return head[:1]
    return b""


def _is_json_array(path: Path) -> bool:
    """Whether a ``.json`` file holds one JSON array of records (its first non-blank character is "[")."""
    return path.suffix.lower() == ".json" and _first_byte(path) == b"["


def _not_utf8(path: Path) -> PairsFileError:
    """The first line that is not UTF-8, as its row and line: a decoder's byte offset means nothing to a user.
    Lines split at b"\n" safely (no multi-byte UTF-8 sequence contains that byte); rows skip blank lines, as the
    row reader does."""
    row = 0
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start : err.end]
                where = f"byte {bad!r} at byte {err.start + 1} of the line ({err.reason})"
                if _is_json_array(path):  # one JSON document: its records are not lines
                    return PairsFileError(path, f"not UTF-8 text at line {lineno}: {where}")
                return PairsFileError(path, f"not UTF-8 text: {where}", row=row, line=lineno)
            row += bool(text.strip())
    return PairsFileError(path, "not UTF-8 text")


def _read_json_rows(path: Path) -> pa.Table:
    from fairl_ray.text_lines import iter_lines

    try:
        if _is_json_array(path):
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise PairsFileError(path, f"malformed JSON at line {exc.lineno}: {exc.msg}") from exc
            return _build(_rows_to_columns(rows, path), len(rows), path)
        rows, lines = [], []
        for lineno, line in enumerate(iter_lines(path), start=1):  # "\n" only: U+2028 may sit inside a string
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise PairsFileError(
                    path, f"malformed JSON: {exc.msg} (char {exc.colno})", row=len(rows), line=lineno
                ) from exc
            lines.append(lineno)
    except UnicodeDecodeError:
        raise _not_utf8(path) from None
    line_of = lines.__getitem__
    return _build(_rows_to_columns(rows, path, line_of), len(rows), path, line_of)


def read_pairs(path) -> pa.Table:
    """Read and fully validate a pairs file (``.parquet``, or JSON lines ``.jsonl`` / ``.json``; a ``.json``
    file holding one JSON array of records is accepted too). Returns the canonical ``pyarrow.Table``.

    Raises:
        PairsFileError: missing/unreadable file, unknown suffix, malformed JSON, or any invalid value.
    """
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise PairsFileError(path, "no such file" if not path.exists() else "not a regular file")
    if path.stat().st_size == 0 or (kind == "jsonl" and not _first_byte(path)):
        raise PairsFileError(path, "empty file: no pairs")
    if kind == "jsonl":
        try:
            return _read_jsonl(path)
        except OSError as exc:
            raise PairsFileError(path, f"unreadable: {exc}") from exc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise PairsFileError(path, f"unreadable Parquet file: {exc}") from exc
    return _build(_table_columns(table, path), table.num_rows, path)


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return str(v)


def write_pairs(table_or_rows, path) -> Path:
    """Validate, then write pairs atomically (temporary file in the same directory, then rename).

    ``table_or_rows``: a ``pyarrow.Table``, ``datasets.Dataset``, list of row dicts or dict of columns.
    Format by suffix: ``.parquet`` or JSON lines (``.jsonl`` / ``.json``). Returns the path written.
    """
    path = Path(path)
    kind = _kind(path)
    table = validate_pairs(table_or_rows, source=str(path))
    with atomic_file(path) as tmp:
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, tmp)
        else:
            with open(tmp, "w", encoding="utf-8") as fh:
                for row in table.to_pylist():
                    fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n")
    return path


# ----------------------------------------------------------------------------------------- splitting


def test_mask(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the round(test_fraction · n) test rows of a seeded random split.

    The one place a random train/test split is drawn, so the pipeline's pairs stage, ``fairl irl`` and
    ``fairl tune --pairs`` hold out the same pairs of the same file for the same seed.
    """
    is_test = np.zeros(n, dtype=bool)
    is_test[np.random.default_rng(seed).permutation(n)[: int(round(float(test_fraction) * n))]] = True
    return is_test


def split_pairs(
    table: pa.Table, test_fraction: float = 0.2, seed: int = 0, *, by_prompt: bool = False
) -> tuple[pa.Table, pa.Table]:
    """(train, test) tables, each with a ``split`` column, rows in their original order.

    An existing ``split`` column is honoured as is (``test_fraction`` and ``seed`` are then ignored). Otherwise
    a seeded random split with round(test_fraction · N) test rows; ``by_prompt=True`` keeps all pairs of a
    prompt on one side (whole prompts are drawn until the test side reaches round(test_fraction · N) rows, so
    the fraction is approximate), which avoids prompt leakage when a prompt has several pairs.
    """
    import pyarrow.compute as pc

    if "split" in table.column_names:
        col = table.column("split")
        train = table.filter(pc.equal(col, "train"))
        test = table.filter(pc.equal(col, "test"))
        if train.num_rows + test.num_rows != table.num_rows:
            raise PairsFileError("<table>", "split column holds values other than 'train'/'test'", column="split")
        return train, test
    if not 0.0 <= float(test_fraction) <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    n = table.num_rows
    n_test = int(round(float(test_fraction) * n))
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    if by_prompt:
        prompts = table.column("prompt").to_pylist()
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p, []).append(i)
        keys = list(groups)
        taken = 0
        for g in rng.permutation(len(keys)):
            if taken >= n_test:
                break
            idx = groups[keys[g]]
            is_test[idx] = True
            taken += len(idx)
    else:
        is_test = test_mask(n, test_fraction, seed)
    labelled = table.append_column("split", pa.array(np.where(is_test, "test", "train").tolist(), type=pa.string()))
    return labelled.filter(pa.array(~is_test)), labelled.filter(pa.array(is_test))


def labels_to_binary(labels) -> tuple[np.ndarray, np.ndarray]:
    """Pairs-file labels {1, −1, 0/null} -> (classes, known): classes int8 in {0, 1} (1 = non-toxic, as the
    metrics expect; unknown rows get 0) and ``known`` a bool mask of rows whose label is ±1.
    """
    a = np.asarray(
        [0 if v is None else v for v in (labels.to_pylist() if hasattr(labels, "to_pylist") else labels)],
        dtype=np.float64,
    )
    return (a > 0).astype(np.int8), a != 0


# ------------------------------------------------------------------------------------- degenerate input


def drop_degenerate(table: pa.Table, source: str = "<pairs>") -> tuple[pa.Table, list[str]]:
    """Drop pairs that carry no preference (``chosen == rejected``) and exact duplicate rows.

    Returns the kept table and one warning per kind of row dropped, each saying what was found and what was
    done. Raises :class:`PairsFileError` when nothing would be left.
    """
    n = table.num_rows
    chosen, rejected = table.column("chosen").to_pylist(), table.column("rejected").to_pylist()
    same = [c == r for c, r in zip(chosen, rejected)]
    if all(same):
        raise PairsFileError(
            source, f"chosen == rejected in every one of the {n} pairs: there is no preference to learn a reward from"
        )
    seen: set = set()
    duplicate = []
    # Rows as tuples built column by column: a dict per row costs ~10x the file's size in memory.
    for key in zip(*(table.column(c).to_pylist() for c in table.column_names)):
        duplicate.append(key in seen)
        seen.add(key)
    keep = [not (s or d) for s, d in zip(same, duplicate)]
    warnings = []
    if any(same):
        warnings.append(f"{source}: {sum(same)} of {n} pairs have chosen == rejected (no preference); dropped them")
    n_dup = sum(d and not s for s, d in zip(same, duplicate))
    if n_dup:
        warnings.append(
            f"{source}: {n_dup} rows repeat an earlier row exactly; dropped the repeats (a repeat on "
            "both sides of the train/test split would inflate test metrics)"
        )
    return (table.filter(pa.array(keep)) if not all(keep) else table), warnings


def split_warnings(train: pa.Table, test: pa.Table, methods: Sequence[str], source: str = "<pairs>") -> list[str]:
    """Warnings about a train/test split and the methods about to train on it (nothing is changed)."""
    warnings = []
    if test.num_rows == 1:
        warnings.append(
            f"{source}: only 1 test pair; test metrics from one pair are not meaningful (raise "
            "pairs.test_fraction or bring more pairs)"
        )
    gt = [m for m in methods if m.endswith("_gt")]
    labelled = any(c in train.column_names and labels_to_binary(train.column(c))[1].any() for c in LABEL_COLUMNS)
    if gt and not labelled:
        warnings.append(
            f"{source}: {', '.join(gt)} use ground-truth failures but no train pair has a chosen_label "
            "or rejected_label; they train on margin failures only"
        )
    return warnings
