"""``fairl study``: every variant of a study as ONE Ray job on the pipeline's own stage graph (issue 15).

The variants' pipelines advance in lockstep, wave by wave (each :class:`Pipeline` still plans its own waves).
In each wave every variant keys its stages on its upstream outputs, in ONE content-addressed store (the study
directory's ``stages/``), so:

* a stage that several variants share (same name, same key) is computed ONCE: the first variant to ask launches
  it, the others wait for it and record it as shared (a pair-mix sweep trains the expert and generates once);
* the stages the variants do not share run at the same time, each a Ray task asking for its configured
  resources (``resources.cpus_per_task``, ``gpus_per_worker``, ``custom``), so experts of different models or
  seeds train side by side on as many GPUs as the cluster has, and the autoscaler sees every request;
* a finished stage is never recomputed: a killed study, run again, resumes from the store.

MLflow: one study run; under it one run per variant (the variant's pipeline parent, its params the whole
config, so the compare view charts a study axis, e.g. ``pairs.toxic_to_nontoxic_fraction``, directly), and the
stage runs below those. Each variant writes its results.json and report.md in ``variants/<name>/``;
``study.json`` lists them with the axes, and ``study.md`` tables every variant's key metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from fairl_ray.config.loading import flatten
from fairl_ray.config.study import StudyConfig
from fairl_ray.orchestration.pipeline import Pipeline
from fairl_ray.orchestration.runner import StageFailed, StageRunner
from fairl_ray.orchestration.stage_store import workdir_lock

#: the metrics study.md tables per variant and method (where present)
STUDY_METRICS = ("roc_auc", "pair_accuracy", "starc", "heldout_roc_auc")


class Study:
    """Runs a :class:`StudyConfig` into ``out``; see the module docstring."""

    def __init__(
        self,
        study: StudyConfig,
        out: str | Path,
        tracking_uri: str | None = None,
        address: str | None = None,
        log: Callable[[str], None] = print,
        verify: bool = False,
    ):
        from fairl_ray.orchestration.tracking import default_tracking_uri

        self.study = study
        self.out = Path(out).resolve()
        self.tracking_uri = tracking_uri or default_tracking_uri(self.out)
        self.address = address
        self.log = log
        self.verify = verify

    def run(self) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        with workdir_lock(self.out, self.log, command="fairl study"):
            return self._run_locked()

    def _run_locked(self) -> dict:
        import ray

        from fairl_ray.orchestration.ray_runtime import SESSION_FILE, init_ray, shutdown_ray
        from fairl_ray.orchestration.tracking import Tracker

        started = time.time()
        started_ray = not ray.is_initialized()
        self.log(f"[study] {self.study.name}: {len(self.study.variants)} variant(s); starting Ray ...")
        resources = init_ray(self.address, session_file=self.out / SESSION_FILE)
        self.log(f"[study] Ray resources: {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
        tracker = Tracker(self.tracking_uri, artifact_root=self.out / "mlartifacts")
        study_run = tracker.start_run(self.study.name, tags={"fairl.kind": "study"}, start_time=started)
        tracker.log_params(
            study_run, {f"axis.{k}": v for k, v in self.study.axes.items()} | {"variants": len(self.study.variants)}
        )
        pipelines = [
            Pipeline(
                v.config,
                self.out / "variants" / v.name,
                tracking_uri=self.tracking_uri,
                address=self.address,
                log=_prefixed(self.log, v.name),
                verify=self.verify,
                store=self.out,
                study_run=study_run,
            )
            for v in self.study.variants
        ]
        status, begun = "FAILED", []
        try:
            for p in pipelines:
                p.begin(started)
                begun.append(p)
            run_lockstep(pipelines)
            results = {v.name: p.complete() for v, p in zip(self.study.variants, pipelines)}
            summary = self._write(results, time.time() - started, study_run)
            from fairl_ray.html_report import build_report

            html, md = build_report(self.out)  # report.html / report.md: curves along each axis, ± bands over seeds
            for artifact in (self.out / "study.json", self.out / "study.md", html, md):
                tracker.log_artifact(study_run, artifact)
            self.log(f"[study] report: {html}")
            status = "FINISHED"
            return summary
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            for p in begun:
                p.end(status)
            tracker.end_run(study_run, status)
            if started_ray:
                shutdown_ray(remove_session=status == "FINISHED")

    def _write(self, results: dict[str, dict], seconds: float, study_run: str) -> dict:
        """``study.json`` (axes, variants with their overrides and workdirs, where each stage came from) and
        ``study.md`` (every variant's key metrics per method)."""
        variants = []
        for v in self.study.variants:
            stages = results[v.name]["stages"]
            variants.append(
                {
                    "name": v.name,
                    "overrides": v.overrides,
                    "workdir": f"variants/{v.name}",
                    "computed": sorted(n for n, s in stages.items() if not s["reused"]),
                }
            )
        summary = {
            "name": self.study.name,
            "base": str(self.study.base),
            "axes": self.study.axes,
            "variants": variants,
            "seconds": round(seconds, 1),
            "mlflow": {"tracking_uri": self.tracking_uri, "study_run_id": study_run},
        }
        (self.out / "study.json").write_text(json.dumps(summary, indent=2, default=str))
        (self.out / "study.md").write_text(study_table(self.study, results))
        self.log(f"[study] {self.study.name}: {len(variants)} variant(s) in {seconds:.1f} s; {self.out / 'study.md'}")
        return summary


def run_lockstep(pipelines: list[Pipeline]) -> None:
    """Advance every pipeline one wave at a time; launch each stage once per (name, key) across them."""
    plans = {id(p): (p, p.waves()) for p in pipelines}
    while plans:
        runner = StageRunner()
        leaders: dict[Path, Pipeline] = {}  # a stage output being computed -> the pipeline computing it
        followers: dict[Path, list] = {}  # -> the (pipeline, stage) of the others waiting for it
        for key, (p, plan) in list(plans.items()):
            wave = next(plan, None)
            if wave is None:
                del plans[key]
                continue
            for stage in wave:
                output = p.admit(stage)
                if output is None:
                    continue
                if output.path in leaders:
                    followers.setdefault(output.path, []).append((p, stage))
                    continue
                leaders[output.path] = p
                p.launch(runner, stage, output)
        try:
            for done in runner.finished():
                leader = done.context[0]
                leader.landed(done)
                for p, stage in followers.get(done.output.path, []):
                    p.reuse(stage, done.output, "shared  ")
        except StageFailed as failed:
            raise leaders[failed.output.path].failed(failed) from failed.cause


def plan_study(study: StudyConfig, out: str | Path) -> list[dict]:
    """``fairl study --dry-run``: every distinct stage output of the study's variants (in plan order), how many
    variants use it, and whether it would be reused or run. Starts nothing and writes nothing in ``out``. (A
    variant's stages keyed on prompts not drawn yet are keyed on a draft of them, as ``fairl run --dry-run``.)"""
    seen: dict[str, dict] = {}
    for v in study.variants:
        pipeline = Pipeline(v.config, Path(out) / "variants" / v.name, store=out)
        for row in pipeline.plan():
            entry = seen.setdefault(row["dir"], {"stage": row["stage"], "variants": 0, "action": row["action"]})
            entry["variants"] += 1
    return list(seen.values())


def study_table(study: StudyConfig, results: dict[str, dict]) -> str:
    """Markdown: one row per (variant, method), the axes' values and :data:`STUDY_METRICS` (mean ± std over
    seeds)."""
    from fairl_ray.report import drop_empty_columns, markdown_table, mean_std

    axes = list(study.axes) or sorted({k for v in study.variants for k in v.overrides})
    header = ["variant", *axes, "method", *STUDY_METRICS]
    rows = []
    for v in study.variants:
        values = flatten(v.overrides) if v.overrides else {}
        for method, metrics in results[v.name]["metrics"]["per_method"].items():
            rows.append(
                [
                    v.name,
                    *(str(values.get(a, "")) for a in axes),
                    method,
                    *(mean_std(metrics.get(m)) for m in STUDY_METRICS),
                ]
            )
    title = f"# Study {study.name}\n\n{len(study.variants)} variant(s) of {study.base.name}; mean ± std over seeds.\n\n"
    return title + markdown_table(*drop_empty_columns(header, rows)) + "\n"


def _prefixed(log: Callable[[str], None], name: str) -> Callable[[str], None]:
    return lambda line: log(f"[{name}] {line}")
