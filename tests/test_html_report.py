"""``fairl report`` and ``html_report.build_report``: one self-contained report.html (and report.md) rebuilt from
stored results, for a run workdir and for a study directory.

The runs here are a copy of the finished Table 1 run when this machine has it (/work/runs/table1: every analysis,
12 methods x 5 seeds) and a small hand-made workdir (a results.json plus the stage files it names) that has what
Table 1 lacks: toxicity with per-completion flags, a re-aligned model from an MLflow reward, no judge, a figure file,
and a throwaway analysis registered for the test (the report must list the registry, not names it knows).
"""

import base64
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fairl_ray.analyses import ANALYSES, Analysis
from fairl_ray.analyses.base import plt
from fairl_ray.cli import main
from fairl_ray.html_report import build_report
from fairl_ray.metrics.aggregate import bootstrap_ci, bootstrap_rate_ci, iqm
from fairl_ray.report import NO_GROUND_TRUTH, format_report

TABLE1 = Path("/work/runs/table1")
PNG = b"\x89PNG\r\n\x1a\n"


def assert_self_contained(page: str) -> int:
    """Nothing fetched from the network, and every image an inlined PNG; returns how many images there are."""
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page.split("<main>")[0] and "https://" not in page.split("<main>")[0]
    assert "<script" not in page.lower() and "<link" not in page.lower()
    images = re.findall(r"<img\b[^>]*>", page)
    for tag in images:
        src = re.search(r'src="([^"]*)"', tag).group(1)
        assert src.startswith("data:image/png;base64,"), tag[:80]
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)
    return len(images)


# -- a hand-made run -----------------------------------------------------------------------------------------------


class ProbeAnalysis(Analysis):
    """A throwaway analysis: the report must show it without knowing its name."""

    name = "probe_report"
    title = "Probe analysis for the report test"

    def tables(self, result):
        return [(f"{self.title}: counts", ["what", "count"], [[k, str(v)] for k, v in result["counts"].items()])]

    def plot(self, result, path):
        pyplot = plt()
        fig, ax = pyplot.subplots(figsize=(2, 2))
        ax.bar(list(result["counts"]), list(result["counts"].values()))
        fig.savefig(path)
        pyplot.close(fig)
        return True


@pytest.fixture
def probe_analysis():
    ANALYSES.register(ProbeAnalysis.name, ProbeAnalysis())
    yield ANALYSES.get(ProbeAnalysis.name)
    ANALYSES.unregister(ProbeAnalysis.name)


ROC = {"max_margin": [0.70, 0.74, 0.78], "fa_irl_mm_margin": [0.80, 0.81, 0.86]}


def members(shift: float = 0.0) -> list[dict]:
    rows = [
        {"method": m, "seed": s, "roc_auc": v + shift, "pair_accuracy": 0.6 + v / 4, "starc": 1 - v, "accuracy": v}
        for m, vs in ROC.items()
        for s, v in enumerate(vs)
    ]
    return rows + [{"method": "implicit_reward", "seed": 0, "roc_auc": 0.9 + shift, "pair_accuracy": 0.8}]


def per_method(rows: list[dict]) -> dict:
    out = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("method", "seed"):
                out.setdefault(r["method"], {}).setdefault(k, []).append(v)
    return {
        m: {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)} for k, v in ms.items()}
        for m, ms in out.items()
    }


def write_flags(path: Path, toxic: int, n: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"prompt": "p", "completion": f"c{i}", "rstar": 0.0, "toxic": i < toxic}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")


def fake_results(workdir: Path, shift: float = 0.0, analyses: dict | None = None) -> dict:
    rows = members(shift)
    return {
        "mlflow": {
            "tracking_uri": f"sqlite:///{workdir}/gone/mlflow.db",
            "parent_run_id": "abc123",
            "experiment_id": "1",
        },
        "workdir": str(workdir),
        "seconds": 12.5,
        "seeds": [0, 1, 2],
        "ground_truth": True,
        "implicit_reward_beta": 0.1,
        "metrics": {"per_member": rows, "per_method": per_method(rows)},
        "analyses": analyses or {},
        "toxicity": "not applicable: this world has no policy",
        "pairs": {"train": 30, "test": 10},
        "stages": {},
        "plots": {},
    }


