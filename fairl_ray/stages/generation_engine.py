"""Generation engines: what samples completions from a policy folder and scores completions' log-probs.

One small interface (:class:`GenerationEngine` loads a :class:`LoadedPolicy`, which ``generate``\\ s one shard of
prompts and gives ``logprobs`` of completions), two engines, chosen by ``generation.engine``:

* ``hf`` (default, CPU and GPU): transformers ``generate`` in the process (a stage, or a worker of the generation
  pool, :mod:`fairl_ray.orchestration.actors`). A shard is sampled under ``torch.manual_seed(shard seed)``, so
  completions depend on (run seed, shard index) only, whatever the number of workers.
* ``vllm`` (a GPU, ``pip install vllm``): a vLLM ``LLM`` engine inside the pool worker (one per worker, on the GPU
  Ray assigned it; its memory share is the worker's GPU fraction) with continuous batching and paged attention,
  OpenRLHF's and veRL's rollout engine. **Seeding:** every request gets its own vLLM seed, derived from (shard
  seed, position in the shard), so completions are still a function of (run seed, shard index, position) and
  independent of the number of workers; they are *not* the ``hf`` engine's completions for the same seed (another
  sampler, another random stream), and vLLM documents that batch composition can change floating-point results
  on a GPU, so two vLLM runs are equal in distribution and usually, not always, token for token.

A LoRA policy folder is merged into its base for either engine (vLLM reads a merged copy in a temporary folder).
The implicit-reward stage's log-probs still use transformers (``stages.implicit_reward``); ``logprobs`` here is
the same quantity, for engines that score faster.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from fairl_ray.registry import Registry


class LoadedPolicy(ABC):
    """A policy loaded by an engine, ready to generate and score."""

    @abstractmethod
    def generate(self, prompts: list[str], cfg, seed: int) -> list[str]:
        """One completion per prompt for one shard seeded with ``seed`` (``cfg``: a ``GenerationConfig``): the new
        text only, special tokens stripped, surrounding whitespace trimmed."""

    @abstractmethod
    def logprobs(self, prompts: list[str], completions: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Σ_t log π(y_t | x, y_<t) of each completion given its prompt, and its token count (the prompt and the
        completion tokenised apart and concatenated, as ``stages.implicit_reward.completion_logprobs``)."""

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the policy runs."""


class GenerationEngine(ABC):
    """``generation.engine: <name>``."""

    requires: str | None = None
    """The package the engine needs beyond the base install (named in the config error when it is missing)."""

    def problem(self) -> str | None:
        """Why this engine cannot be selected in this installation (None: it can); checked at config load."""
        if self.requires and importlib.util.find_spec(self.requires) is None:
            return f"needs the {self.requires} package (pip install {self.requires}) and a GPU"
        return None

    @abstractmethod
    def load(self, policy_dir: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> LoadedPolicy:
        """Load the policy in ``policy_dir`` (a whole model or LoRA adapters) on ``device`` in ``dtype``."""


# -- hf: transformers generate -------------------------------------------------------------------------------------


def hf_generate(model, tokenizer, prompts: list[str], cfg, seed: int) -> list[str]:
    """One ``generate`` call on one shard of prompts (left padding) seeded with ``seed``; returns the decoded new
    tokens only (special tokens stripped, surrounding whitespace trimmed)."""
    import torch

    sample_kwargs = dict(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0) if cfg.do_sample else {}
    torch.manual_seed(seed)
    with torch.inference_mode():
        enc = tokenizer(list(prompts), return_tensors="pt", padding=True).to(model.device)
        gen = model.generate(
            **enc,
            max_new_tokens=cfg.max_new_tokens,
            do_sample=cfg.do_sample,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **sample_kwargs,
        )
    new = gen[:, enc["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


class HFPolicy(LoadedPolicy):
    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    @property
    def device(self) -> str:
        return str(self.model.device)

    @property
    def dtype(self) -> str:
        return str(self.model.dtype)

    def generate(self, prompts, cfg, seed):
        return hf_generate(self.model, self.tokenizer, prompts, cfg, seed)

    def logprobs(self, prompts, completions):
        from fairl_ray.stages.implicit_reward import completion_logprobs

        return completion_logprobs(self.model, self.tokenizer, prompts, completions)


class HFEngine(GenerationEngine):
    def load(self, policy_dir, device="auto", dtype="auto"):
        from fairl_ray.policy_io import load_policy

        return HFPolicy(*load_policy(policy_dir, device=device, dtype=dtype))


# -- vllm -------------------------------------------------------------------------------------------------------


def request_seeds(seed: int, n: int) -> list[int]:
    """vLLM's per-request seeds of a shard seeded ``seed``: request ``j`` gets an independent stream of (seed, j)."""
    states = np.random.SeedSequence(int(seed)).spawn(n)
    return [int(s.generate_state(1)[0] % (2**31 - 1)) for s in states]


