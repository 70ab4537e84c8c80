"""The end-to-end pipeline (DESIGN §2), each stage a Ray task, each stage a child MLflow run.

```
base_policy ─┐
prompts ─────┴► expert_rlhf ─► generate ─► pairs ─► features ─► irl ─► evaluate
                      └──────► reference_toxicity           └──► realign_<method> (one per method, in parallel)
```

A world without a policy (``SUPPLIES_PAIRS``: the ``texts`` world's real comments and Bradley–Terry preferences)
draws its pairs itself: ``prompts`` (its held-out labelled texts) and ``pairs`` ─► features ─► irl ─► evaluate.

A stage is a module-level function ``fn(out_dir, **inputs) -> summary`` run inside a Ray task with explicit
resources. Its output directory is content-addressed (:mod:`fairl_ray.orchestration.stage_store`): a
finished stage is reused, never recomputed, and a changed IRL setting re-runs only ``irl`` and what follows.
Stages exchange files (Parquet, safetensors, JSON) through the workdir, so on a multi-node cluster the
workdir must be on storage every node sees (NFS, a mounted bucket).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fairl_ray.atomic_io import atomic_write_bytes
from fairl_ray.config import PipelineConfig, config_to_yaml, flatten, to_dict
from fairl_ray.orchestration.runner import StageFailed, StageRunner
from fairl_ray.orchestration.stage_store import (
    StageOutput,
    clean_stale_temporaries,
    is_disk_full,
    read_summary,
    resume_dir,
    stage_key,
    stage_output,
    workdir_lock,
)
from fairl_ray.orchestration.tracking import method_metrics, method_params
from fairl_ray.stages.implicit_reward import IMPLICIT_REWARDS


class StageError(RuntimeError):
    """A stage (or the run around it) failed. The message is one plain line naming the stage and the cause, and
    where the full traceback was written; ``fairl`` prints it as ``fairl: error: …`` and exits 2."""


# --------------------------------------------------------------------------------------------------------
# Stage bodies. Each runs inside a Ray task and writes only into ``out`` (a temporary directory that is
# renamed into place when the body returns). Inputs are plain values and paths of finished stages.
# --------------------------------------------------------------------------------------------------------


def _world(world_cfg):
    from fairl_ray.worlds import get_world

    return get_world(world_cfg.name, world_cfg.section)


def _read_prompts(prompts_dir: Path) -> dict[str, list[str]]:
    return json.loads((Path(prompts_dir) / "prompts.json").read_text())


def _read_pairs(pairs_dir: Path):
    """The pairs stage's table (``pyarrow.Table``, validated)."""
    from fairl_ray.pairs_io import read_pairs

    return read_pairs(Path(pairs_dir) / "pairs.parquet")


def stage_base_policy(out: Path, world_cfg) -> dict:
    _world(world_cfg).build_base_policy(out / "policy")
    return {"policy": "policy"}


def stage_prompts(out: Path, world_cfg, prompts_cfg) -> dict:
    """The world's RLHF, pairs and evaluation prompt sets (disjoint, seeded), and its held-out labelled texts when
    it has them (``heldout.json``: ``{"text": [...], "label": [+1/-1, ...]}``, for evaluating extracted rewards)."""
    world = _world(world_cfg)
    sets = world.prompt_sets(prompts_cfg.n_rlhf, prompts_cfg.n_pairs, prompts_cfg.n_eval, prompts_cfg.seed)
    (out / "prompts.json").write_text(json.dumps(sets, indent=1))
    summary = {k: len(v) for k, v in sets.items()}
    heldout = world.heldout()
    if heldout is not None:
        (out / "heldout.json").write_text(json.dumps({"text": heldout[0], "label": heldout[1]}))
        summary["heldout"] = len(heldout[0])
    return summary


def stage_expert_rlhf(out: Path, world_cfg, base_dir: Path, prompts_dir: Path, rlhf_cfg) -> dict:
    """π_E: RLHF of π0 with R* plus uniform noise (noise only here, never in evaluation; DESIGN §3)."""
    from fairl_ray.stages.rlhf import train_rlhf, write_curves

    noisy_rstar = _world(world_cfg).noisy_reward_fn(seed=rlhf_cfg.seed)
    metrics = train_rlhf(
        str(base_dir / "policy"),
        _read_prompts(prompts_dir)["rlhf"],
        noisy_rstar,
        rlhf_cfg,
        str(out / "policy"),
        checkpoint_dir=rlhf_checkpoints(out, rlhf_cfg),
    )
    write_curves(metrics, out / "curves.json")
    return _scalars(metrics)


def stage_given_expert(out: Path, world_cfg) -> dict:
    """π_E given (auditing a model aligned elsewhere): read it as π0 is read (``World.build_expert_policy``)."""
    _world(world_cfg).build_expert_policy(out / "policy")
    return {"policy": "policy"}


def stage_generate(
    out: Path, base_dir: Path, expert_dir: Path, prompts_dir: Path, gen_cfg, seed: int, pool: dict | None = None
) -> dict:
    """π0 and π_E on the pairs prompts, at the same time, on one pool of policy workers (Ray actors)."""
    from fairl_ray.orchestration.actors import PoolSpec, generate_with_pool

    prompts = _read_prompts(prompts_dir)["pairs"]
    got = generate_with_pool(
        {"base": (str(base_dir / "policy"), prompts), "expert": (str(expert_dir / "policy"), prompts)},
        gen_cfg,
        seed,
        PoolSpec(**(pool or {})),
    )
    base, expert = got["base"], got["expert"]
    (out / "completions.json").write_text(json.dumps({"prompt": prompts, "base": base, "expert": expert}))
    return {"completions": len(prompts), "identical": sum(b == e for b, e in zip(base, expert))}


def stage_pairs(out: Path, world_cfg, generate_dir: Path, pairs_cfg) -> dict:
    from fairl_ray.pairs_io import write_pairs
    from fairl_ray.stages.pairs import build_pairs

    data = json.loads((Path(generate_dir) / "completions.json").read_text())
    rows = build_pairs(data["prompt"], data["expert"], data["base"], _world(world_cfg), pairs_cfg)
    write_pairs(rows, out / "pairs.parquet")
    identical = sum(e == b or not e.strip() or not b.strip() for e, b in zip(data["expert"], data["base"]))
    return {**_pair_counts(rows), "prompts": len(data["prompt"]), "identical": identical}


def stage_world_pairs(out: Path, world_cfg, pairs_cfg) -> dict:
    """The pairs of a world that draws them itself (no policy): e.g. ``texts``, Bradley–Terry preferences from R*
    over real comments; its summary adds the exact R* ties and the world's account of the draw."""
    from fairl_ray.pairs_io import write_pairs

    rows, drawn = _world(world_cfg).make_pairs(pairs_cfg)
    write_pairs(rows, out / "pairs.parquet")
    from fairl_ray.metrics.classification import rstar_ties

    counts = _pair_counts(rows)
    ties = rstar_ties([r["chosen_reward"] for r in rows], [r["rejected_reward"] for r in rows])
    return {**counts, "against_rstar": counts["noisy_preferences"], "rstar_ties": ties, **drawn}


