"""Tests for minillm.memory: measured parameter bytes, KV-cache bytes per token, the rules of thumb."""
import pytest

from minillm import GPT, GPTConfig
from minillm.memory import (GB, MB, REFERENCE_MODELS, inference_table, kv_cache_bytes_per_token,
                            parameter_bytes, weights_bytes)
from minillm.scaling import parameter_count


def test_parameter_bytes_are_measured_from_the_arrays():
    config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
    assert parameter_bytes(GPT(config)) == 4 * parameter_count(config)          # float32, wte once
    config64 = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, dtype="float64")
    assert parameter_bytes(GPT(config64)) == 8 * parameter_count(config64)


def test_kv_cache_bytes_per_token_from_the_shapes():
    # 2 (K, V) * layers * width * 2 bytes when every head keeps its own keys
    assert kv_cache_bytes_per_token(REFERENCE_MODELS["GPT-2 (124M)"]) == 2 * 12 * 768 * 2 == 36864
    assert kv_cache_bytes_per_token(REFERENCE_MODELS["Llama-2-7B"]) == 2 * 32 * 4096 * 2
    assert kv_cache_bytes_per_token(REFERENCE_MODELS["GPT-3 (175B)"], "float32") == 2 * 96 * 12288 * 4
    # grouped-query attention: 8 KV heads of 128 for 64 query heads
    assert kv_cache_bytes_per_token(REFERENCE_MODELS["Llama-2-70B (GQA)"]) == 2 * 80 * 8 * 128 * 2
    # a GPTConfig works too
    config = GPTConfig(vocab_size=5, block_size=4, n_layer=3, n_head=2, n_embd=8)
    assert kv_cache_bytes_per_token(config, "float32") == 2 * 3 * 8 * 4


def test_rules_of_thumb():
    rows = {row["name"]: row for row in inference_table()}
    assert rows["Llama-2-7B"]["weights_gb"] == pytest.approx(13.48, abs=0.01)   # "2 x 7B = 14 GB"
    assert 0.5 < rows["Llama-2-7B"]["kv_mb_per_token"] < 2                     # "1 MB per token" holds
    assert rows["GPT-2 (124M)"]["kv_mb_per_token"] < 0.05                      # ... and does not here
    assert rows["GPT-3 (175B)"]["kv_mb_per_token"] > 4
    assert rows["GPT-2 (124M)"]["n_params"] == 124_439_808                      # the exact GPT-2 count
    assert weights_bytes(7e9) == 14 * GB and MB == 10 ** 6


def test_errors_name_the_field():
    with pytest.raises(ValueError, match="dtype must be one of"):
        weights_bytes(10, "float8")
    with pytest.raises(ValueError, match="no 'n_embd'"):
        kv_cache_bytes_per_token({"n_layer": 2, "n_head": 2})
    with pytest.raises(ValueError, match="n_kv_head"):
        kv_cache_bytes_per_token({"n_layer": 2, "n_head": 4, "n_embd": 8, "n_kv_head": 3})