def gpu_share() -> float:
    """The GPU fraction Ray assigned this worker (1.0 outside Ray): vLLM's ``gpu_memory_utilization`` is scaled by
    it, so workers sharing a GPU (``resources.gpus_per_worker: 0.5``) do not each reserve 90 % of it."""
    try:
        import ray

        if ray.is_initialized():
            return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 1.0)) or 1.0
    except Exception:  # pragma: no cover - outside a Ray worker
        pass
    return 1.0


class VLLMPolicy(LoadedPolicy):
    def __init__(self, llm, tokenizer, merged_dir: Path | None):
        self.llm, self.tokenizer, self._merged_dir = llm, tokenizer, merged_dir

    @property
    def device(self) -> str:
        return "cuda:0"

    def generate(self, prompts, cfg, seed):
        from vllm import SamplingParams

        sampled = dict(temperature=cfg.temperature, top_p=cfg.top_p) if cfg.do_sample else dict(temperature=0.0)
        params = [
            SamplingParams(n=1, max_tokens=cfg.max_new_tokens, seed=s, skip_special_tokens=True, **sampled)
            for s in request_seeds(seed, len(prompts))
        ]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outputs]

    def logprobs(self, prompts, completions):
        from vllm import SamplingParams, TokensPrompt

        tok = self.tokenizer
        seqs, spans = [], []
        for x, y in zip(prompts, completions):
            p = tok(x, add_special_tokens=True)["input_ids"] or [tok.eos_token_id]
            c = tok(y, add_special_tokens=False)["input_ids"]
            seqs.append(p + c)
            spans.append((len(p), len(c)))
        # prompt_logprobs=0: each prompt position's own token's log-prob (position 0 has none)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=s) for s in seqs],
            SamplingParams(max_tokens=1, prompt_logprobs=0),
            use_tqdm=False,
        )
        sums = np.zeros(len(seqs))
        for i, (out, seq, (start, n)) in enumerate(zip(outputs, seqs, spans)):
            sums[i] = sum(out.prompt_logprobs[t][seq[t]].logprob for t in range(start, start + n))
        return sums, np.array([n for _, n in spans], dtype=np.int64)

    def __del__(self):
        if self._merged_dir is not None:
            shutil.rmtree(self._merged_dir, ignore_errors=True)


class VLLMEngine(GenerationEngine):
    requires = "vllm"

    def load(self, policy_dir, device="auto", dtype="auto"):
        from fairl_ray.devices import select_device
        from fairl_ray.policy_io import is_adapter, load_policy, load_tokenizer, resolve_dtype

        device = select_device(device)
        if device == "cpu":
            raise RuntimeError(
                "generation.engine vllm: this worker was assigned no GPU (set resources.gpus_per_worker > 0 on a "
                "GPU node, or generation.engine: hf)"
            )
        from vllm import LLM

        merged = None
        path = Path(policy_dir)
        if is_adapter(path):  # merge on export: vLLM serves the merged weights
            merged = Path(tempfile.mkdtemp(prefix="fairl-vllm-merged-"))
            model, tokenizer = load_policy(path, device="cpu", dtype="float32")
            model.save_pretrained(merged, safe_serialization=True)
            tokenizer.save_pretrained(merged)
            path = merged
        import torch

        torch_dtype = resolve_dtype(device, dtype, torch.cuda.is_bf16_supported())
        llm = LLM(
            model=str(path),
            tokenizer=str(path),
            dtype=str(torch_dtype).removeprefix("torch."),  # resolve_dtype's three: float32, bfloat16, float16
            trust_remote_code=False,
            gpu_memory_utilization=0.85 * gpu_share(),
            seed=0,  # every request carries its own seed (request_seeds)
        )
        return VLLMPolicy(llm, load_tokenizer(path), merged)


#: Every generation engine by its ``generation.engine`` name. A new one: a GenerationEngine subclass and a line.
GENERATION_ENGINES: Registry[GenerationEngine] = Registry("generation engine")
GENERATION_ENGINES.register("hf", HFEngine())
GENERATION_ENGINES.register("vllm", VLLMEngine())

__all__ = [
    "GENERATION_ENGINES",
    "GenerationEngine",
    "HFEngine",
    "HFPolicy",
    "LoadedPolicy",
    "VLLMEngine",
    "gpu_share",
    "hf_generate",
    "request_seeds",
]