@pytest.fixture
def made_run(tmp_path, probe_analysis):
    """A run workdir with toxicity flags (base 40/100, expert 10/100, two re-aligned models), a stored figure, no
    judge (the banner), and the probe analysis's result; ``<b>`` in a cell checks the escaping."""
    workdir = tmp_path / "run"
    results = fake_results(workdir, analyses={"probe_report": {"counts": {"<b>bold</b>": 3, "plain": 5}}})
    results["ground_truth"] = False
    stages = {
        "reference_toxicity": "stages/reference_toxicity-aa",
        "realign_max_margin": "stages/realign_max_margin-bb",
        "realign_models-fairl-max_margin-3": "stages/realign_models-fairl-max_margin-3-cc",
    }
    results["stages"] = {name: {"dir": d} for name, d in stages.items()}
    write_flags(workdir / stages["reference_toxicity"] / "base.jsonl", 40, 100)
    write_flags(workdir / stages["reference_toxicity"] / "expert.jsonl", 10, 100)
    write_flags(workdir / stages["realign_max_margin"] / "eval_completions.jsonl", 5, 100)
    write_flags(workdir / stages["realign_models-fairl-max_margin-3"] / "eval_completions.jsonl", 7, 100)
    results["toxicity"] = {
        "base": {"toxicity_rate": 0.4, "mean_rstar": -0.2, "n": 100},
        "expert": {"toxicity_rate": 0.1, "mean_rstar": 0.3, "n": 100},
        "realigned:max_margin": {"toxicity_rate": 0.05, "mean_rstar": 0.35, "n": 100},
        "realigned:models:/fairl-max_margin/3": {"toxicity_rate": 0.07, "mean_rstar": 0.33, "n": 100},
    }
    figure = workdir / "stages/evaluate-dd/reward_distributions.png"
    figure.parent.mkdir(parents=True)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    fig.savefig(figure)
    pyplot.close(fig)
    results["plots"] = {
        "reward_distributions": "stages/evaluate-dd/reward_distributions.png",
        "irl_training_curves": "stages/evaluate-dd/irl_training_curves.png",  # never drawn: left out
    }
    (workdir / "results.json").write_text(json.dumps(results))
    return workdir, results


def test_made_run_report_is_self_contained_with_cis_toxicity_and_every_registered_analysis(made_run):
    workdir, results = made_run
    html_path, md_path = build_report(workdir)
    assert (html_path, md_path) == (workdir / "report.html", workdir / "report.md")
    page = html_path.read_text()
    # the metrics figure, the toxicity bars, the probe analysis's figure, the stored reward distributions
    assert assert_self_contained(page) == 4
    assert "abc123" in page and "fairl-ray results: run" in page  # header: run name, MLflow run
    assert "No judge: R* is unknown." in page  # the banner (ground_truth False)
    # the probe analysis: title, table, and its cell escaped
    assert ProbeAnalysis.title in page and "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page
    # mean [95% CI] and IQM [95% CI] over seeds, as computed by metrics.aggregate
    roc = ROC["fa_irl_mm_margin"]
    lo, hi = bootstrap_ci(roc, np.mean)
    assert f"{np.mean(roc):.3f} [{lo:.3f}, {hi:.3f}]" in page
    lo, hi = bootstrap_ci(roc, iqm)
    assert f"{iqm(roc):.3f} [{lo:.3f}, {hi:.3f}]" in page
    assert "implicit_reward is β·(log π_E − log π0)" in page  # the implicit-reward note
    assert "FA-IRL eq. 1 (Max-Margin IRL)" in page  # the methods legend (METHOD_TABLE's words)
    # toxicity rates with their CIs over completions, read from the stage files (the models:/ one included)
    for model, toxic in (("base", 40), ("realigned:models:/fairl-max_margin/3", 7)):
        ci = bootstrap_rate_ci([True] * toxic + [False] * (100 - toxic))["ci"]
        assert (
            f'<td>{model}</td><td class="num">{toxic / 100:.1%}</td><td class="num">[{ci[0]:.1%}, {ci[1]:.1%}]' in page
        )
    markdown = md_path.read_text()
    assert markdown.startswith(format_report(results).rstrip("\n"))  # today's report.md, then the new sections
    assert "## Across seeds (rliable)" in markdown and "## Toxicity with 95% CIs" in markdown
    assert NO_GROUND_TRUTH in markdown


