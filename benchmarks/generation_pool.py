"""Generation pool throughput: N policy workers (Ray actors) against 1, same prompts, same shards, same seeds.

    OMP_NUM_THREADS=1 python benchmarks/generation_pool.py                       # 2 CPU workers vs 1 (2 cores)
    python benchmarks/generation_pool.py --workers 2 --n-embd 384 --prompts 1024   # a bigger model
    python benchmarks/generation_pool.py --gpus-per-worker 1 --shape smollm2-135m --batch 256   # on a GPU node

The policy is random-init (nothing is downloaded): by default a 4-layer GPT-2 (n_embd 256) over the synthetic
world's word-level tokenizer, saved to a temp directory; ``--shape smollm2-135m`` / ``pythia-410m`` build
random-init models of those shapes (for a GPU). Each configuration runs the whole pool (actor start, model load,
generation), and checks that the completions are identical across worker counts. Tokens are counted as new
tokens up to EOS. The ratio inside one run is the number that matters (DESIGN §8), not bare times; report the
machine's load beside it: ``cpus_obtained`` (worker CPU-seconds per wall-second) shows how much of the cores the
pool actually got; on a machine shared with other work, 2 workers cannot beat 1 by more than that allows.

Measured (2-core machine shared by 4 engineers; ``OMP_NUM_THREADS=1 python benchmarks/generation_pool.py``,
4,096 prompts, shards of 16, 32 new tokens, 110,768 tokens, best of 2 alternating runs each):

* quiet moment (load average 0.8–1.5): 1 worker 3,827 tokens/s, 2 workers 6,148 tokens/s — **1.61×**, identical
  completions; the workers obtained 0.87 and 1.51 CPUs (actor start + model load, ~3.5 s, is inside the wall
  time: with 1,024 prompts the same comparison gave 1.42×);
* busy moment (load average 6–7 from the other engineers' jobs): 0.80× — the pool obtained 0.34–0.41 CPUs in
  all, and two plain torch processes ran no faster than one (the cores were taken).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_policy(out: Path, shape: str, n_embd: int, n_layer: int) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from fairl_ray.policy_io import save_policy
    from fairl_ray.worlds.synthetic import build_tokenizer

    tok = build_tokenizer()
    torch.manual_seed(0)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if shape == "gpt2":
        cfg = AutoConfig.for_model(
            "gpt2",
            vocab_size=len(tok),
            n_positions=128,
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=max(1, n_embd // 64),
            **ids,
        )
    elif shape == "smollm2-135m":  # SmolLM2-135M: llama, 30 layers, 576 hidden, 9 heads (3 KV), 1536 MLP
        cfg = AutoConfig.for_model(
            "llama",
            vocab_size=49152,
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
            **ids,
        )
    elif shape == "pythia-410m":  # Pythia-410M: gpt_neox, 24 layers, 1024 hidden, 16 heads
        cfg = AutoConfig.for_model(
            "gpt_neox",
            vocab_size=50304,
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            max_position_embeddings=2048,
            rotary_pct=0.25,
            **ids,
        )
    else:
        raise SystemExit(f"unknown --shape {shape}")
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    return save_policy(model, tok, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="pool size compared against 1 worker")
    p.add_argument("--prompts", type=int, default=4096)
    p.add_argument("--batch", type=int, default=16, help="shard size (GenerationConfig.batch_size)")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--shape", default="gpt2", choices=["gpt2", "smollm2-135m", "pythia-410m"])
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--repeats", type=int, default=2, help="runs of each configuration (alternating order)")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    import ray

    from fairl_ray.orchestration.actors import PoolSpec, generate_with_pool
    from fairl_ray.orchestration.ray_runtime import init_ray
    from fairl_ray.stages.generate import GenerationConfig
    from fairl_ray.worlds.synthetic import make_prompts

    tmp = Path(tempfile.mkdtemp(prefix="fairl-genpool-"))
    policy = build_policy(tmp / "policy", args.shape, args.n_embd, args.n_layer)
    prompts = make_prompts(args.prompts, seed=0)
    gen = GenerationConfig(max_new_tokens=args.new_tokens, batch_size=args.batch)
    init_ray(num_cpus=args.cpus)
    load = os.getloadavg()
    rows, outs = [], {}
    # Alternate the configurations (1, N, N, 1, ...) so that a change in the machine's load hits both alike; the
    # best run of each is compared.
    order = [w for r in range(args.repeats) for w in ((1, args.workers) if r % 2 == 0 else (args.workers, 1))]
    for workers in order:
        stats: dict = {}
        t0 = time.perf_counter()
        out = generate_with_pool(
            {"policy": (str(policy), prompts)},
            gen,
            seed=0,
            spec=PoolSpec(workers=workers, num_cpus=1, num_gpus=args.gpus_per_worker),
            stats=stats,
        )["policy"]
        wall = time.perf_counter() - t0
        outs[workers] = out
        tokens = _count_tokens(policy, out)
        cpu = sum(w["cpu_s"] for w in stats.get("workers", []))
        rows.append(
            {
                "workers": workers,
                "wall_s": round(wall, 2),
                "new_tokens": tokens,
                "tokens_per_s": round(tokens / wall, 1),
                # CPU-seconds the workers got while generating, per wall-second: ~workers on an idle machine;
                # below that, other work on the cores took the rest (the pool cannot be faster than that).
                "worker_cpu_s": round(cpu, 2),
                "cpus_obtained": round(cpu / wall, 2),
                "tokens_per_cpu_s": round(tokens / max(cpu, 1e-9), 1),
                "devices": sorted({d for w in stats.get("workers", []) for d in w["devices"].values()}),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ray.shutdown()
    best = {w: max(r["tokens_per_s"] for r in rows if r["workers"] == w) for w in (1, args.workers)}
    result = {
        "shape": args.shape,
        "prompts": args.prompts,
        "shard_size": args.batch,
        "new_tokens": args.new_tokens,
        "cpus": args.cpus,
        "loadavg_at_start": [round(x, 2) for x in load],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "runs": rows,
        "best_tokens_per_s": best,
        "speedup": round(best[args.workers] / best[1], 2),
        "identical_completions": outs[1] == outs[args.workers],
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0 if result["identical_completions"] else 1


def _count_tokens(policy: Path, completions: list[str]) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(policy))
    return sum(len(tok(c, add_special_tokens=False)["input_ids"]) for c in completions)


if __name__ == "__main__":
    sys.exit(main())
