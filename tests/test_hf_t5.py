"""Hugging Face T5 parity: random-weight transformers models built from configs (no download).

Both feed-forwards (v1.0 ``relu`` with the tied, scaled head; v1.1 ``gated-gelu`` with its
own head), both ways (transformers -> minillm.hf.load, minillm.hf.save -> transformers),
with a padded encoder batch; greedy generation equal to ``generate`` token for token,
including a row that stops at EOS while the other goes on.
"""
import json

import numpy
import pytest

torch = pytest.importorskip("torch", reason="parity tests compare with PyTorch's transformers")
transformers = pytest.importorskip("transformers", reason="parity tests need transformers")

import minillm.hf  # noqa: E402
from minillm import T5, T5Config, no_grad  # noqa: E402
from minillm.backend import to_numpy  # noqa: E402
from minillm.models.t5 import relative_position_bucket  # noqa: E402

SIZES = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
             relative_attention_num_buckets=8, relative_attention_max_distance=20)
TOL = dict(rtol=1e-4, atol=1e-4)


def hf_model(feed_forward, seed=0, factor=1.0):
    """A random transformers T5; for gated-gelu (v1.1), an lm_head of its own. ``factor`` scales
    the init's standard deviations (5: larger weights, so greedy decoding does not repeat one token)."""
    torch.manual_seed(seed)
    tied = feed_forward == "relu"
    config = transformers.T5Config(**SIZES, feed_forward_proj=feed_forward, tie_word_embeddings=tied,
                                   dropout_rate=0.0, decoder_start_token_id=0, initializer_factor=factor)
    model = transformers.T5ForConditionalGeneration(config).eval()
    if not tied:  # transformers 5 ties the head whatever the config says; untie it as Flan-T5's files are
        model.lm_head.weight = torch.nn.Parameter(torch.randn(SIZES["vocab_size"], SIZES["d_model"]))
        model.config.tie_word_embeddings = False
    return model


def batch(seed=1):
    """Encoder ids (2, 12) with row 0 padded after 8 tokens, its mask, decoder ids (2, 10)."""
    rng = numpy.random.default_rng(seed)
    ids = rng.integers(2, SIZES["vocab_size"], (2, 12))
    mask = numpy.ones((2, 12), dtype=numpy.int64)
    ids[0, 8:], mask[0, 8:] = 0, 0
    decoder_ids = numpy.concatenate([numpy.zeros((2, 1), numpy.int64), rng.integers(2, 64, (2, 9))], axis=1)
    return ids, mask, decoder_ids


def hf_logits(model, ids, mask, decoder_ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
                     decoder_input_ids=torch.tensor(decoder_ids)).logits.numpy()


