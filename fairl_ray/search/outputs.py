"""What a search leaves behind: the trial table, the best config per model (side by side), the files in
``out`` and the tables ``fairl tune`` prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from fairl_ray.irl.hyperparameters import IRLConfig
from fairl_ray.recovery.data import PairData
from fairl_ray.search.space import SearchConfig

STATUS = {"COMPLETE": "ok", "PRUNED": "pruned", "FAIL": "error", "RUNNING": "running", "WAITING": "waiting"}


def trial_rows(studies: dict, cfg: SearchConfig) -> list[dict]:
    """One plain dict per configuration of every model's study: model, trial_id (``<model>/<number>``), pack,
    status (ok / pruned / error), epochs reached, the searched values and the val metrics at that rung."""
    rows = []
    for model, study in studies.items():
        for t in study.get_trials(deepcopy=False):
            if "pack" not in t.user_attrs:  # asked and killed before it was tagged: never evaluated
                continue
            row = {
                "model": model,
                "trial_id": f"{model}/{t.number}",
                "number": t.number,
                "pack": t.user_attrs["pack"],
                "status": STATUS.get(t.state.name, t.state.name.lower()),
                "epochs": t.user_attrs.get("epochs"),
            }
            config = t.user_attrs.get("config", {})
            row.update({k: config.get(k) for k in cfg.searched})
            row.update({k: float(v) for k, v in t.user_attrs.get("metrics", {}).items()})
            rows.append(row)
    return rows


def best_of(trials: list[dict], metric: str, mode: str) -> dict | None:
    done = [t for t in trials if t["status"] == "ok" and math.isfinite(t.get(metric, float("nan")))]
    return (min if mode == "min" else max)(done, key=lambda t: t[metric]) if done else None


def write_outputs(
    out: Path, cfg: SearchConfig, models: dict[str, PairData], trials: list[dict], summary: dict, metric: str
) -> list[Path]:
    """best.json, best_irl.yaml (the primary model's), trials.csv, splits.json, search.png; with several models
    also models.md (the side-by-side table) and models/<model>/{best_irl.yaml, search.png}. Returns the files."""
    import pandas as pd
    import yaml

    files = [out / "best.json", out / "best_irl.yaml", out / "trials.csv", out / "splits.json", out / "search.png"]
    (out / "best.json").write_text(json.dumps(summary, indent=2, default=float))
    pd.DataFrame(trials).to_csv(out / "trials.csv", index=False)
    (out / "splits.json").write_text(
        json.dumps(
            {m: {"val_index": d.val_index, "test_index": d.test_index} for m, d in models.items()}
            | {"val_fraction": cfg.val_fraction, "split_seed": cfg.split_seed}
        )
    )
    several = len(models) > 1
    for model, s in summary["models"].items():
        where = out / "models" / model if several else out
        where.mkdir(parents=True, exist_ok=True)
        irl = {k: v for k, v in s["best_config"].items() if k != "method"}
        irl = {"methods": [s["best_config"].get("method", IRLConfig.method)], **irl}
        header = (
            f"# Best config of `fairl tune` search {cfg.name!r} on model {model!r} ({s['objective']} on val = "
            f"{s['best_val_objective']:.4f}).\n# Merge this irl: section into your experiment YAML "
            f"(fairl run my.yaml), or pass its keys with --set irl.<key>=<value>.\n"
        )
        (where / "best_irl.yaml").write_text(header + yaml.safe_dump({"irl": irl}, sort_keys=False))
        plot_search(
            [t for t in trials if t["model"] == model],
            cfg,
            metric,
            s["mode"],
            where / "search.png",
            f"{cfg.name} ({model})" if several else cfg.name,
        )
        if several:
            files += [where / "best_irl.yaml", where / "search.png"]
    if several:
        import shutil

        shutil.copyfile(out / "models" / summary["primary_model"] / "best_irl.yaml", out / "best_irl.yaml")
        shutil.copyfile(out / "models" / summary["primary_model"] / "search.png", out / "search.png")
        (out / "models.md").write_text(models_table(summary) + "\n")
        files.append(out / "models.md")
    return files


def models_table(summary: dict) -> str:
    """The side-by-side table: per model its best config (searched values), val objective and fresh-seed test
    objective; then the cross-model matrix (each model's best config scored on every model's val split) and
    whether one config wins everywhere."""
    from fairl_ray.report import markdown_table

    models = summary["models"]
    objective = summary["objective"]
    searched = summary["searched"]
    head = ["hyperparameter"] + list(models)
    rows = []
    for k in searched:
        rows.append([k] + [_fmt(models[m]["best_config"].get(k)) for m in models])
    rows.append([f"val {objective}"] + [f"{models[m]['best_val_objective']:.4f}" for m in models])
    rows.append(
        [f"test {objective} (fresh seeds)"]
        + [_fmt(models[m]["fresh_seed_test_metrics"].get(objective, {}).get("mean")) for m in models]
    )
    parts = [
        f"Best config per model ({objective}, {'lower' if summary['mode'] == 'min' else 'higher'} is better)\n\n"
        + markdown_table(head, rows)
    ]
    cross = summary.get("comparison")
    if cross:
        crow = [[f"best of {a}"] + [_fmt(cross["matrix"][a][b]) for b in models] for a in models]
        parts.append(
            f"Each model's best config scored on every model's val split (mean {objective} over "
            f"{len(summary['val_seeds'])} seeds)\n\n" + markdown_table(["config \\ model"] + list(models), crow)
        )
        parts.append(cross["statement"])
    return "\n\n".join(parts)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def compare_models(
    models: dict[str, PairData],
    best_configs: dict[str, dict],
    seeds: list[int],
    objective: str,
    mode: str,
    device: str,
) -> dict:
    """Every model's best config on every model's val split (per model, all the best configs × seeds train as one
    batched ensemble). ``winner``: the model whose config is best on every column, or None."""
    from fairl_ray.search.trial import evaluate_pack

    names = list(best_configs)
    matrix = {a: {} for a in names}
    for b, data in models.items():
        stats = evaluate_pack(data, [best_configs[a] for a in names], seeds, "val", device)
        for a, s in zip(names, stats):
            matrix[a][b] = s.get(objective, {}).get("mean")
    pick = min if mode == "min" else max
    col_best = {
        b: pick(
            names,
            key=lambda a: matrix[a][b] if matrix[a][b] is not None else (math.inf if mode == "min" else -math.inf),
        )
        for b in models
    }
    winners = [a for a in names if all(col_best[b] == a for b in models)]
    winner = winners[0] if winners else None
    if winner:
        statement = f"One config wins everywhere: the best config of {winner!r} is the best on every model's val split."
    else:
        statement = (
            "No single config wins everywhere: "
            + ", ".join(f"on {b} the best is {a!r}'s" for b, a in col_best.items())
            + "."
        )
    return {"matrix": matrix, "best_on": col_best, "winner": winner, "statement": statement}


def plot_search(trials: list[dict], cfg: SearchConfig, metric: str, mode: str, path: Path, title: str = "") -> None:
    """One small scatter per searched hyperparameter: the val objective of every trial against its value
    (categorical values on a labelled axis, loguniform ones on a log axis); the best trial is a red star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    done = [t for t in trials if t["status"] == "ok"]
    best = (min if mode == "min" else max)(done, key=lambda t: t[metric])
    keys = cfg.searched
    cols = min(4, len(keys))
    nrows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.0 * cols, 2.6 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        ((kind, args),) = cfg.space[key].items()
        y = [t[metric] for t in done]
        if kind == "choice":
            labels = [str(a) for a in args]
            pos = {lab: i for i, lab in enumerate(labels)}
            x = [pos[str(t[key])] for t in done]
            jitter = np.random.default_rng(0).uniform(-0.12, 0.12, len(x))
            ax.scatter(np.array(x) + jitter, y, s=18, alpha=0.7)
            ax.scatter([pos[str(best[key])]], [best[metric]], marker="*", s=140, color="tab:red", zorder=3)
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels([lab.replace("fa_irl_", "") for lab in labels], fontsize=7, rotation=20)
        else:
            ax.scatter([t[key] for t in done], y, s=18, alpha=0.7)
            ax.scatter([best[key]], [best[metric]], marker="*", s=140, color="tab:red", zorder=3)
            if kind == "loguniform":  # ticks at 1·10^k and 3·10^k, plain numbers, no crowded minor labels
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 3.0)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(keys) :]:
        ax.axis("off")
    for row in axes:
        row[0].set_ylabel(f"{metric} ({'↓' if mode == 'min' else '↑'})", fontsize=8)
    fig.suptitle(f"fairl tune {title}: {len(done)} finished configs, best = red star", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def model_table(s: dict) -> str:
    """One model: its best config, val objective, and the fresh-seed test metrics of that config."""
    from fairl_ray.report import markdown_table, metrics_table

    cfg_rows = [[k, _fmt(v)] for k, v in s["best_config"].items()]
    std = s.get("best_val_objective_std")
    val = f"{s['best_val_objective']:.4f}" + (f" ± {std:.4f}" if std is not None else "")
    method = s["best_config"].get("method", IRLConfig.method)
    t = s["trials"]
    return "\n\n".join(
        [
            f"Best of {t['ok']} finished configs ({t['pruned']} pruned, {t['failed']} failed; "
            f"trial {s['best_trial']})\n\n" + markdown_table(["hyperparameter", "value"], cfg_rows),
            f"Validation objective: {s['objective']} = {val} (mean ± std over {len(s['val_seeds'])} seeds, "
            f"{s['pairs']['val']} val pairs)",
            metrics_table({method: s["fresh_seed_test_metrics"]}, len(s["fresh_seeds"])).replace(
                "(mean ± std", f"— best config re-trained on fresh seeds {s['fresh_seeds']} (mean ± std"
            ),
        ]
    )


def summary_table(summary: dict) -> str:
    """What ``fairl tune`` prints: the best config (one model) or the side-by-side table (several), and the
    toxicity table of ``--realign-top``."""
    from fairl_ray.report import markdown_table

    if len(summary["models"]) == 1:
        parts = [model_table(next(iter(summary["models"].values())))]
    else:
        parts = [models_table(summary)]
    realign = summary.get("realign")
    if realign:
        rows = [
            [name, r.get("trial", ""), f"{r['toxicity_rate']:.3f}", f"{r['mean_rstar']:.3f}", str(r["n"])]
            for name, r in realign["toxicity"].items()
        ]
        parts.append(
            f"Toxicity after re-RLHF of a fresh π0 with each of the {realign['top']} best rewards "
            f"(held-out prompts; base and expert for reference)\n\n"
            + markdown_table(["model", "config", "toxicity rate", "mean R*", "n"], rows)
        )
    return "\n\n".join(parts)
