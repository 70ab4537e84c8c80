"""Features h(o) of every pair text from a frozen encoder, cached per (encoder, text) (DESIGN §2, §4).

The IRL engine never sees text: :func:`featurize` turns a pairs table into :class:`~fairl_ray.recovery.data.PairData`
(the table plus two aligned arrays ``chosen`` and ``rejected``, N × d float32). The per-text cache lives outside
any run's folder (the pipeline's ``<workdir>/cache/features``), so a new pairs set reuses every text it shares
with an old one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from fairl_ray.recovery.data import PairData


def featurize(
    table: pa.Table, encoder: str, cache_dir: Path, batch_size: int = 256, progress: bool = True, source: str = ""
) -> PairData:
    """Encode ``chosen`` and ``rejected`` of every row with the encoder spec ``encoder``
    (``features.load_encoder``), through the cache in ``cache_dir``; the split masks come from the table's
    ``split`` column (:meth:`PairData.from_table`). The data's ``encoder`` is the loaded encoder's name."""
    from fairl_ray.features import encode_cached, load_encoder

    model = load_encoder(encoder, batch_size=batch_size)
    # Column lists, not row dicts: the texts are the only strings that need to be Python objects here.
    texts = table.column("chosen").to_pylist() + table.column("rejected").to_pylist()
    features = encode_cached(model, texts, cache_dir, progress=progress)
    n = table.num_rows
    return PairData.from_table(table, features[:n], features[n:], model.name, source)


def features_summary(data: PairData) -> dict:
    """What the features stage reports: encoder name, feature dim, pairs and distinct texts."""
    texts = pa.chunked_array(data.table.column("chosen").chunks + data.table.column("rejected").chunks)
    return {"encoder": data.encoder, "dim": data.dim, "pairs": len(data), "unique_texts": len(pc.unique(texts))}
