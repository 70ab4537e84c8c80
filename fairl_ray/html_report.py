"""One self-contained HTML report (and a markdown one beside it), rebuilt from a finished run's stored results.

:func:`build_report` reads a run workdir (``results.json``) or a study directory (``study.json``: several runs that
each change some config keys) and writes ``report.html`` and ``report.md``. Nothing is recomputed but statistics
over the stored numbers: every figure is drawn with matplotlib (Agg) from ``results.json``, the stage files it
names, and each analysis's own ``plot``, and inlined as a base64 PNG, so the file opens anywhere, offline, alone
(no CDN, no external CSS, JS or fonts). Across seeds the report gives what the RL community reports (``rliable``):
the mean with a bootstrap 95% CI and the interquartile mean with its CI (:mod:`fairl_ray.metrics.aggregate`).

The analyses are read from the ``ANALYSES`` registry, so a new analysis appears here without editing this module.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np

from fairl_ray.analyses import ANALYSES
from fairl_ray.analyses.base import plt
from fairl_ray.irl.methods import METHOD_TABLE
from fairl_ray.metrics.aggregate import bootstrap_ci, bootstrap_rate_ci, iqm
from fairl_ray.report import (
    COLUMNS,
    HELDOUT_COLUMNS,
    NO_GROUND_TRUTH,
    drop_empty_columns,
    format_report,
    implicit_reward_note,
    markdown_table,
    mean_std,
)

__all__ = ["KEY_METRICS", "build_report", "run_report", "study_report"]

_TITLES = dict(COLUMNS + HELDOUT_COLUMNS)
#: the metrics each method is summarised by across seeds (CI and IQM columns, the error-bar figure, study curves):
#: (results key, title, higher is better)
KEY_METRICS = (
    ("roc_auc", _TITLES["roc_auc"], True),
    ("pair_accuracy", _TITLES["pair_accuracy"], True),
    ("starc", _TITLES["starc"], False),
    ("heldout_roc_auc", _TITLES["heldout_roc_auc"], True),
)

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       margin: 0; background: #fafafa; }
main { max-width: 1150px; margin: 0 auto; padding: 1.5em 2em 4em; background: #fff; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
h2 { font-size: 1.3em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
.meta { color: #555; font-size: .92em; }
.banner { background: #fff4d6; border: 1px solid #e0b84a; padding: .7em 1em; border-radius: 4px; }
.note { color: #444; font-size: .93em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .86em; }
caption { text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { margin: 1em 0 1.6em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .82em; }
"""