def _pair_counts(rows: list[dict]) -> dict:
    """What every pairs summary says: sizes, the toxic→non-toxic pairs and the noisy preferences (R*(o+) < R*(o−))."""
    from fairl_ray.stages.pairs import against_rstar

    n_test = sum(r["split"] == "test" for r in rows)
    return {
        "pairs": len(rows),
        "train": len(rows) - n_test,
        "test": n_test,
        "toxic_to_nontoxic": sum(r["chosen_label"] == 1 and r["rejected_label"] == -1 for r in rows),
        "noisy_preferences": against_rstar(rows),
    }


def pairs_note(summary: dict, pairs_cfg) -> str | None:
    """Why the pairs stage kept fewer pairs than it had prompts (None when it kept one per prompt)."""
    prompts, kept, identical = summary.get("prompts"), summary.get("pairs"), summary.get("identical", 0)
    if prompts is None or kept is None or kept >= prompts:
        return None
    reasons = []
    if identical:
        reasons.append(f"{identical} had identical (or empty) expert and base completions, no preference")
    rest = prompts - identical - kept
    if rest > 0:
        by = []
        if pairs_cfg.toxic_to_nontoxic_fraction is not None:
            by.append(f"the pair mix pairs.toxic_to_nontoxic_fraction={pairs_cfg.toxic_to_nontoxic_fraction:g}")
        if pairs_cfg.max_pairs is not None and kept == pairs_cfg.max_pairs:
            by.append(f"the cap pairs.max_pairs={pairs_cfg.max_pairs}")
        reasons.append(f"{rest} were left out by {' and '.join(by) or 'the pair mix'}")
    return f"[fairl] pairs: {kept} of {prompts} prompts made a pair: " + "; ".join(reasons)


def stage_features(out: Path, pairs_dir: Path, encoder: str, batch_size: int, cache_dir: Path) -> dict:
    from fairl_ray.recovery.featurize import features_summary, featurize

    data = featurize(_read_pairs(pairs_dir), encoder, cache_dir, batch_size)
    data.save_features(out)
    return features_summary(data)


def stage_irl(out: Path, pairs_dir: Path, features_dir: Path, irl_cfg, seeds: list[int], encoder: str) -> dict:
    from fairl_ray.recovery.data import PairData
    from fairl_ray.recovery.fit import fit

    data = PairData.read(Path(pairs_dir) / "pairs.parquet", features_dir, encoder)
    return fit(data, irl_cfg.member_configs(seeds), irl_cfg.device).save(out)


def stage_subtype_transfer(out: Path, pairs_dir: Path, features_dir: Path, irl_cfg, seed: int) -> dict:
    """FA-IRL §6 cross-subtype transfer: every IRL method (first seed) trained on one subtype's pairs at a time."""
    from fairl_ray.analyses import SUBTYPE_TRANSFER, write_outputs
    from fairl_ray.recovery.data import PairData
    from fairl_ray.recovery.transfer import subtype_transfer

    data = PairData.read(Path(pairs_dir) / "pairs.parquet", features_dir, read_summary(features_dir)["encoder"])
    result = subtype_transfer(data, irl_cfg.member_configs([seed]), irl_cfg.device)
    (out / "subtype_transfer.json").write_text(json.dumps(result, indent=2))
    write_outputs(SUBTYPE_TRANSFER, result, out)
    return result


def stage_logprobs(out: Path, pairs_dir: Path, base_dir: Path, expert_dir: Path, prompts_dir: Path) -> dict:
    """Summed log-probs of every pair's completions under π0 and π_E, for the implicit reward β·log π_E/π0; and of
    the world's held-out labelled texts (the prompts stage's ``heldout.json``), when it has them."""
    from fairl_ray.stages.implicit_reward import score_pairs

    heldout_file = Path(prompts_dir) / "heldout.json"
    heldout = json.loads(heldout_file.read_text())["text"] if heldout_file.is_file() else None
    rows = _read_pairs(pairs_dir).to_pylist()
    return score_pairs(rows, Path(base_dir) / "policy", Path(expert_dir) / "policy", out, heldout)


def stage_evaluate(
    out: Path,
    pairs_dir: Path,
    features_dir: Path,
    irl_dir: Path,
    prompts_dir: Path,
    encoder: str,
    cache_dir: Path,
    logprobs_dir: Path | None = None,
    beta: float = 1.0,
) -> dict:
    """Test-split metrics and failure analyses; plus, when the world has held-out labelled texts (the prompts
    stage's ``heldout.json``: Jigsaw in the papers, the insults comments offline), each reward as a classifier of
    them (FA-IRL Table 1's held-out columns). With ``logprobs_dir`` (a world with a policy), the implicit rewards
    β·(log π_E − log π0) and its per-token variant are scored beside the IRL members."""
    from fairl_ray.analyses import PERTURBATION
    from fairl_ray.features import encode_cached, load_encoder
    from fairl_ray.recovery.data import PairData
    from fairl_ray.recovery.fit import FittedRewards
    from fairl_ray.recovery.probes import probe_shifts
    from fairl_ray.recovery.score import score
    from fairl_ray.stages.evaluate import write_evaluation
    from fairl_ray.stages.implicit_reward import implicit_heldout, implicit_rewards

    data = PairData.read(Path(pairs_dir) / "pairs.parquet", features_dir, encoder)
    fitted = FittedRewards.load(irl_dir, read_summary(irl_dir))
    model = load_encoder(encoder)  # the held-out texts and the probes' edits are encoded through the run's cache
    heldout = None
    heldout_file = Path(prompts_dir) / "heldout.json"
    if heldout_file.is_file():
        held = json.loads(heldout_file.read_text())
        heldout = (encode_cached(model, held["text"], cache_dir), held["label"])
    implicit = implicit_rewards(logprobs_dir, beta) if logprobs_dir is not None else None
    implicit_held = implicit_heldout(logprobs_dir, beta) if logprobs_dir is not None and heldout else None
    evaluation = score(fitted, data, heldout=heldout, scored_rewards=implicit, scored_heldout=implicit_held)
    if evaluation.n_pairs:  # Insights Table 6: how far each reward moves under edits of known direction
        probes = probe_shifts(fitted, data.output_texts("test"), lambda t: encode_cached(model, t, cache_dir))
        evaluation.summary.setdefault("analyses", {})[PERTURBATION.name] = probes
    write_evaluation(evaluation, out, curves=fitted.curves)
    return evaluation.summary