def test_fairl_report_command_prints_both_paths_and_logs_to_the_workdirs_own_store(made_run, capsys):
    from mlflow import MlflowClient

    workdir, results = made_run
    # results.json names a store that is gone (the run was copied): nothing is logged, with a note
    assert main(["report", str(workdir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == [str(workdir / "report.html"), str(workdir / "report.md")]
    assert "no MLflow store" in out[2]
    # the copy's own store (mlflow.db in the workdir) holds the parent run: the report is logged there
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.create_experiment("fairl", artifact_location=str(workdir / "mlartifacts"))
    parent = client.create_run(experiment).info.run_id
    results["mlflow"]["parent_run_id"] = parent
    (workdir / "results.json").write_text(json.dumps(results))
    assert main(["report", str(workdir)]) == 0
    assert "logged report.html, report.md" in capsys.readouterr().out
    assert {a.path for a in client.list_artifacts(parent)} >= {"report.html", "report.md"}
    # --out writes elsewhere and logs nothing; a directory without results is refused
    assert main(["report", str(workdir), "--out", str(workdir / "elsewhere")]) == 0
    assert (workdir / "elsewhere" / "report.html").is_file()
    assert main(["report", str(workdir / "stages")]) == 2
    assert "neither a run workdir" in capsys.readouterr().err


def test_help_teaches_what_report_reads_and_writes(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "study.json" in text and "report.html" in text and "--out DIR" in text
    assert "interquartile mean" in text and "MLflow parent run" in text


# -- the Table 1 run --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table1_report(tmp_path_factory):
    """Table 1's results.json, config and stored figures copied (nothing is written into the original)."""
    if not (TABLE1 / "results.json").is_file():
        pytest.skip(f"{TABLE1} is not on this machine")
    copy = tmp_path_factory.mktemp("table1")
    results = json.loads((TABLE1 / "results.json").read_text())
    for name in ["results.json", "config.yaml", *results["plots"].values()]:
        if (TABLE1 / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(TABLE1 / name, copy / name)
    html_path, md_path = build_report(copy)
    return results, html_path, md_path


def test_table1_report_has_every_analysis_and_table(table1_report):
    results, html_path, md_path = table1_report
    page = html_path.read_text()
    n_images = assert_self_contained(page)
    analyses = [a for name, a in ANALYSES.items() if name in results["analyses"]]
    assert len(analyses) >= 7
    for analysis in analyses:
        assert f"<h3>{html.escape(analysis.title)}</h3>" in page
    drawn = sum(bool(a.plot(results["analyses"][a.name], html_path.parent / "probe.png")) for a in analyses)
    assert n_images == 1 + drawn + 2  # the metrics figure, each analysis's, reward distributions and curves
    assert page.count("<table>") >= 10
    assert "held-out ROC-AUC IQM [95% CI]" in page  # Table 1 has held-out texts
    assert "Toxicity on held-out prompts: not applicable" in page and "No judge" not in page
    assert md_path.read_text().startswith(format_report(results).rstrip("\n"))


# -- a study ------------------------------------------------------------------------------------------------------


def test_study_report_draws_each_axis_and_tabulates_the_same_numbers(tmp_path):
    margins, encoders = [0.5, 1.0, 2.0], ["tfidf", "minilm"]
    variants = []
    for i, margin in enumerate(margins):
        workdir = tmp_path / "runs" / f"m{i}"
        workdir.mkdir(parents=True)
        (workdir / "results.json").write_text(json.dumps(fake_results(workdir, shift=0.01 * i)))
        variants.append({"name": f"margin {margin}", "overrides": {"irl.margin": margin}, "workdir": f"runs/m{i}"})
    for i, encoder in enumerate(encoders):
        workdir = tmp_path / f"enc{i}"  # an absolute workdir
        workdir.mkdir()
        (workdir / "results.json").write_text(json.dumps(fake_results(workdir, shift=-0.02 * i)))
        variants.append({"name": encoder, "overrides": {"features.encoder": encoder}, "workdir": str(workdir)})
    study = {"name": "margin & encoder", "axes": {"irl.margin": margins, "features.encoder": encoders},
             "variants": variants}  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps(study))
    html_path, md_path = build_report(tmp_path)
    page, markdown = html_path.read_text(), md_path.read_text()
    assert assert_self_contained(page) == 2  # one figure per axis
    assert "fairl-ray study: margin &amp; encoder" in page
    assert "<h2>Axis: irl.margin</h2>" in page and "<h2>Axis: features.encoder</h2>" in page
    # the numbers behind the curves: fa_irl_mm_margin at margin 2.0 (shift 0.02), over its three seeds
    roc = np.array(ROC["fa_irl_mm_margin"]) + 0.02
    lo, hi = bootstrap_ci(roc, np.mean)
    cell = f"{roc.mean():.3f} ± {roc.std():.3f} [{lo:.3f}, {hi:.3f}]"
    assert cell in page and cell in markdown
    assert re.search(r"\| 2\.0\s+\| fa_irl_mm_margin\s+\| " + re.escape(cell), markdown)
    # STARC is present, held-out ROC-AUC is not (no variant has it)
    assert "STARC l1/l1 ↓ mean ± std" in markdown and "held-out" not in markdown
    assert "## Axis: features.encoder" in markdown and "| minilm" in markdown


def test_study_with_a_missing_variant_names_it(tmp_path):
    study = {"name": "s", "axes": {"irl.margin": [1.0]},
             "variants": [{"name": "lost", "overrides": {"irl.margin": 1.0}, "workdir": "nowhere"}]}  # fmt: skip
    (tmp_path / "study.json").write_text(json.dumps(study))
    with pytest.raises(ValueError, match="'lost'"):
        build_report(tmp_path)


# -- a browser ----------------------------------------------------------------------------------------------------


def test_chromium_renders_the_report_without_console_errors(made_run, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from PIL import Image

    workdir, _ = made_run
    html_path, _ = build_report(workdir)
    shot = tmp_path / "shot.png"
    flags = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    done = subprocess.run(
        flags + [f"--screenshot={shot}", "--window-size=1280,4000", html_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    dom = subprocess.run(flags + ["--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=90)
    for log in (done.stderr, dom.stderr):
        console = [line for line in log.splitlines() if "ERROR:CONSOLE" in line or "Uncaught" in line]
        assert not console, console
    assert "Probe analysis for the report test" in dom.stdout  # the page was parsed and laid out
    assert shot.is_file()
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (4000, 1280)
    assert pixels.std() > 5 and (pixels < 100).mean() > 0.001  # text and figures, not a blank page