def build_report(path, out_dir=None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for ``path`` (a run workdir holding ``results.json``, or a study
    directory holding ``study.json``) into ``out_dir`` (default ``path`` itself); returns the two paths.

    Raises ``ValueError`` when ``path`` holds neither file."""
    path = Path(path)
    out = Path(out_dir) if out_dir is not None else path
    if (path / "study.json").is_file():
        page_html, page_md = study_report(path)
    elif (path / "results.json").is_file():
        page_html, page_md = run_report(path)
    else:
        raise ValueError(f"{path}: neither a run workdir (results.json) nor a study directory (study.json)")
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(page_html, encoding="utf-8")
    md_path.write_text(page_md, encoding="utf-8")
    return html_path, md_path


# -- the page ---------------------------------------------------------------------------------------------------


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _is_number_cell(value) -> bool:
    return bool(re.match(r"^[\s+\-−[]?[\d.]+(%|,| ±| \[|]|$)", str(value))) or str(value) in ("n/a", "[n/a]")


class Page:
    """The HTML body, built section by section; every text passes through :func:`html.escape`."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{_esc(text)}</h{level}>")

    def para(self, text: str, cls: str = "") -> None:
        # the one markup the project's texts use is **bold** (report.NO_GROUND_TRUTH): keep it, escape the rest
        body = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", _esc(text))
        self.parts.append(f'<p class="{cls}">{body}</p>' if cls else f"<p>{body}</p>")

    def raw(self, fragment: str) -> None:
        """An already-escaped fragment (built here from escaped parts)."""
        self.parts.append(fragment)

    def table(self, caption: str, header: list, rows: list[list]) -> None:
        head = "".join(f"<th>{_esc(h)}</th>" for h in header)
        body = "".join(
            "<tr>"
            + "".join(
                f'<td class="num">{_esc(c)}</td>' if i and _is_number_cell(c) else f"<td>{_esc(c)}</td>"
                for i, c in enumerate(row)
            )
            + "</tr>"
            for row in rows
        )
        self.parts.append(
            f'<div class="scroll"><table><caption>{_esc(caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )

    def figure(self, png: bytes | None, caption: str) -> None:
        if not png:
            return
        data = base64.b64encode(png).decode("ascii")
        self.parts.append(
            f'<figure><img alt="{_esc(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )

    def render(self) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(self.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
            + "\n".join(self.parts)
            + "\n</main>\n</body>\n</html>\n"
        )


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt().close(fig)
    return buffer.getvalue()


def _file_png(path: Path) -> bytes | None:
    """A stored figure's bytes, or None when it is missing (a run without plots) or not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def _analysis_png(analysis, result: dict) -> bytes | None:
    """The analysis's own figure (``Analysis.plot``), drawn into a scratch file and read back."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / f"{analysis.name}.png"
        return _file_png(target) if analysis.plot(result, target) else None


# -- statistics over seeds --------------------------------------------------------------------------------------


def _number(value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def seed_values(per_member: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """``{method: {metric: values over its seeds}}`` from results.json's ``metrics.per_member`` (one row per method
    and seed; a missing or null metric is nan)."""
    out: dict[str, dict[str, list[float]]] = {}
    for row in per_member:
        metrics = out.setdefault(row["method"], {})
        for key, value in row.items():
            if key not in ("method", "seed"):
                metrics.setdefault(key, []).append(_number(value))
    return {m: {k: np.asarray(v, dtype=np.float64) for k, v in ms.items()} for m, ms in out.items()}


def summarise(values) -> dict:
    """Mean, std, 95% bootstrap CI of the mean, IQM and its 95% bootstrap CI, over the finite ``values``."""
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "ci": (math.nan, math.nan), "iqm": math.nan,
                "iqm_ci": (math.nan, math.nan)}  # fmt: skip
    return {
        "n": int(len(a)),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "ci": bootstrap_ci(a, np.mean),
        "iqm": iqm(a),
        "iqm_ci": bootstrap_ci(a, iqm),
    }


def _interval(ci) -> str:
    lo, hi = ci
    return f"[{lo:.3f}, {hi:.3f}]" if math.isfinite(lo) and math.isfinite(hi) else "[n/a]"


def _value_ci(value: float, ci) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f} {_interval(ci)}"


def present_metrics(values: dict[str, dict[str, np.ndarray]]) -> list[tuple[str, str, bool]]:
    """The :data:`KEY_METRICS` some method has a finite value of (no STARC without R*, no held-out columns without
    held-out texts)."""
    return [
        km
        for km in KEY_METRICS
        if any(np.isfinite(metrics.get(km[0], np.array([]))).any() for metrics in values.values())
    ]


# -- a run ------------------------------------------------------------------------------------------------------


def recovery_table(results: dict, values: dict, keys: list) -> tuple[str, list[str], list[list[str]]]:
    """report.md's recovery table (mean ± std over seeds) with a 95% CI column of the mean after each key metric."""
    per_method = results["metrics"]["per_method"]
    columns = COLUMNS + (HELDOUT_COLUMNS if any("heldout_accuracy" in m for m in per_method.values()) else ())
    key_set = {k for k, _, _ in keys}
    header, rows = ["method"], []
    for key, title in columns:
        header.append(title)
        if key in key_set:
            header.append(f"{title} 95% CI")
    for method, metrics in per_method.items():
        row = [method]
        for key, _ in columns:
            row.append(mean_std(metrics.get(key)))
            if key in key_set:
                row.append(_interval(summarise(values.get(method, {}).get(key, [])).get("ci")))
        rows.append(row)
    n_seeds = len(results.get("seeds", []))
    title = (
        f"Reward recovery on held-out test pairs (mean ± std over {n_seeds} seeds; 95% CI: percentile bootstrap of "
        "the mean over seeds)"
    )
    return (title, *drop_empty_columns(header, rows))


def aggregate_table(values: dict, keys: list) -> tuple[str, list[str], list[list[str]]]:
    """Per method and key metric: mean [95% CI] and IQM [95% CI] over seeds (rliable)."""
    header = ["method", "seeds"]
    for _, title, _ in keys:
        header += [f"{title} mean [95% CI]", f"{title} IQM [95% CI]"]
    rows = []
    for method, metrics in values.items():
        n = max((int(np.isfinite(v).sum()) for v in metrics.values()), default=0)
        row = [method, str(n)]
        for key, _, _ in keys:
            s = summarise(metrics.get(key, []))
            row += [_value_ci(s["mean"], s["ci"]), _value_ci(s["iqm"], s["iqm_ci"])]
        rows.append(row)
    title = (
        "Key metrics across seeds: mean and interquartile mean (IQM, the mean of the middle 50% of seeds), each with "
        "a 95% percentile-bootstrap CI over seeds (2000 resamples; n/a with one seed)"
    )
    return title, header, rows


def metrics_figure(values: dict, keys: list) -> bytes | None:
    """One panel per key metric: each method's mean over seeds with its 95% bootstrap CI as error bars."""
    if not keys or not values:
        return None
    pyplot = plt()
    methods = list(values)
    fig, axes = pyplot.subplots(
        1, len(keys), figsize=(3.6 * len(keys), 0.32 * len(methods) + 1.4), squeeze=False, sharey=True
    )
    y = np.arange(len(methods))[::-1]
    for ax, (key, title, higher) in zip(axes[0], keys):
        stats = [summarise(values[m].get(key, [])) for m in methods]
        means = np.array([s["mean"] for s in stats])
        lo = np.array([s["mean"] - s["ci"][0] if math.isfinite(s["ci"][0]) else 0.0 for s in stats])
        hi = np.array([s["ci"][1] - s["mean"] if math.isfinite(s["ci"][1]) else 0.0 for s in stats])
        ok = np.isfinite(means)
        ax.errorbar(means[ok], y[ok], xerr=[lo[ok], hi[ok]], fmt="o", ms=4, capsize=3, color="tab:blue")
        ax.set_title(f"{title} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=8)
    axes[0][0].set_yticks(y, methods)
    fig.tight_layout()
    return _png(fig)


def _toxicity_flags(workdir: Path, stages: dict, model: str) -> list[bool] | None:
    """Per-completion toxic flags of one model of results["toxicity"]: base / expert from the reference_toxicity
    stage, ``realigned:<reward>`` from its re-RLHF stage's eval_completions.jsonl. None when the file is gone."""
    if model in ("base", "expert"):
        stage, name = "reference_toxicity", f"{model}.jsonl"
    elif model.startswith("realigned:"):
        # the re-RLHF stage of a reward is realign_<reward> with the characters a directory name cannot hold
        # replaced (orchestration.pipeline.realign_stage_name): match on letters and digits only
        want = re.sub(r"[^A-Za-z0-9]", "", "realign" + model.split(":", 1)[1])
        stage = next((s for s in stages if re.sub(r"[^A-Za-z0-9]", "", s) == want), None)
        name = "eval_completions.jsonl"
    else:
        return None
    if stage not in stages:
        return None
    path = workdir / stages[stage]["dir"] / name
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    return [bool(json.loads(line)["toxic"]) for line in lines if line.strip()]


def toxicity_rows(workdir: Path, results: dict) -> list[dict]:
    """One row per model of results["toxicity"]: its rate with a 95% bootstrap CI over completions."""
    rows = []
    for model, t in results["toxicity"].items():
        flags = _toxicity_flags(workdir, results.get("stages", {}), model)
        ci = bootstrap_rate_ci(flags) if flags else {"rate": t["toxicity_rate"], "ci": [math.nan, math.nan]}
        rows.append({"model": model, "rate": t["toxicity_rate"], "ci": ci["ci"], "mean_rstar": t["mean_rstar"],
                     "n": t["n"]})  # fmt: skip
    return rows


def _pct_ci(ci) -> str:
    lo, hi = ci
    return f"[{lo:.1%}, {hi:.1%}]" if math.isfinite(lo) and math.isfinite(hi) else "[n/a]"


def toxicity_figure(rows: list[dict]) -> bytes | None:
    if not rows:
        return None
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(max(4.0, 1.3 * len(rows) + 1.5), 3.2))
    x = np.arange(len(rows))
    rates = np.array([r["rate"] for r in rows])
    err = np.array(
        [[r["rate"] - r["ci"][0], r["ci"][1] - r["rate"]] if math.isfinite(r["ci"][0]) else [0.0, 0.0] for r in rows]
    ).T
    colours = ["tab:gray" if r["model"] == "base" else "tab:red" if r["model"] == "expert" else "tab:green"
               for r in rows]  # fmt: skip
    ax.bar(x, rates, yerr=err, capsize=4, color=colours, alpha=0.85)
    ax.set_xticks(x, [r["model"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("toxicity rate")
    from matplotlib.ticker import PercentFormatter

    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_title("Toxicity on held-out prompts (95% bootstrap CI over completions)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _finished_at(workdir: Path) -> str:
    try:
        stamp = (workdir / "results.json").stat().st_mtime
    except OSError:
        return "?"
    return datetime.datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def run_report(workdir) -> tuple[str, str]:
    """The HTML page and the markdown of one run's ``results.json`` (in ``workdir``)."""
    workdir = Path(workdir)
    results = json.loads((workdir / "results.json").read_text())
    values = seed_values(results["metrics"].get("per_member", []))
    keys = present_metrics(values)
    name = workdir.resolve().name
    mlflow = results.get("mlflow", {})
    page = Page(f"fairl-ray report: {name}")
    md: list[str] = [format_report(results).rstrip("\n")]

    page.heading(f"fairl-ray results: {name}", 1)
    page.para(
        f"Run {name} · results written {_finished_at(workdir)} · MLflow run {mlflow.get('parent_run_id', '?')} "
        f"({mlflow.get('tracking_uri', '?')}) · seeds {results.get('seeds', [])} · pairs "
        f"{results.get('pairs', {}).get('train', '?')} train / {results.get('pairs', {}).get('test', '?')} test · "
        f"wall time {results.get('seconds', '?')} s",
        "meta",
    )
    if results.get("ground_truth") is False:
        page.para(NO_GROUND_TRUTH, "banner")

    page.heading("Reward recovery")
    page.table(*recovery_table(results, values, keys))
    ties = next(
        (m["rstar_pair_ties"]["mean"] for m in results["metrics"]["per_method"].values() if "rstar_pair_ties" in m),
        None,
    )
    if ties is not None:
        page.para(f"R* agreement leaves out {ties:.0f} test pairs tied in R* (|ΔR*| ≤ 1e-9).", "note")
    aggregate = aggregate_table(values, keys)
    page.table(*aggregate)
    page.figure(metrics_figure(values, keys), "Key metrics per method: mean over seeds, 95% bootstrap CI as bars.")
    md.append("## Across seeds (rliable)\n\n" + aggregate[0] + "\n\n" + markdown_table(*aggregate[1:]))

    legend = [[m, METHOD_TABLE[m].paper] for m in results["metrics"]["per_method"] if m in METHOD_TABLE]
    if legend:
        page.heading("Methods")
        page.table("What each method is", ["method", "what it is"], legend)
    note = implicit_reward_note(results["metrics"]["per_method"], results.get("implicit_reward_beta"))
    if note:
        page.para(note, "note")

    page.heading("Toxicity")
    if isinstance(results.get("toxicity"), str):
        page.para(f"Toxicity on held-out prompts: {results['toxicity']}", "note")
    elif results.get("toxicity"):
        rows = toxicity_rows(workdir, results)
        header = ["model", "toxicity rate", "95% CI (bootstrap over completions)", "mean R*", "completions"]
        table = [[r["model"], f"{r['rate']:.1%}", _pct_ci(r["ci"]), f"{r['mean_rstar']:+.3f}", str(r["n"])]
                 for r in rows]  # fmt: skip
        caption = "Toxicity on held-out prompts (same prompts and sampling seed for every model)"
        page.table(caption, header, table)
        page.figure(toxicity_figure(rows), "Toxicity rate of base, expert and each re-aligned model.")
        md.append(f"## Toxicity with 95% CIs\n\n{caption}\n\n" + markdown_table(header, table))

    analyses = results.get("analyses") or {}
    if analyses:
        page.heading("Failure analyses (FA-IRL §6)")
    for analysis_name, analysis in ANALYSES.items():
        if analysis_name not in analyses:
            continue
        result = analyses[analysis_name]
        page.heading(analysis.title, 3)
        tables = [(t, h, r) for t, h, r in analysis.tables(result) if r]
        for title, header, rows in tables:
            page.table(title, *drop_empty_columns(header, rows))
        page.figure(_analysis_png(analysis, result), analysis.title)
        if not tables:
            page.para("Nothing to show in this run.", "note")

    plots = results.get("plots") or {}
    figures = [
        (_file_png(workdir / plots[key]) if plots.get(key) else None, caption)
        for key, caption in (
            ("reward_distributions", "Recovered rewards over o+ (expert) and o− (base) test outputs, beside R*."),
            ("irl_training_curves", "IRL training curves."),
        )
    ]
    if any(png for png, _ in figures):
        page.heading("Reward distributions and training")
        for png, caption in figures:
            page.figure(png, caption)

    config = workdir / "config.yaml"
    if config.is_file():
        page.heading("Configuration")
        page.raw(f"<details><summary>config.yaml</summary><pre>{_esc(config.read_text())}</pre></details>")
    return page.render(), "\n\n".join(md) + "\n"


# -- a study ----------------------------------------------------------------------------------------------------


def load_study(directory: Path) -> dict:
    """study.json with each variant's results loaded (``variant["results"]``); a relative workdir is read from
    ``directory``. Raises ``ValueError`` naming a variant whose results.json is missing."""
    study = json.loads((directory / "study.json").read_text())
    for variant in study.get("variants", []):
        workdir = Path(variant["workdir"])
        workdir = workdir if workdir.is_absolute() else directory / workdir
        path = workdir / "results.json"
        if not path.is_file():
            raise ValueError(f"study variant {variant.get('name')!r}: no results.json in {workdir}")
        variant["results"] = json.loads(path.read_text())
    return study


def axis_points(study: dict, axis: str) -> list[tuple[object, dict]]:
    """``(axis value, variant)`` of every variant that sets ``axis``, in the order of the axis's values."""
    order = list(study.get("axes", {}).get(axis, []))
    points = [(v["overrides"][axis], v) for v in study.get("variants", []) if axis in v.get("overrides", {})]
    rank = lambda value: order.index(value) if value in order else len(order)  # noqa: E731
    return sorted(points, key=lambda p: rank(p[0]))


def axis_stats(points) -> tuple[list, dict, list]:
    """``(x values, {method: {metric: [summary per x]}}, key metrics present)`` over one axis's variants."""
    xs = [x for x, _ in points]
    per_point = [seed_values(v["results"]["metrics"].get("per_member", [])) for _, v in points]
    merged: dict[str, dict[str, np.ndarray]] = {}
    for values in per_point:
        for method, metrics in values.items():
            merged.setdefault(method, {}).update({k: v for k, v in metrics.items() if np.isfinite(v).any()})
    keys = present_metrics(merged)
    methods = list(dict.fromkeys(m for values in per_point for m in values))
    stats = {
        m: {key: [summarise(values.get(m, {}).get(key, [])) for values in per_point] for key, _, _ in keys}
        for m in methods
    }
    return xs, stats, keys


def axis_figure(axis: str, xs: list, stats: dict, keys: list) -> bytes | None:
    """One panel per key metric: each method's mean against the axis value, with a ± std band over seeds."""
    if not keys or not xs:
        return None
    pyplot = plt()
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    pos = np.asarray(xs, dtype=np.float64) if numeric else np.arange(len(xs), dtype=np.float64)
    fig, axes = pyplot.subplots(1, len(keys), figsize=(3.9 * len(keys), 3.3), squeeze=False)
    # one colour per method in every panel, and one legend of them all (a method may lack a panel's metric)
    colours = {m: pyplot.get_cmap("tab10" if len(stats) <= 10 else "tab20")(i) for i, m in enumerate(stats)}
    handles = {}
    for ax, (key, title, higher) in zip(axes[0], keys):
        for method, by_key in stats.items():
            mean = np.array([s["mean"] for s in by_key[key]])
            std = np.nan_to_num(np.array([s["std"] for s in by_key[key]]))
            if not np.isfinite(mean).any():
                continue
            (handles[method],) = ax.plot(pos, mean, marker="o", ms=3, label=method, color=colours[method])
            ax.fill_between(pos, mean - std, mean + std, color=colours[method], alpha=0.15)
        ax.set_title(f"{title} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.set_xlabel(axis, fontsize=8)
        if not numeric:
            ax.set_xticks(pos, [str(x) for x in xs], fontsize=7)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][-1].legend(
        [handles[m] for m in stats if m in handles],
        [m for m in stats if m in handles],
        fontsize=7,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
    )
    fig.tight_layout()
    return _png(fig)


def axis_table(axis: str, xs: list, stats: dict, keys: list) -> tuple[str, list[str], list[list[str]]]:
    header = [axis, "method"] + [f"{title} mean ± std [95% CI]" for _, title, _ in keys]
    rows = []
    for i, x in enumerate(xs):
        for method, by_key in stats.items():
            cells = []
            for key, _, _ in keys:
                s = by_key[key][i]
                cells.append(
                    f"{s['mean']:.3f} ± {s['std']:.3f} {_interval(s['ci'])}" if math.isfinite(s["mean"]) else "n/a"
                )
            if any(c != "n/a" for c in cells):
                rows.append([str(x), method, *cells])
    title = f"{axis}: each method's key metrics over seeds (mean ± std, 95% bootstrap CI of the mean)"
    return title, header, rows


def study_report(directory) -> tuple[str, str]:
    """The HTML page and the markdown of a study directory (``study.json`` and its variants' results)."""
    directory = Path(directory)
    study = load_study(directory)
    name = study.get("name") or directory.resolve().name
    page = Page(f"fairl-ray study: {name}")
    md = [f"# fairl-ray study: {name}"]
    page.heading(f"fairl-ray study: {name}", 1)
    variants = study.get("variants", [])
    page.para(f"{len(variants)} variants over {len(study.get('axes', {}))} axes · report built "
              f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}", "meta")  # fmt: skip
    header = ["variant", "overrides", "workdir", "MLflow run", "seeds"]
    rows = [
        [
            v.get("name", "?"),
            ", ".join(f"{k}={json.dumps(val)}" for k, val in v.get("overrides", {}).items()),
            v["workdir"],
            v["results"].get("mlflow", {}).get("parent_run_id", "?"),
            str(len(v["results"].get("seeds", []))),
        ]
        for v in variants
    ]
    page.table("Variants", header, rows)
    md.append("Variants\n\n" + markdown_table(header, rows))
    if any(v["results"].get("ground_truth") is False for v in variants):
        page.para(NO_GROUND_TRUTH, "banner")
    for axis in study.get("axes", {}):
        points = axis_points(study, axis)
        page.heading(f"Axis: {axis}")
        md.append(f"## Axis: {axis}")
        if not points:
            page.para("No variant sets this key.", "note")
            continue
        xs, stats, keys = axis_stats(points)
        page.figure(axis_figure(axis, xs, stats, keys), f"Key metrics against {axis}: mean over seeds, ± std band.")
        table = axis_table(axis, xs, stats, keys)
        page.table(*table)
        md.append(f"{table[0]}\n\n{markdown_table(*table[1:])}")
    return page.render(), "\n\n".join(md) + "\n"
