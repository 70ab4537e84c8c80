"""Features h(o) for every pair text, from a frozen encoder, cached per (encoder, text) (DESIGN §2, §4).

The IRL engine never sees text: this stage turns the pairs table into two aligned arrays, ``chosen`` and
``rejected`` (N × d, float32, safetensors). The per-text cache lives outside the stage directory
(``<workdir>/cache/features``) so that a new pairs set reuses every text it shares with an old one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fairl_ray.features import encode_cached, load_encoder

FEATURES_FILE = "features.safetensors"


def featurize_pairs(rows: list[dict], encoder_spec: str, cache_dir: Path, out_dir: Path, batch_size: int = 256) -> dict:
    """Encode ``chosen`` and ``rejected`` of every row; write ``features.safetensors``; return a summary."""
    encoder = load_encoder(encoder_spec, batch_size=batch_size)
    texts = [r["chosen"] for r in rows] + [r["rejected"] for r in rows]
    features = encode_cached(encoder, texts, cache_dir, progress=True)
    n = len(rows)
    save_file(
        {
            "chosen": torch.from_numpy(np.ascontiguousarray(features[:n], dtype=np.float32)),
            "rejected": torch.from_numpy(np.ascontiguousarray(features[n:], dtype=np.float32)),
        },
        str(out_dir / FEATURES_FILE),
    )
    return {"encoder": encoder.name, "dim": int(features.shape[1]), "pairs": n, "unique_texts": len(set(texts))}


def load_pair_features(stage_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    tensors = load_file(str(Path(stage_dir) / FEATURES_FILE))
    return tensors["chosen"].numpy(), tensors["rejected"].numpy()