def stage_reference_toxicity(
    out: Path, world_cfg, base_dir: Path, expert_dir: Path, prompts_dir: Path, eval_cfg, pool: dict | None = None
) -> dict:
    from fairl_ray.orchestration.actors import PoolSpec, generate_with_pool
    from fairl_ray.stages.realign import score_completions

    world, prompts = _world(world_cfg), _read_prompts(prompts_dir)["eval"]
    jobs = {name: (str(Path(d) / "policy"), prompts) for name, d in (("base", base_dir), ("expert", expert_dir))}
    got = generate_with_pool(jobs, eval_cfg.generation, eval_cfg.seed, PoolSpec(**(pool or {})))
    return {name: score_completions(world, prompts, got[name], out / f"{name}.jsonl") for name in jobs}


def rlhf_checkpoints(out: Path, rlhf_cfg) -> Path | None:
    """Where a multi-worker RLHF stage writing into ``out`` keeps its Ray Train checkpoints: the stage's resume
    folder, which outlives a killed run (None for one worker: it has no checkpoints)."""
    return resume_dir(out) if rlhf_cfg.on_ray_train else None


def stage_realign(
    out: Path,
    world_cfg,
    base_dir: Path,
    reward: Path | str,
    prompts_dir: Path,
    rlhf_cfg,
    eval_cfg,
    tracking_uri: str | None = None,
) -> dict:
    """Re-RLHF of a fresh π0 with ``reward``: a reward directory of the IRL stage, or an MLflow model URI read from
    ``tracking_uri``."""
    from fairl_ray.stages.realign import load_reward, realign_with_reward

    prompts = _read_prompts(prompts_dir)
    return realign_with_reward(
        _world(world_cfg),
        Path(base_dir) / "policy",
        load_reward(reward, tracking_uri),
        prompts["rlhf"],
        prompts["eval"],
        rlhf_cfg,
        eval_cfg.generation,
        eval_cfg.seed,
        out,
        checkpoint_dir=rlhf_checkpoints(out, rlhf_cfg),
    )


# --------------------------------------------------------------------------------------------------------
# What MLflow gets from a stage beyond its config params and artifacts (``Stage.metric_view``, ``.written``,
# ``.track``, ``.note``): declared with the stages, so the runner has no branch on a stage's name.
# --------------------------------------------------------------------------------------------------------


def summary_metrics(summary: dict) -> dict:
    """The numeric part of a stage's summary (nested dicts flattened by the caller): most stages' metrics."""
    return {k: v for k, v in summary.items() if isinstance(v, (int, float, dict)) and not isinstance(v, bool)}


def no_metrics(summary: dict) -> dict:
    """The evaluate stage logs its metrics on its per-method child runs (:func:`track_method_runs`), not on itself."""
    return {}


def irl_metrics(summary: dict) -> dict:
    return {"members": len(summary["members"]), "train_pairs": summary["train_pairs"]}


def transfer_metrics(summary: dict) -> dict:
    """The cross-subtype grid as ``<method>.<source>_to_<target>`` accuracies."""
    return {
        m: {f"{s}_to_{t}": acc for s, row in grid.items() for t, acc in row.items()}
        for m, grid in summary.get("methods", {}).items()
    }


def evaluate_files(summary: dict) -> list[str]:
    """The tables and figures the evaluation's analyses wrote (named from their results, nothing guessed)."""
    from fairl_ray.analyses import output_files

    return output_files(summary.get("analyses", {}))


def transfer_files(summary: dict) -> list[str]:
    from fairl_ray.analyses import SUBTYPE_TRANSFER, output_files

    return output_files({SUBTYPE_TRANSFER.name: summary})


def track_irl(pipeline: Pipeline, output: StageOutput, run_id: str, summary: dict, ended: float) -> None:
    """The IRL stage's run: the pairs as its MLflow dataset input, each member's curves as step metrics, and each
    method's first seed as an MLflow model (texts -> rewards; safetensors + JSON, no pickle)."""
    tracker = pipeline.tracker
    pairs = pipeline.outputs["pairs"]  # what the IRL methods were fitted on, keyed by the stage that made it
    tracker.log_dataset(run_id, pairs.path / "pairs.parquet", name="pairs", digest=pairs.key)
    curves = json.loads((output.path / "curves.json").read_text())
    for member, curve in curves.items():
        for name in ("val_loss", "fail_share", "failure_fraction"):  # the last two: FA-IRL members only
            if curve.get(name):
                tracker.log_curve(run_id, f"{member.replace('/', '.')}.{name}", curve[name])
    prefix = pipeline.cfg.tracking.register_rewards
    for member in summary["members"]:
        if member["seed"] == pipeline.cfg.seeds[0]:
            name = reward_model_name(member["method"], member["seed"])
            registered = f"{prefix}-{member['method']}" if prefix else None
            tracker.log_reward_model(run_id, output.path / member["reward_dir"], name, registered)


def track_rlhf_curves(pipeline: Pipeline, output: StageOutput, run_id: str, summary: dict, ended: float) -> None:
    """An RLHF stage's step curves (reward, kl, loss, learning_rate) as step metrics of its run; outputs from before
    they were recorded have no curves.json."""
    curves_file = output.path / "curves.json"
    if curves_file.is_file():
        for name, points in json.loads(curves_file.read_text()).items():
            pipeline.tracker.log_curve(run_id, name, [v for _, v in points], steps=[s for s, _ in points])


def track_method_runs(pipeline: Pipeline, output: StageOutput, run_id: str, summary: dict, ended: float) -> None:
    """A child run per evaluated reward, and the auditor's tables (``analyses.text_audit``) as MLflow tables."""
    from fairl_ray.analyses import ANALYSES, table_files

    pipeline._log_method_runs(run_id, summary, ended)
    audit = ANALYSES["text_audit"]
    result = summary.get("analyses", {}).get(audit.name, {})
    for name, (_title, header, rows) in zip(table_files(audit, result), audit.tables(result)):
        pipeline.tracker.log_table(run_id, header, rows, f"tables/{name.removesuffix('.csv')}.json")


def pairs_stage_note(summary: dict, cfg) -> str | None:
    return pairs_note(summary, cfg.pairs)


def _digest(texts: list[str]) -> str:
    """Content hash of a prompt list (a stage key part that changes exactly when the prompts do)."""
    import hashlib

    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


# --------------------------------------------------------------------------------------------------------
# Planning and running
# --------------------------------------------------------------------------------------------------------

#: Tags the parent run with :meth:`Pipeline._run_key` (a fully reused rerun finds its earlier run by it).
RUN_KEY_TAG = "fairl.run_key"

#: results.json's toxicity table for a world without a policy (nothing generates, so nothing has a toxicity rate).
NO_POLICY = "not applicable: this world has no policy"
#: ... and for a world without a judge (``judge.kind: none``): no toxicity can be measured, nothing is re-aligned.
NO_JUDGE_TOXICITY = "not measured: this world has no judge (no R*), so no toxicity and no re-alignment"


