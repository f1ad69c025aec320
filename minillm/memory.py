"""Size: the bytes that store a model's weights, and the KV cache's bytes per token.

The lecture's rules of thumb for inference:

* **"About 2 x the number of parameters in GB."** 16-bit floats take 2 bytes,
  so N parameters need 2 N bytes: 14 GB for 7B. That is exact for the weights
  (``parameter_bytes`` measures it on a real model) and leaves out the KV
  cache and the activations.
* **"1 MB per token."** Generation keeps every layer's keys and values of
  every earlier token (the KV cache, ``minillm.kvcache``). Per token that is

      2 (K and V) * n_layer * n_kv_head * head_dim * bytes per number

  = 2 * n_layer * d_model * 2 bytes in 16-bit when every head keeps its own
  keys (n_kv_head * head_dim = d_model). A Llama-2-7B shape (32 layers, width
  4096) gives 0.52 MB; the rule is right to a factor of 2 for the 7B-13B
  models of its day, not in general: the cache grows as n_layer * d_model
  while the parameters grow as 12 * n_layer * d_model^2, so per parameter a
  bigger model needs less cache per token. GPT-2 (124M) needs 0.037 MB,
  a GPT-3 shape 4.7 MB; grouped-query attention (fewer KV heads than query
  heads) divides the figure by n_head / n_kv_head.

MB and GB are 10^6 and 10^9 bytes, as in the course.
"""
import numbers

from minillm.scaling import parameter_count

MB, GB = 10 ** 6, 10 ** 9
BYTES_PER_NUMBER = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}

# Shapes from the papers and the models' published configs. n_params is the published count
# (Llama's SwiGLU MLP is not GPT-2's 4C, so our GPT-2 formula would not give it).
REFERENCE_MODELS = {
    "GPT-2 (124M)": dict(n_layer=12, n_head=12, n_kv_head=12, n_embd=768, vocab_size=50257, block_size=1024),
    "Llama-2-7B": dict(n_layer=32, n_head=32, n_kv_head=32, n_embd=4096, vocab_size=32000, block_size=4096,
                       n_params=6_738_415_616),
    "Llama-2-70B (GQA)": dict(n_layer=80, n_head=64, n_kv_head=8, n_embd=8192, vocab_size=32000,
                              block_size=4096, n_params=68_976_648_192),
    "GPT-3 (175B)": dict(n_layer=96, n_head=96, n_kv_head=96, n_embd=12288, vocab_size=50257, block_size=2048),
}


def bytes_per_number(dtype):
    """2 for "float16" and "bfloat16", 4 for "float32", ... (a dtype name or a NumPy dtype)."""
    name = getattr(dtype, "name", None) or str(dtype)
    if name not in BYTES_PER_NUMBER:
        raise ValueError(f"dtype must be one of {sorted(BYTES_PER_NUMBER)}, got {dtype!r}")
    return BYTES_PER_NUMBER[name]


def parameter_bytes(model):
    """Measured: the bytes the model's parameter arrays occupy (each parameter once)."""
    return sum(int(p.data.nbytes) for p in model.parameters())


def weights_bytes(n_params, dtype="float16"):
    """N parameters stored as ``dtype``: 2 N bytes in 16-bit ("2 x the parameters in GB").

    >>> weights_bytes(7 * 10**9) / GB, weights_bytes(7 * 10**9, "float32") / GB
    (14.0, 28.0)
    """
    return int(n_params) * bytes_per_number(dtype)


def _field(config, key, default=None):
    value = config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)
    if value is None:
        raise ValueError(f"config has no {key!r}: expected n_layer, n_head, n_embd (and optionally n_kv_head)")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"config {key} must be a positive integer, got {value!r}")
    return int(value)


def kv_cache_bytes_per_token(config, dtype="float16"):
    """2 * n_layer * n_kv_head * head_dim * bytes: the keys and values one token adds to the cache.

    ``config`` is a GPTConfig, a LlamaConfig or a dict with n_layer, n_head, n_embd and
    optionally n_kv_head (grouped-query attention; default n_head) and head_dim.

    >>> kv_cache_bytes_per_token(REFERENCE_MODELS["Llama-2-7B"]) / MB
    0.524288
    """
    n_layer, n_head, n_embd = (_field(config, key) for key in ("n_layer", "n_head", "n_embd"))
    n_kv_head = _field(config, "n_kv_head", n_head)
    if n_embd % n_head or n_head % n_kv_head:
        raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head}), "
                         f"and n_head by n_kv_head ({n_kv_head})")
    head_dim = _field(config, "head_dim", n_embd // n_head)     # a LlamaConfig may set its own
    return 2 * n_layer * n_kv_head * head_dim * bytes_per_number(dtype)


def inference_table(models=None, dtype="float16"):
    """Each model's inference memory next to the two rules of thumb: a list of dicts.

    n_params, weights_gb (N * bytes: the "2 x parameters" rule, exact in 16-bit),
    kv_mb_per_token (to read against "1 MB per token"), context_gb (the KV cache
    of one sequence of block_size tokens) and total_over_rule: (weights + that
    cache) / (2 N bytes), how far the "2 x parameters" rule undercounts one full
    sequence (batch 1, activations not counted).
    """
    rows = []
    for name, config in (REFERENCE_MODELS if models is None else models).items():
        n_params = int(config.get("n_params") or parameter_count(config))
        weights = weights_bytes(n_params, dtype)
        kv = kv_cache_bytes_per_token(config, dtype)
        context = kv * int(config["block_size"])
        rows.append({"name": name, "n_params": n_params, "weights_gb": weights / GB,
                     "kv_mb_per_token": kv / MB, "block_size": int(config["block_size"]),
                     "context_gb": context / GB, "total_over_rule": (weights + context) / (2 * n_params)})
    return rows
