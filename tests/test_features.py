"""Encoders (packaged MiniLM, hidden-state of a tiny local GPT-2) and the per-(encoder, text) feature cache."""

import json

import numpy as np
import pytest

from fairl_ray.features import (
    DEFAULT_ENCODER,
    encode_cached,
    load_encoder,
    resolve_encoder_path,
)


class CountingEncoder:
    """A deterministic fake encoder that counts how many texts it was asked to encode."""

    def __init__(self, name="count-enc", dim=4):
        self.name, self.dim, self.batch_size = name, dim, 2
        self.calls, self.encoded = 0, []

    def encode(self, texts):
        self.calls += 1
        self.encoded.extend(texts)
        return np.array([[len(t), t.count("a"), hash(t) % 7, 1.0][: self.dim] for t in texts], dtype=np.float32)


def test_resolve_encoder_path(tmp_path):
    p = resolve_encoder_path(DEFAULT_ENCODER)
    assert (p / "config.json").is_file() and (p / "modules.json").is_file()
    assert resolve_encoder_path(str(tmp_path)) == tmp_path.resolve()
    with pytest.raises(ValueError, match="unknown encoder"):
        resolve_encoder_path("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(ValueError):
        load_encoder("hidden:" + str(tmp_path / "nope"))


def test_cache_second_call_encodes_nothing(tmp_path):
    enc = CountingEncoder()
    texts = ["a cat", "bad", "a cat", "xyz", "", "bad"]
    first = encode_cached(enc, texts, tmp_path / "cache")
    assert first.shape == (6, 4) and first.dtype == np.float32
    assert sorted(enc.encoded) == sorted({"a cat", "bad", "xyz", ""})  # deduplicated
    np.testing.assert_array_equal(first[0], first[2])
    n_calls = enc.calls
    second = encode_cached(enc, texts, tmp_path / "cache")
    assert enc.calls == n_calls  # nothing encoded
    np.testing.assert_array_equal(first, second)
    # partially new input: only the new text is encoded, order preserved
    third = encode_cached(enc, ["new one", "xyz"], tmp_path / "cache")
    assert enc.encoded[-1] == "new one" and enc.encoded.count("xyz") == 1
    np.testing.assert_array_equal(third[1], first[3])
    # a different encoder name is a different namespace
    other = CountingEncoder(name="other-enc")
    encode_cached(other, ["a cat"], tmp_path / "cache")
    assert other.encoded == ["a cat"]
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert {s["encoder"] for s in index["shards"]} == {"count-enc", "other-enc"}
    assert all((tmp_path / "cache" / s["file"]).is_file() for s in index["shards"])
    assert not list((tmp_path / "cache").glob("*.tmp"))
    assert encode_cached(enc, [], tmp_path / "cache").shape == (0, 4)


def test_cache_survives_failed_encode(tmp_path):
    """An encoder crash mid-way leaves a valid cache holding the finished chunks only."""

    class Failing(CountingEncoder):
        def encode(self, texts):
            if "boom" in texts:
                raise RuntimeError("boom")
            return super().encode(texts)

    enc = Failing()
    with pytest.raises(RuntimeError):
        encode_cached(enc, ["a", "b", "c", "boom"], tmp_path, shard_rows=2)  # chunks of 2 texts
    ok = CountingEncoder()
    encode_cached(ok, ["a", "b"], tmp_path)
    assert ok.encoded == []  # the first chunk was written before the crash


def test_minilm_semantics_and_cache(tmp_path):
    enc = load_encoder(DEFAULT_ENCODER)
    assert load_encoder(DEFAULT_ENCODER) is enc  # cached per process
    assert enc.name == DEFAULT_ENCODER and enc.dim == 384
    texts = ["The weather is sunny and warm today.", "It is a bright, hot, sunny day.", "My tax return is overdue."]
    x = encode_cached(enc, texts, tmp_path)
    assert x.shape == (3, 384) and x.dtype == np.float32
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
    assert cos[0, 1] > cos[0, 2] + 0.2 and cos[0, 1] > cos[1, 2] + 0.2
    np.testing.assert_allclose(encode_cached(enc, texts[::-1], tmp_path), x[::-1])


def _tiny_gpt2(path, padding_side):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>", "the", "cat", "is", "nice", "very", "a", "dog", "rude"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>", padding_side=padding_side
    )
    fast.save_pretrained(path)
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=1,
        n_embd=32,
        n_head=2,
        vocab_size=len(words),
        n_positions=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    GPT2LMHeadModel(cfg).save_pretrained(path)


@pytest.mark.parametrize("side", ["right", "left"])
def test_hidden_state_encoder_padding_invariant(tmp_path, side):
    _tiny_gpt2(tmp_path, side)
    enc = load_encoder("hidden:" + str(tmp_path), device="cpu")
    assert enc.dim == 32 and enc.name == "hidden:" + str(tmp_path.resolve())
    assert enc.tokenizer.padding_side == side
    alone = enc.encode(["the cat"])
    batch = enc.encode(["the cat", "a very very rude dog is the cat"])
    assert batch.shape == (2, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)
    assert not np.allclose(batch[0], batch[1])
    # features are read at the last real token: a different last word changes them
    assert not np.allclose(enc.encode(["the cat nice"])[0], alone[0])
    y = encode_cached(enc, ["the cat", "the dog"], tmp_path / "cache")
    np.testing.assert_allclose(y[0], alone[0], atol=1e-5)