@dataclass
class Stage:
    """One planned stage: what it runs, what identifies its output, what MLflow gets from it."""

    name: str
    fn: Callable
    config: Any  # the config section(s) that define the output (hashed; logged as params)
    upstream: list[str]
    kwargs: dict = field(default_factory=dict)
    uses_model: bool = True  # asks for resources.gpus_per_worker GPUs
    orchestrates: bool = False  # the task only drives a pool of policy workers (which hold the resources): 0 CPU/GPU
    artifacts: tuple[str, ...] = ()  # paths in the stage dir logged to MLflow
    # What is particular to a stage lives with it, not in branches on its name:
    written: Callable[[dict], list[str]] | None = None  # files named by its summary (the analyses' tables) to log too
    metric_view: Callable[[dict], dict] = summary_metrics
    track: Callable[..., None] | None = None  # more MLflow records: track(pipeline, output, run_id, summary, ended)
    note: Callable[[dict, Any], str | None] | None = None  # a line for the log once it ran: note(summary, cfg)
    # stages whose output it reads but does not key on: the part it reads is hashed into ``config`` instead (the
    # RLHF and evaluation prompts of the prompts stage: a change in the pair prompts re-runs neither)
    keyed_by_content: tuple[str, ...] = ()
    draft_in_plan: bool = False  # ``--dry-run`` runs it (cheap, in-process) when unfinished: later keys hash its output


def check_inputs(stage: Stage, planned: dict[str, StageOutput]) -> None:
    """A stage's declared ``upstream`` (what keys its output) must name stages planned before it, and every stage
    output its arguments read must be one of them (or in ``keyed_by_content``): a stage that read another's files
    without keying on them would be reused when they change. Raised at plan time (``--dry-run`` too)."""
    unknown = [u for u in stage.upstream if u not in planned]
    if unknown:
        raise StageError(f"{stage.name}: declared upstream {unknown} is not planned before it (a pipeline bug)")
    for arg, value in stage.kwargs.items():
        if not isinstance(value, Path):
            continue
        for name, output in planned.items():
            reads = value == output.path or output.path in value.parents
            if reads and name not in stage.upstream and name not in stage.keyed_by_content:
                raise StageError(
                    f"{stage.name}: argument {arg} reads the {name} stage's output, but {name} is not in its upstream "
                    "(its key would not change when that output does; a pipeline bug)"
                )


