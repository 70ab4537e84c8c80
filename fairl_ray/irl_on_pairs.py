"""``fairl irl``: IRL on a user's own pairs file, outside the pipeline (features → batched IRL → evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

from fairl_ray.analyses import SUBTYPE_TRANSFER, write_outputs
from fairl_ray.stages.evaluate import evaluate_rewards
from fairl_ray.stages.irl_fit import featurize_table, fit_rewards, resolve_device


def run_irl_on_pairs(table, cfg, out_dir: Path) -> dict:
    """``fairl irl``: features → batched IRL → evaluation on a user's (already validated) pairs table.

    Uses the pipeline config's ``features``, ``irl``, ``seeds`` and ``pairs.test_fraction`` / ``pairs.seed``.
    A ``split`` column is honoured; without one a seeded test split is held out. Writes ``rewards/``,
    ``features.safetensors``, ``metrics.json``, the failure analyses (``analyses.json``, CSVs, figures; the
    cross-subtype transfer when pairs carry a ``subtype``) and the plots into ``out_dir``; returns the summary.
    """
    out_dir = Path(out_dir)
    rows, chosen, rejected, encoder = featurize_table(table, cfg, out_dir, out_dir / "feature_cache")
    members = cfg.irl.member_configs(list(cfg.seeds))
    fitted = fit_rewards(rows, chosen, rejected, members, encoder, out_dir, cfg.irl.device)
    summary = evaluate_rewards(rows, chosen, rejected, out_dir, fitted["members"], out_dir)
    if any(r.get("subtype") for r in rows):  # FA-IRL §6 cross-subtype transfer, first seed
        transfer = SUBTYPE_TRANSFER.train_and_score(
            rows, chosen, rejected, cfg.irl.member_configs(list(cfg.seeds)[:1]), resolve_device(cfg.irl.device)
        )
        write_outputs(SUBTYPE_TRANSFER, transfer, out_dir)
        summary.setdefault("analyses", {})[SUBTYPE_TRANSFER.name] = transfer
        (out_dir / "analyses.json").write_text(json.dumps(summary["analyses"], indent=2))
    return summary
