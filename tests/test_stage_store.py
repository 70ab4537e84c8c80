"""Content-addressed, atomic stage outputs: a crash publishes nothing, a finished stage is found again."""

import pytest

from fairl_ray.orchestration.stage_store import StageWriter, clean_stale_temporaries, stage_key, stage_output


def test_key_depends_on_config_and_upstream_only():
    a = stage_key("irl", {"margin": 0.8}, {"features": "k1"})
    assert a == stage_key("irl", {"margin": 0.8}, {"features": "k1"})
    assert a != stage_key("irl", {"margin": 0.9}, {"features": "k1"})
    assert a != stage_key("irl", {"margin": 0.8}, {"features": "k2"})
    assert a != stage_key("evaluate", {"margin": 0.8}, {"features": "k1"})


def test_finished_stage_is_published_with_its_summary(tmp_path):
    out = stage_output(tmp_path, "pairs", "abc")
    assert not out.done
    writer = StageWriter(out)
    with writer as tmp:
        (tmp / "pairs.parquet").write_text("x")
        writer.summary = {"pairs": 3}
    assert out.done and (out.path / "pairs.parquet").read_text() == "x"
    assert out.summary() == {"pairs": 3}


def test_crash_inside_a_stage_publishes_nothing(tmp_path):
    out = stage_output(tmp_path, "irl", "k")
    with pytest.raises(RuntimeError):
        with StageWriter(out) as tmp:
            (tmp / "half.txt").write_text("partial")
            raise RuntimeError("killed")
    assert not out.done and not out.path.exists()
    assert list((tmp_path / "stages").iterdir()) == []


def test_stale_temporaries_of_a_killed_run_are_cleaned(tmp_path):
    (tmp_path / "stages" / ".tmp-irl-k-1234").mkdir(parents=True)
    (tmp_path / "stages" / "pairs-abc").mkdir()
    assert clean_stale_temporaries(tmp_path) == 1
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["pairs-abc"]