def ours_logits(model, ids, mask, decoder_ids):
    with no_grad():
        return to_numpy(model(ids, decoder_ids, attention_mask=mask).data)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_transformers_folder_loads_with_equal_logits(tmp_path, feed_forward):
    hf = hf_model(feed_forward)
    hf.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    assert isinstance(model, T5)
    assert model.config.tie_word_embeddings == (feed_forward == "relu")
    assert model.config.scale_decoder_outputs == (feed_forward == "relu")
    ids, mask, decoder_ids = batch()
    numpy.testing.assert_allclose(ours_logits(model, ids, mask, decoder_ids), hf_logits(hf, ids, mask, decoder_ids),
                                  **TOL)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_float64_logits_agree_to_rounding(tmp_path, feed_forward, monkeypatch):
    """In float64 the two agree to 1e-9 once transformers' T5LayerNorm, which takes the mean
    square in float32 whatever the dtype, does it in float64 too (large weights: factor 5)."""
    def norm_in_input_dtype(self, h):
        return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))
    monkeypatch.setattr(transformers.models.t5.modeling_t5.T5LayerNorm, "forward", norm_in_input_dtype)
    hf = hf_model(feed_forward, factor=5.0)
    hf.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path, dtype="float64")
    ids, mask, decoder_ids = batch()
    expected = hf_logits(hf.double(), ids, mask, decoder_ids)
    numpy.testing.assert_allclose(ours_logits(model, ids, mask, decoder_ids), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_greedy_generation_equals_transformers_token_for_token(tmp_path, feed_forward):
    hf = hf_model(feed_forward, factor=5.0)
    hf.save_pretrained(tmp_path)
    model = minillm.hf.load(tmp_path)
    ids, mask, _ = batch()
    # greedy (transformers without its cache: its DynamicCache assumes num_decoder_layers == num_layers).
    # As EOS, a token row 0 draws at step >= 2 and row 1 never does: row 0 stops, row 1 goes on.
    with torch.no_grad():
        free = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=14,
                           do_sample=False, eos_token_id=None, use_cache=False).numpy()
    eos = next(int(t) for t in free[0, 3:] if t not in free[0, 1:3] and t not in free[1] and t != 0)
    hf.generation_config.eos_token_id = eos
    model.config.eos_token_id = eos
    with torch.no_grad():
        reference = hf.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=14,
                                do_sample=False, use_cache=False).numpy()
    for use_cache in (True, False):
        out = to_numpy(model.generate(ids, 14, attention_mask=mask, use_cache=use_cache))
        numpy.testing.assert_array_equal(out, reference)
    assert eos in reference[0] and eos not in reference[1] and reference.shape[1] == 15
    assert (reference[0, list(reference[0]).index(eos) + 1:] == 0).all()      # padded after its EOS


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_saved_folder_loads_in_transformers_with_equal_logits(tmp_path, feed_forward):
    config = T5Config(**SIZES, feed_forward_proj=feed_forward, tie_word_embeddings=feed_forward == "relu")
    model = T5(config, seed=3)
    minillm.hf.save(model, tmp_path)
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    ids, mask, decoder_ids = batch(seed=2)
    numpy.testing.assert_allclose(hf_logits(hf, ids, mask, decoder_ids), ours_logits(model, ids, mask, decoder_ids),
                                  **TOL)
    again = minillm.hf.load(tmp_path)  # and back: the same parameters exactly
    for (name, a), (name_b, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert name == name_b
        numpy.testing.assert_array_equal(a, b)


def test_tied_but_unscaled_head_round_trips(tmp_path):
    """transformers 5 writes a T5 built with tie_word_embeddings=False as tied (no lm_head in the
    file) with scale_decoder_outputs=false: read as such; written back with an explicit lm_head."""
    torch.manual_seed(0)
    config = transformers.T5Config(**SIZES, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                   dropout_rate=0.0, decoder_start_token_id=0)
    hf = transformers.T5ForConditionalGeneration(config).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = minillm.hf.load(tmp_path / "hf")
    assert model.config.tie_word_embeddings and not model.config.scale_decoder_outputs
    ids, mask, decoder_ids = batch()
    numpy.testing.assert_allclose(ours_logits(model, ids, mask, decoder_ids), hf_logits(hf, ids, mask, decoder_ids),
                                  **TOL)
    minillm.hf.save(model, tmp_path / "ours")
    back = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours").eval()
    numpy.testing.assert_allclose(hf_logits(back, ids, mask, decoder_ids), hf_logits(hf, ids, mask, decoder_ids),
                                  **TOL)


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (16, 64), (6, 9)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_buckets_equal_transformers(num_buckets, max_distance, bidirectional):
    distances = numpy.arange(-400, 401)
    expected = transformers.models.t5.modeling_t5.T5Attention._relative_position_bucket(
        torch.tensor(distances), bidirectional=bidirectional, num_buckets=num_buckets,
        max_distance=max_distance).numpy()
    got = to_numpy(relative_position_bucket(distances, bidirectional, num_buckets, max_distance))
    numpy.testing.assert_array_equal(got, expected)


def test_unsupported_configs_are_errors_naming_the_key(tmp_path):
    hf = hf_model("relu")
    hf.save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    original = json.loads(path.read_text())
    for key, value, message in [("feed_forward_proj", "gated-silu", "feed_forward_proj = 'gated-silu'"),
                                ("model_type", "bart", "model_type 'bart'"),
                                ("eos_token_id", [1, 2], "eos_token_id")]:
        path.write_text(json.dumps({**original, key: value}))
        with pytest.raises(ValueError, match=message):
            minillm.hf.load(tmp_path)
