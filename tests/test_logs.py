"""Logs that read well in a file: no ANSI colour, no ``\\r`` progress redraws, no repeated library warnings
(issue 9). A driver joins the test session's Ray with its output redirected to a file, as `fairl run > log` does."""

import subprocess
import sys
from pathlib import Path

import ray

HERE = Path(__file__).resolve().parent.parent

DRIVER = """
import sys
import ray
from fairl_ray.orchestration.ray_runtime import init_ray

init_ray(sys.argv[1])

@ray.remote
def stage():
    from tqdm import tqdm
    for _ in tqdm(range(50), desc="training"):
        pass
    print("a line from a stage", flush=True)
    return 1

assert ray.get(stage.remote()) == 1
import time; time.sleep(2)  # let the log monitor forward the worker's lines
print("driver done", flush=True)
"""


def test_redirected_run_log_has_no_ansi_or_carriage_returns(ray_session, tmp_path):
    log = tmp_path / "run.log"
    with open(log, "w") as fh:
        proc = subprocess.run(
            [sys.executable, "-c", DRIVER, ray_session.get_runtime_context().gcs_address],
            cwd=HERE,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "a line from a stage" in text and "driver done" in text
    assert "\x1b[" not in text, [line for line in text.splitlines() if "\x1b[" in line][:3]
    assert "\r" not in text


def test_workers_drop_the_per_task_transformers_future_warning(ray_session):
    @ray.remote
    def filtered() -> bool:
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.warn(
                "`is_gradient_checkpointing` is deprecated and will be removed in v6. Use "
                "`is_activation_checkpointing` instead.",
                FutureWarning,
                stacklevel=1,
            )
            warnings.warn("an unrelated FutureWarning", FutureWarning, stacklevel=1)
        return [str(w.message) for w in caught]

    assert ray.get(filtered.remote()) == ["an unrelated FutureWarning"]
