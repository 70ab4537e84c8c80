"""The fairl command as a user meets it: help, config errors before any work, print-config."""

import subprocess
import sys

import pytest


def fairl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fairl_ray.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


@pytest.mark.parametrize(
    "override, key",
    [
        ("irl.bogus=1", "irl.bogus"),
        ("irl.margin=-1", "irl.margin"),
        ("irl.methods=[nope]", "irl.methods"),
        ("expert_rlhf.max_steps=abc", "expert_rlhf.max_steps"),
        ("bogus.section.key=1", "bogus"),
    ],
)
def test_bad_config_exits_nonzero_naming_the_key_and_starts_nothing(tmp_path, override, key):
    workdir = tmp_path / "run"
    result = fairl("run", "--set", override, "--workdir", str(workdir))
    assert result.returncode != 0
    assert key in result.stderr
    assert not workdir.exists()  # no MLflow store, no Ray temp, no stage written


def test_missing_config_file_is_reported(tmp_path):
    result = fairl("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "not found" in result.stderr


def test_print_config_shows_resolved_values():
    result = fairl("run", "--print-config", "--set", "irl.margin=1.5", "--set", "seeds=[4,5]")
    assert result.returncode == 0
    assert "margin: 1.5" in result.stdout and "- 4" in result.stdout
    assert "\n  method:" not in result.stdout  # per-member keys are not shown


def test_help_teaches():
    result = fairl("run", "--help")
    assert result.returncode == 0
    for word in ("--set", "--workdir", "--address", "--tracking-uri", "reuses"):
        assert word in result.stdout