class Pipeline:
    """Runs :class:`PipelineConfig` end to end on Ray, logging to MLflow; see the module docstring."""

    def __init__(
        self,
        cfg: PipelineConfig,
        workdir: str | Path,
        tracking_uri: str | None = None,
        address: str | None = None,
        log: Callable[[str], None] = print,
        verify: bool = False,
        store: str | Path | None = None,
        study_run: str | None = None,
    ):
        from fairl_ray.orchestration.tracking import default_tracking_uri

        self.cfg = cfg
        self.workdir = Path(workdir).resolve()
        # Where the content-addressed stage outputs (``stages/``) and the feature cache live: the workdir, or a
        # study's directory that its variants share (a stage two variants share is computed once).
        self.store = Path(store).resolve() if store is not None else self.workdir
        self.study_run = study_run  # a study's MLflow run: this run's parent is its child
        self.tracker = None  # opened by begin()
        self.tracking_uri = tracking_uri or default_tracking_uri(self.workdir)
        self.address = address
        self.log = log
        self.verify = verify  # hash every file of a finished stage before reusing it (``--verify``)
        self.outputs: dict[str, StageOutput] = {}
        self.summaries: dict[str, dict] = {}
        self.stage_runs: dict[str, dict] = {}
        self.parent_run: str | None = None
        self.parent_reused = False  # a fully reused rerun records nothing new: it points at the earlier run
        self._deferred: list[tuple[Stage, StageOutput, float]] = []  # reused stages seen before the parent exists
        self._open_runs: dict[str, str] = {}  # stage name -> its MLflow run, RUNNING while the stage is

    # -- public -------------------------------------------------------------------------------------------

    def run(self) -> dict:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with workdir_lock(self.workdir, self.log):  # one run per workdir; a second waits, then reuses
            return self._run_locked()

    def _run_locked(self) -> dict:
        import ray

        from fairl_ray.orchestration.ray_runtime import SESSION_FILE, init_ray, shutdown_ray

        started = time.time()
        started_ray = not ray.is_initialized()  # a Ray session we did not start (tests, notebooks) is left running
        self.log(f"[fairl] starting Ray ({self.address or 'local'}) ...")
        resources = init_ray(self.address, session_file=self.workdir / SESSION_FILE)
        self.log(f"[fairl] Ray resources: {resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU")
        status = "FAILED"
        try:
            self.begin(started)
            for wave in self.waves():
                self._run_wave(wave)
            results = self.complete()
            status = "FINISHED"
            return results
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if self.tracker is not None:  # begin() got as far as the MLflow store
                self.end(status)
            if started_ray:
                shutdown_ray(remove_session=status == "FINISHED")

    # What a run does around its waves, in three steps a study calls for each of its variants too.

    def begin(self, started: float) -> None:
        """Before the first wave (Ray is up): clear an interrupted run's temporaries, write config.yaml, refuse
        requests no node can fit (naming the key), open the MLflow store."""
        from fairl_ray.orchestration.ray_runtime import check_fits
        from fairl_ray.orchestration.tracking import Tracker

        removed = clean_stale_temporaries(self.store)
        if removed:
            self.log(f"[fairl] removed {removed} unfinished stage output(s) of an interrupted run")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "config.yaml").write_text(config_to_yaml(self.cfg))
        # Requested from config, never decided from the GPUs present now: the autoscaler adds nodes for requests.
        self.gpus = self.cfg.resources.gpus_per_worker
        check_fits(  # a request no node can fit would wait forever in Ray's queue
            self._resource_requests(),
            wait_s=self.cfg.resources.node_wait_s if self.address else 0.0,
            where=f"the Ray cluster at {self.address}" if self.address else "the local Ray",
        )
        self.tracker = Tracker(self.tracking_uri, artifact_root=self.store / "mlartifacts")
        if self.tracker.closed_stale:
            self.log(
                f"[fairl] closed {len(self.tracker.closed_stale)} MLflow run(s) left RUNNING by killed runs as KILLED"
            )
        self.started = started

    def complete(self) -> dict:
        """After the last wave: the parent run (a new one, or the earlier one when every stage was reused),
        results.json, report.md and the printed tables."""
        try:
            if self.parent_run is None and not self._reuse_parent():
                self._open_parent()
            results = self._results(time.time() - self.started)
            self._finish(results)
            return results
        except OSError as err:  # the driver's own writes (results, MLflow artifacts): a disk filling up
            if not is_disk_full(err):
                raise
            raise StageError(f"run: {_disk_full(err, self.workdir)}") from err

    def end(self, status: str) -> None:
        """Close what is open: the parent run (``status``), and as KILLED any stage run still running."""
        if self.parent_run is None:  # failed before any stage ran: the failure is recorded all the same
            self._open_parent()
        for run_id in self._open_runs.values():  # stages still running when the run failed or was stopped
            self.tracker.end_run(run_id, "KILLED")
        self._open_runs = {}
        if not self.parent_reused:
            self.tracker.end_run(self.parent_run, status)

    # -- plan ---------------------------------------------------------------------------------------------

    def _policy_waves(self):
        """π0 and the prompts, π_E, the generations (and reference toxicity), then the pairs of π_E's and π0's
        outputs."""
        cfg = self.cfg
        d = self._dir
        yield [
            Stage("base_policy", stage_base_policy, cfg.world.active_dict(), [], {"world_cfg": cfg.world}),
            # later keys hash the prompts it draws: ``--dry-run`` drafts it
            self._prompts_stage(
                {"world": cfg.world.active_dict(), "prompts": to_dict(cfg.prompts)}, "prompts.json", draft_in_plan=True
            ),
        ]
        # Keyed by what they read, not by the prompts stage: changing prompts.n_pairs re-runs neither expert RLHF
        # (its prompts are drawn on their own) nor, unless the evaluation prompts change, reference_toxicity.
        prompt_sets = _read_prompts(d("prompts"))
        given = cfg.world.given_expert
        yield [
            Stage("given_expert", stage_given_expert, cfg.world.active_dict(), [], {"world_cfg": cfg.world})
            if given
            else Stage(
                "expert_rlhf",
                stage_expert_rlhf,
                {
                    "rlhf": to_dict(cfg.expert_rlhf),
                    "world": cfg.world.active_dict(),
                    "prompts": _digest(prompt_sets["rlhf"]),
                },
                ["base_policy"],
                {
                    "world_cfg": cfg.world,
                    "base_dir": d("base_policy"),
                    "prompts_dir": d("prompts"),
                    "rlhf_cfg": cfg.expert_rlhf,
                },
                artifacts=("curves.json",),
                track=track_rlhf_curves,
                keyed_by_content=("prompts",),
                orchestrates=cfg.expert_rlhf.on_ray_train,  # its Ray Train workers hold the resources
            ),
        ]
        res = cfg.resources
        pool = {
            "workers": res.generation_workers,
            "num_cpus": res.cpus_per_task,
            "num_gpus": res.gpus_per_worker,
            "resources": dict(res.custom) or None,
        }
        generate = [
            Stage(
                "generate",
                stage_generate,
                to_dict(cfg.generation),
                ["base_policy", self._expert, "prompts"],
                {
                    "base_dir": d("base_policy"),
                    "expert_dir": d(self._expert),
                    "prompts_dir": d("prompts"),
                    "gen_cfg": cfg.generation,
                    "seed": cfg.prompts.seed,
                    "pool": pool,
                },
                orchestrates=True,
            ),
        ]
        reference_toxicity = [
            Stage(
                "reference_toxicity",
                stage_reference_toxicity,
                {
                    "evaluation": to_dict(cfg.evaluation),
                    "world": cfg.world.active_dict(),
                    "prompts": _digest(prompt_sets["eval"]),
                },
                ["base_policy", self._expert],
                {
                    "world_cfg": cfg.world,
                    "base_dir": d("base_policy"),
                    "expert_dir": d(self._expert),
                    "prompts_dir": d("prompts"),
                    "eval_cfg": cfg.evaluation,
                    "pool": pool,
                },
                orchestrates=True,
                artifacts=("base.jsonl", "expert.jsonl"),
                keyed_by_content=("prompts",),
            )
        ]
        yield generate + (reference_toxicity if cfg.world.has_judge else [])  # toxicity needs a judge
        yield [
            Stage(
                "pairs",
                stage_pairs,
                to_dict(cfg.pairs),
                ["generate"],
                {"world_cfg": cfg.world, "generate_dir": d("generate"), "pairs_cfg": cfg.pairs},
                uses_model=False,
                artifacts=("pairs.parquet",),
                note=pairs_stage_note,
            ),
        ]

    def _world_pairs_waves(self):
        """A world without a policy: its held-out labelled texts (the prompts stage; it has no prompts) and the pairs
        it draws itself, side by side. The expert_rlhf, generation and realign config sections go unused."""
        cfg = self.cfg
        yield [
            # keyed by the world alone: it draws no prompts, only the held-out set
            self._prompts_stage({"world": cfg.world.active_dict()}, "heldout.json"),
            Stage(
                "pairs",
                stage_world_pairs,
                {"world": cfg.world.active_dict(), "pairs": to_dict(cfg.pairs)},
                [],
                {"world_cfg": cfg.world, "pairs_cfg": cfg.pairs},
                uses_model=False,
                artifacts=("pairs.parquet",),
                note=pairs_stage_note,
            ),
        ]

    def _prompts_stage(self, key: dict, artifact: str, draft_in_plan: bool = False) -> Stage:
        """The world's prompt sets and held-out texts (``stage_prompts``), keyed by ``key``."""
        cfg = self.cfg
        return Stage(
            "prompts",
            stage_prompts,
            key,
            [],
            {"world_cfg": cfg.world, "prompts_cfg": cfg.prompts},
            uses_model=False,
            artifacts=(artifact,),
            draft_in_plan=draft_in_plan,
        )

    def _heldout_key(self) -> dict:
        """``{"heldout": digest}`` of the world's held-out texts (the prompts stage has drawn them by now); ``{}``
        without any."""
        held = self._dir("prompts") / "heldout.json"
        return {"heldout": _digest(json.loads(held.read_text())["text"])} if held.is_file() else {}

    @property
    def _expert(self) -> str:
        """The stage whose ``policy/`` is π_E: trained here (``expert_rlhf``) or given (``given_expert``)."""
        return "given_expert" if self.cfg.world.given_expert else "expert_rlhf"

    def _implicit_beta(self) -> float:
        """The implicit reward's β: the KL coefficient that trained π_E here, or the one given with π_E."""
        given = self.cfg.world.given_expert
        return given[1] if given else self.cfg.expert_rlhf.beta

    def _realign_targets(self) -> list[tuple[str, str, bool]]:
        """``(stage name, reward, from this run's IRL)`` of every re-RLHF: each of ``realign.methods``' rewards and
        each MLflow reward of ``realign.models``. None in a world without a policy, or without a judge (the
        re-aligned models' toxicity could not be measured)."""
        world = self.cfg.world
        if world.supplies_pairs or not world.has_judge:
            return []
        return [(f"realign_{m}", m, True) for m in self.cfg.realign_methods] + [
            (realign_stage_name(uri), uri, False) for uri in self.cfg.realign.models
        ]

    def waves(self):
        """Yield waves of stages; the stages of one wave are independent and run side by side."""
        cfg = self.cfg
        d = self._dir
        has_policy = not cfg.world.supplies_pairs
        yield from self._policy_waves() if has_policy else self._world_pairs_waves()
        encoder = cfg.features.encoder
        if encoder == "hidden:base":
            encoder = f"hidden:{d('base_policy') / 'policy'}"
        yield [
            Stage(
                "features",
                stage_features,
                to_dict(cfg.features),
                ["pairs", "base_policy"] if has_policy else ["pairs"],
                {
                    "pairs_dir": d("pairs"),
                    "encoder": encoder,
                    "batch_size": cfg.features.batch_size,
                    "cache_dir": self.store / "cache" / "features",
                },
            ),
        ] + (
            [
                Stage(
                    "logprobs",
                    stage_logprobs,
                    self._heldout_key(),  # keyed by the held-out texts it scores, not by the prompts stage
                    ["pairs", "base_policy", self._expert],
                    {
                        "pairs_dir": d("pairs"),
                        "base_dir": d("base_policy"),
                        "expert_dir": d(self._expert),
                        "prompts_dir": d("prompts"),
                    },
                    keyed_by_content=("prompts",),
                )
            ]
            if has_policy
            else []
        )
        first_seed = cfg.seeds[0]
        yield [
            Stage(
                "irl",
                stage_irl,
                {"irl": to_dict(cfg.irl), "seeds": list(cfg.seeds)},
                ["pairs", "features"],
                {
                    "pairs_dir": d("pairs"),
                    "features_dir": d("features"),
                    "irl_cfg": cfg.irl,
                    "seeds": list(cfg.seeds),
                    "encoder": encoder,
                },
                artifacts=("rewards", "curves.json"),
                metric_view=irl_metrics,
                track=track_irl,
            ),
            Stage(
                "subtype_transfer",
                stage_subtype_transfer,
                {"irl": to_dict(cfg.irl), "seed": first_seed},
                ["pairs", "features"],
                {"pairs_dir": d("pairs"), "features_dir": d("features"), "irl_cfg": cfg.irl, "seed": first_seed},
                artifacts=("subtype_transfer.json",),
                written=transfer_files,
                metric_view=transfer_metrics,
            ),
        ]
        # The implicit reward's β (it only scales the reward).
        implicit = {"logprobs_dir": d("logprobs"), "beta": self._implicit_beta()} if has_policy else {}
        yield [
            Stage(
                "evaluate",
                stage_evaluate,
                {"beta": self._implicit_beta()} if has_policy else {},
                ["pairs", "features", "irl", "prompts"] + (["logprobs"] if has_policy else []),
                {
                    "pairs_dir": d("pairs"),
                    "features_dir": d("features"),
                    "irl_dir": d("irl"),
                    "prompts_dir": d("prompts"),
                    "encoder": encoder,
                    "cache_dir": self.store / "cache" / "features",
                    **implicit,
                },
                uses_model=False,
                artifacts=("metrics.json", "analyses.json", "reward_distributions.png", "irl_training_curves.png"),
                written=evaluate_files,
                metric_view=no_metrics,
                track=track_method_runs,
            ),
        ] + [
            Stage(
                stage_name,
                stage_realign,
                {
                    "rlhf": to_dict(cfg.realign.rlhf),
                    "evaluation": to_dict(cfg.evaluation),
                    **({"method": source, "seed": first_seed} if from_irl else {"model": source}),
                },
                ["base_policy", "irl", "prompts"] if from_irl else ["base_policy", "prompts"],
                {
                    "world_cfg": cfg.world,
                    "base_dir": d("base_policy"),
                    "reward": d("irl") / "rewards" / source / f"seed{first_seed}" if from_irl else source,
                    "prompts_dir": d("prompts"),
                    "rlhf_cfg": cfg.realign.rlhf,
                    "eval_cfg": cfg.evaluation,
                    "tracking_uri": None if from_irl else self.tracking_uri,
                },
                artifacts=("eval_completions.jsonl", "curves.json"),
                track=track_rlhf_curves,
                orchestrates=cfg.realign.rlhf.on_ray_train,  # its Ray Train workers hold the resources
            )
            for stage_name, source, from_irl in self._realign_targets()
        ]

    def _dir(self, name: str) -> Path:
        return self.outputs[name].path

    def plan(self) -> list[dict]:
        """``fairl run --dry-run``: every stage, in wave order, with its content key and whether its finished output
        would be reused or it would run. Starts no Ray and no MLflow and writes nothing in the workdir; the prompts
        stage (cheap, in-process) is drawn into a temporary directory when it is not finished, because later keys
        hash the prompts it draws (a world without a policy draws none: its later keys do not read them)."""
        import tempfile

        self.outputs = {}
        rows = []
        with tempfile.TemporaryDirectory(prefix="fairl-plan-") as tmp:
            for wave_no, wave in enumerate(self.waves()):
                for stage in wave:
                    check_inputs(stage, self.outputs)
                    key = stage_key(stage.name, stage.config, {u: self.outputs[u].key for u in stage.upstream})
                    output = stage_output(self.store, stage.name, key)
                    self.outputs[stage.name] = output
                    problem = output.problem(self.verify)
                    rows.append(
                        {
                            "wave": wave_no,
                            "stage": stage.name,
                            "key": key,
                            "action": "reuse" if problem is None else "run",
                            "problem": problem if problem and output.path.exists() else None,
                            "dir": str(output.path),
                            "uses_model": stage.uses_model,
                        }
                    )
                    if problem is not None and stage.draft_in_plan:
                        draft = Path(tmp) / stage.name
                        draft.mkdir()
                        stage.fn(draft, **stage.kwargs)
                        self.outputs[stage.name] = StageOutput(stage.name, key, draft)
        return rows

    def _rel(self, path: Path) -> str:
        """A path inside the workdir as results.json records it: relative, so a copied workdir reads itself."""
        return os.path.relpath(path, self.workdir)  # ../../stages/… for a study variant's shared store

    def _resource_requests(self) -> dict[str, dict[str, float]]:
        """What one stage task or model worker asks of a node, by the config key that sets it."""
        cpus = self.cfg.resources.cpus_per_task
        requests = {"resources.cpus_per_task": {"CPU": cpus}}
        if self.gpus:
            requests["resources.gpus_per_worker"] = {"CPU": cpus, "GPU": self.gpus}
        return requests

    # -- run ----------------------------------------------------------------------------------------------

    def _run_wave(self, wave: list[Stage]) -> None:
        runner = StageRunner()
        for stage in wave:
            output = self.admit(stage)
            if output is not None:
                self.launch(runner, stage, output)
        try:
            for done in runner.finished():
                self.landed(done)
        except StageFailed as failed:
            raise self.failed(failed) from failed.cause

    def admit(self, stage: Stage) -> StageOutput | None:
        """Key ``stage`` on its upstream outputs; a finished output is reused here (None), else it is returned, to be
        computed."""
        check_inputs(stage, self.outputs)
        key = stage_key(stage.name, stage.config, {u: self.outputs[u].key for u in stage.upstream})
        output = stage_output(self.store, stage.name, key)
        self.outputs[stage.name] = output
        problem = output.problem(self.verify)
        if problem is None:
            self.reuse(stage, output, "reused  ")
            return None
        if output.path.exists():  # the fresh output replaces it (StageWriter)
            self.log(f"[fairl] {stage.name}: stage output {_damage(problem)} ({problem}), recomputing")
        return output

    def reuse(self, stage: Stage, output: StageOutput, how: str) -> None:
        """A finished output (of an earlier run, or of another variant of the study: ``how``) recorded as reused."""
        self.summaries[stage.name] = output.summary()
        self.log(f"[fairl] {stage.name:<24} {how} {self._rel(output.path)}")
        if self.parent_run is None:  # tracked once a stage runs, or not at all in a fully reused rerun
            self._deferred.append((stage, output, time.time()))
        else:
            self._track_reused(stage, output, time.time())

    def launch(self, runner: StageRunner, stage: Stage, output: StageOutput) -> None:
        """Start the stage's MLflow run and its Ray task with the resources it declares."""
        if self.parent_run is None:
            self._open_parent()
        self.log(f"[fairl] {stage.name:<24} running  ...")
        t0 = time.time()  # the stage's MLflow run starts with it (and ends with it, in landed)
        run_id = self._start_stage_run(stage, output, reused=False, started=t0)
        model_task = stage.uses_model and not stage.orchestrates
        runner.launch(
            stage.name,
            output,
            stage.fn,
            stage.kwargs,
            num_cpus=0 if stage.orchestrates else self.cfg.resources.cpus_per_task,
            num_gpus=self.gpus if model_task else 0,
            context=(self, stage, t0, run_id),
            resources=self.cfg.resources.custom if model_task else None,
        )

    def landed(self, done) -> None:
        """A launched stage finished (``StageRunner.finished``): its summary, log line, MLflow run and note."""
        _, stage, t0, run_id = done.context
        self.summaries[stage.name] = done.summary
        if done.placement:  # which node ran it, and when it ran (not when it was queued): a cluster's record
            self.tracker.client.set_tag(run_id, "fairl.node_id", str(done.placement["node_id"]))
            for key in ("began", "ended"):
                self.tracker.client.set_tag(run_id, f"fairl.task_{key}", f"{done.placement[key]:.3f}")
        self.log(f"[fairl] {stage.name:<24} done     in {done.ended - t0:6.1f}s")
        self._finish_stage_run(stage, done.output, run_id, reused=False, seconds=done.ended - t0, ended=done.ended)
        note = stage.note(self.summaries[stage.name], self.cfg) if stage.note else None
        if note:
            self.log(note)

    def failed(self, failed: StageFailed) -> StageError:
        """A launched stage failed: its MLflow run ends FAILED; the error to raise, in one line."""
        self.log(f"[fairl] {failed.name:<24} FAILED (finished stages are kept; rerun to resume)")
        self.tracker.end_run(self._open_runs.pop(failed.name), "FAILED")
        return self._stage_error(failed.name, failed.output, failed.cause)

    def _stage_error(self, name: str, output: StageOutput, err: Exception) -> StageError:
        """One plain line for a failed stage; its full traceback (Ray's, colour codes stripped) goes to a file."""
        cause = getattr(err, "cause", None) or err  # a RayTaskError carries the stage's own exception
        where = self.workdir / "logs" / f"{name}.error.txt"
        try:
            where.parent.mkdir(exist_ok=True)
            where.write_text(_plain("".join(traceback.format_exception(err))))
            saved = f"full traceback in {where}"
        except OSError:
            saved = "its full traceback could not be written either"
        if is_disk_full(cause):
            return StageError(f"{name}: {_disk_full(cause, output.path.parent)} ({saved})")
        text = _plain(str(cause)).strip()
        return StageError(f"{name}: {text.splitlines()[0] if text else type(cause).__name__} ({saved})")

    # -- MLflow ------------------------------------------------------------------------------------------
    #
    # One parent run per pipeline run, one child per stage, and under ``evaluate`` one child per IRL method (params:
    # what the method is and the hyperparameters it reads; metrics ``test.<metric>`` / ``heldout.<metric>``), so
    # MLflow's compare view puts methods side by side. A stage's run starts when the stage is launched and ends
    # when it finishes (its artifacts are uploaded after, with the end time kept). The parent is opened when the
    # first stage runs: a rerun that reuses every stage adds no runs and reports the earlier parent of the same
    # workdir and config (tagged ``fairl.reused_reruns``), so reruns never pile up duplicate trees.

    def _run_key(self) -> str:
        """What makes two pipeline runs the same run: the workdir and the whole config."""
        import hashlib

        return hashlib.sha256(f"{self.workdir}\n{config_to_yaml(self.cfg)}".encode()).hexdigest()[:16]

    def _open_parent(self) -> None:
        tags = {"fairl.workdir": str(self.workdir), RUN_KEY_TAG: self._run_key()}
        self.parent_run = self.tracker.start_run(
            self.cfg.name, parent_run_id=self.study_run, tags=tags, start_time=self.started
        )
        self.tracker.log_params(self.parent_run, flatten(to_dict(self.cfg)))
        self.tracker.log_artifact(self.parent_run, self.workdir / "config.yaml")
        self.log(f"[fairl] MLflow run {self.parent_run} in {self.tracking_uri}")
        for stage, output, at in self._deferred:
            self._track_reused(stage, output, at)
        self._deferred = []

    def _reuse_parent(self) -> bool:
        """Every stage was reused: point at the last finished parent of this workdir and config whose stage runs
        record these very stage outputs, and tag it; False when there is none (then a new parent records them)."""
        client, experiments = self.tracker.client, [self.tracker.experiment_id]
        found = client.search_runs(
            experiments,
            f"tags.`{RUN_KEY_TAG}` = '{self._run_key()}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            return False
        parent = found[0]
        children = {
            r.info.run_name: r
            for r in client.search_runs(experiments, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        }
        if any(
            name not in children or children[name].data.tags.get("fairl.stage_key") != output.key
            for name, output in self.outputs.items()
        ):
            return False
        self.parent_run, self.parent_reused = parent.info.run_id, True
        reruns = int(parent.data.tags.get("fairl.reused_reruns", "0")) + 1
        client.set_tag(self.parent_run, "fairl.reused_reruns", str(reruns))
        client.set_tag(self.parent_run, "fairl.last_reused_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        for stage, output, _ in self._deferred:
            self._record_stage(stage.name, output, children[stage.name].info.run_id, reused=True, seconds=0.0)
        self._deferred = []
        self.log(f"[fairl] every stage reused: no new MLflow runs; this is run {self.parent_run} again")
        return True

    def _start_stage_run(self, stage: Stage, output: StageOutput, reused: bool, started: float) -> str:
        run_id = self.tracker.start_run(
            stage.name,
            parent_run_id=self.parent_run,
            tags={
                "fairl.stage": stage.name,
                "fairl.stage_key": output.key,
                "fairl.reused": str(reused).lower(),
                "fairl.stage_dir": self._rel(output.path),
            },
            start_time=started,
        )
        if isinstance(stage.config, dict) and stage.config:
            self.tracker.log_params(run_id, flatten(stage.config))
        self._open_runs[stage.name] = run_id
        return run_id

    def _track_reused(self, stage: Stage, output: StageOutput, at: float) -> None:
        run_id = self._start_stage_run(stage, output, reused=True, started=at)
        self._finish_stage_run(stage, output, run_id, reused=True, seconds=0.0, ended=at)

    def _finish_stage_run(
        self, stage: Stage, output: StageOutput, run_id: str, reused: bool, seconds: float, ended: float
    ) -> None:
        tracker = self.tracker
        summary = self.summaries[stage.name]
        metrics = flatten(stage.metric_view(summary))
        metrics["stage_seconds"] = seconds
        tracker.log_metrics(run_id, metrics)
        logged = [*stage.artifacts, *(stage.written(summary) if stage.written else [])]
        for rel in logged:
            if (output.path / rel).exists():  # analyses write a table or figure only when there is something to show
                tracker.log_artifact(run_id, output.path / rel, None if "." in rel else rel)
        if stage.track:
            stage.track(self, output, run_id, summary, ended)
        tracker.end_run(self._open_runs.pop(stage.name), end_time=ended)
        self._record_stage(stage.name, output, run_id, reused, seconds)

    def _log_method_runs(self, evaluate_run: str, summary: dict, at: float) -> None:
        """One child run of the evaluate stage's run per IRL method (see the section comment)."""
        irl = to_dict(self.cfg.irl)
        failure_path = summary.get("analyses", {}).get("failure_path", {})
        for method, stats in summary["per_method"].items():
            run_id = self.tracker.start_run(
                method,
                parent_run_id=evaluate_run,
                tags={
                    "fairl.kind": "implicit_reward" if method in IMPLICIT_REWARDS else "method",
                    "fairl.method": method,
                },
                start_time=at,
            )
            if method in IMPLICIT_REWARDS:  # a scored reward, not an IRL method: nothing trained, one seed
                params = {"method": method, "kind": "implicit_reward", "beta": self._implicit_beta(), "seeds": [0]}
            else:
                params = {**method_params(method, irl), "seeds": list(self.cfg.seeds)}
            self.tracker.log_params(run_id, params)
            self.tracker.log_metrics(run_id, method_metrics(stats, failure_path.get(method)))
            self.tracker.end_run(run_id, end_time=at)

    def _record_stage(self, name: str, output: StageOutput, run_id: str, reused: bool, seconds: float) -> None:
        self.stage_runs[name] = {
            "run_id": run_id,
            "key": output.key,
            "reused": reused,
            "dir": self._rel(output.path),
            "seconds": round(seconds, 2),
        }

    # -- results ------------------------------------------------------------------------------------------

    def _results(self, seconds: float) -> dict:
        evaluation = self.summaries["evaluate"]
        if self.cfg.world.supplies_pairs:
            toxicity = NO_POLICY
        elif not self.cfg.world.has_judge:
            toxicity = NO_JUDGE_TOXICITY
        else:
            reference = self.summaries["reference_toxicity"]
            toxicity = {"base": reference["base"], "expert": reference["expert"]}
        for stage_name, source, _ in self._realign_targets():
            s = self.summaries[stage_name]
            toxicity[f"realigned:{source}"] = {k: s[k] for k in ("toxicity_rate", "mean_rstar", "n")}
        return {
            "mlflow": {
                "tracking_uri": self.tracking_uri,
                "parent_run_id": self.parent_run,
                "experiment_id": self.tracker.experiment_id,
            },
            "workdir": str(self.workdir),
            "seconds": round(seconds, 1),
            "seeds": list(self.cfg.seeds),
            "ground_truth": self.cfg.world.has_judge,  # False: R* unknown, only what needs none was computed
            "implicit_reward_beta": None if self.cfg.world.supplies_pairs else self._implicit_beta(),
            "metrics": {"per_member": evaluation["per_member"], "per_method": evaluation["per_method"]},
            "analyses": {**evaluation.get("analyses", {}), "subtype_transfer": self.summaries["subtype_transfer"]},
            "toxicity": toxicity,
            "pairs": self.summaries["pairs"],
            "stages": self.stage_runs,
            "plots": {
                "reward_distributions": self._rel(self._dir("evaluate") / "reward_distributions.png"),
                "irl_training_curves": self._rel(self._dir("evaluate") / "irl_training_curves.png"),
            },
        }

    def _finish(self, results: dict) -> None:
        from fairl_ray.html_report import build_report
        from fairl_ray.report import format_report

        path = self.workdir / "results.json"
        atomic_write_bytes(path, json.dumps(results, indent=2).encode())
        report = format_report(results)
        (self.workdir / "report.md").write_text(report)
        self.tracker.log_artifact(self.parent_run, build_report(self.workdir)[0])  # report.html; report.md grows
        self.tracker.log_artifact(self.parent_run, path)
        self.tracker.log_artifact(self.parent_run, self.workdir / "report.md")
        flat = {}
        for method, metrics in results["metrics"]["per_method"].items():
            for name, stats in metrics.items():
                flat[f"{method}.{name}"] = stats["mean"]
        for model, tox in (results["toxicity"] if isinstance(results["toxicity"], dict) else {}).items():
            flat[f"toxicity.{model.replace(':', '.')}"] = tox["toxicity_rate"]
        for method, fp in results["analyses"].get("failure_path", {}).items():
            flat[f"{method}.failure_path_share"] = fp["share"]["mean"]
        if not self.parent_reused:  # the reused parent has these very numbers already
            self.tracker.log_metrics(self.parent_run, flat)
        self.log(report)
        self.log(f"[fairl] results: {path}")
        self.log(f"[fairl] browse runs: fairl ui --workdir {self.workdir}")


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _plain(text: str) -> str:
    """Ray colours the tracebacks it forwards; a log file or a redirected terminal wants none of it."""
    return _ANSI.sub("", text)


def _disk_full(err: BaseException, where: Path) -> str:
    """The disk-full cause: which file, how much is free there, how much the failed stage had written."""
    free = shutil.disk_usage(where).free
    notes = "".join(f"; {n}" for n in getattr(err, "__notes__", []))
    return (
        f"no space left on the device writing {getattr(err, 'filename', None) or where} "
        f"({free / 1e6:.1f} MB free there{notes}); "
        "free more than that and rerun (finished stages are kept)"
    )


def _damage(problem: str) -> str:
    """How a stage output that exists but cannot be reused is described: no marker means it never finished."""
    return "incomplete" if problem.startswith("no ") else "corrupt"


def realign_stage_name(uri: str) -> str:
    """The re-RLHF stage of an MLflow reward: ``models:/fairl-max_margin/3`` → ``realign_models-fairl-max_margin-3``
    (a directory name: letters, digits, ``_ . -``)."""
    return "realign_" + re.sub(r"[^A-Za-z0-9_.-]+", "-", uri.replace(":/", "-")).strip("-")


def reward_model_name(method: str, seed: int) -> str:
    """The name of a reward's MLflow model under the IRL stage's run (``runs:/<irl run>/<name>``)."""
    return f"reward_{method}_seed{seed}"
