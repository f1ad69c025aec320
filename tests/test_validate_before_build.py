"""Issue 20, "validate before allocating", for every family, and loading without a random init.

Each family's ``parameter_shapes(config)`` (tuples, no arrays) must be exactly
what its model builds; every loader compares a file's tensors against it before
the model exists, so a config.json or checkpoint config claiming a huge width
over tiny tensors is refused by name, in bounded memory (the subprocess of
test_hostile_files.py, under RLIMIT_AS). ``nn.skip_init`` builds the model that
is filled next without drawing a random init; outside it the same seed still
gives the same weights.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import minillm.hf
from minillm import GPT, GPTConfig, checkpoint
from minillm.models import Llama, LlamaConfig, Mixtral, MixtralConfig
from minillm.models.bert import Bert, BertConfig
from minillm.models.t5 import T5, T5Config
from minillm.nn import skip_init
from test_hostile_files import ADDRESS_SPACE, REPO, WORKER, rewrite

pytestmark = pytest.mark.usefixtures("time_limit")      # each test: 10 s at most (conftest.py)

LLAMA = dict(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
MODELS = [  # (id, model) covering every switch that adds or removes a parameter
    ("gpt2", lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8))),
    ("gpt2_no_bias", lambda: GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, bias=False))),
    ("llama", lambda: Llama(LlamaConfig(**LLAMA))),
    ("llama_tied_gqa", lambda: Llama(LlamaConfig(**LLAMA, tie_word_embeddings=True, n_kv_head=1))),
    ("qwen2", lambda: Llama(LlamaConfig(**LLAMA, qkv_bias=True))),
    ("llama_biases", lambda: Llama(LlamaConfig(**LLAMA, attention_bias=True, mlp_bias=True))),
    ("mixtral", lambda: Mixtral(MixtralConfig(**LLAMA, n_expert=3, top_k=1))),
    ("t5", lambda: T5(T5Config(vocab_size=11, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_decoder_layers=3,
                               num_heads=2))),
    ("t5_gated_untied", lambda: T5(T5Config(vocab_size=11, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_heads=2,
                                            feed_forward_proj="gated-gelu", tie_word_embeddings=False))),
    ("bert", lambda: Bert(BertConfig(vocab_size=11, max_position_embeddings=8, n_layer=2, n_head=2, n_embd=8))),
    ("bert_classifier", lambda: Bert(BertConfig(vocab_size=11, max_position_embeddings=8, n_layer=2, n_head=2,
                                                n_embd=8, num_labels=3))),
]


@pytest.mark.parametrize("make", [m for _, m in MODELS], ids=[i for i, _ in MODELS])
def test_parameter_shapes_are_what_the_model_builds_in_its_order(make):
    model = make()
    assert list(type(model).parameter_shapes(model.config).items()) == \
        [(name, p.shape) for name, p in model.named_parameters()]


def test_skip_init_builds_zeros_and_leaves_seeded_init_unchanged():
    config = LlamaConfig(**LLAMA)
    before = Llama(config, seed=3).state_dict()
    with skip_init():
        empty = Llama(config, seed=3)
    assert all(not np.any(a) for n, a in empty.state_dict().items() if not n.endswith("norm.weight"))
    with pytest.raises(RuntimeError), skip_init():
        raise RuntimeError("the flag is restored on the way out")
    after = Llama(config, seed=3).state_dict()
    assert all(np.array_equal(before[n], after[n]) for n in before)
    assert np.any(after["model.embed_tokens.weight"])


@pytest.mark.parametrize("make", [m for i, m in MODELS if i in ("llama_tied_gqa", "mixtral", "t5", "bert")],
                         ids=["llama_tied_gqa", "mixtral", "t5", "bert"])
def test_a_loaded_model_holds_the_saved_weights(tmp_path, make):
    model = make()
    minillm.hf.save(model, tmp_path)
    loaded = minillm.hf.load(tmp_path)
    assert type(loaded) is type(model)
    saved = model.state_dict()
    assert all(np.array_equal(saved[n], a) for n, a in loaded.state_dict().items())


# ------------------------------------------------------------------ huge widths over tiny tensors

def changed(folder, **keys):
    """Rewrite a folder's config.json with ``keys`` changed, as a hostile file would."""
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **keys}))
    return folder


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """{case: (outcome, seconds)}: every case loads a tiny folder or checkpoint whose config claims
    a huge width, in one subprocess capped at ADDRESS_SPACE bytes of address space."""
    root = tmp_path_factory.mktemp("wide")
    models = dict(MODELS)
    folders = {}
    for name in ("llama", "mixtral", "t5", "bert"):
        folders[name] = root / name
        minillm.hf.save(models[name](), folders[name])
    hf_cases = {  # case: (family folder, config.json keys)
        "hf_llama_vocab_3e7": ("llama", {"vocab_size": 3 * 10 ** 7}),
        "hf_llama_hidden_1e5": ("llama", {"hidden_size": 10 ** 5}),
        "hf_llama_intermediate_1e9": ("llama", {"intermediate_size": 10 ** 9}),
        "hf_mixtral_experts_1e6": ("mixtral", {"num_local_experts": 10 ** 6}),
        "hf_mixtral_hidden_1e5": ("mixtral", {"hidden_size": 10 ** 5}),
        "hf_t5_vocab_3e7": ("t5", {"vocab_size": 3 * 10 ** 7}),
        "hf_t5_d_ff_1e9": ("t5", {"d_ff": 10 ** 9}),
        "hf_bert_vocab_3e7": ("bert", {"vocab_size": 3 * 10 ** 7}),
        "hf_bert_hidden_1e5": ("bert", {"hidden_size": 10 ** 5}),
    }
    cases = {}
    for case, (family, keys) in hf_cases.items():
        folder = root / case
        folder.mkdir()
        for name in ("config.json", "model.safetensors"):
            (folder / name).write_bytes((folders[family] / name).read_bytes())
        cases[case] = f"import minillm.hf; minillm.hf.load({str(changed(folder, **keys))!r})"
    for case, cls, changes in (("ckpt_llama_vocab_3e7", "Llama", {"vocab_size": 3 * 10 ** 7}),
                               ("ckpt_llama_hidden_1e9", "Llama", {"n_hidden": 10 ** 9}),
                               ("ckpt_mixtral_experts_1e6", "Mixtral", {"n_expert": 10 ** 6}),
                               ("ckpt_mixtral_width_1e5", "Mixtral", {"n_embd": 10 ** 5, "head_dim": 4})):
        path = root / f"{case}.npz"
        checkpoint.save(path, models[cls.lower()]())
        rewrite(path, lambda meta: meta["config"].update(changes))
        cases[case] = f"from minillm.models import {cls}; {cls}.from_checkpoint({str(path)!r})"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", WORKER.format(limit=ADDRESS_SPACE), json.dumps(cases)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


SHAPE = r"ValueError: {where}: tensor {name} has shape \({got}\), expected \({want}\) from its config$"


@pytest.mark.parametrize("case, expected", [
    ("hf_llama_vocab_3e7", SHAPE.format(where=".*hf_llama_vocab_3e7/model.safetensors",
                                        name="model.embed_tokens.weight", got="11, 8", want="30000000, 8")),
    ("hf_llama_hidden_1e5", SHAPE.format(where=".*/model.safetensors", name="model.embed_tokens.weight",
                                         got="11, 8", want="11, 100000")),
    ("hf_llama_intermediate_1e9", SHAPE.format(where=".*/model.safetensors",
                                               name=r"model.layers.0.mlp.gate_proj.weight", got="8, 24",
                                               want="8, 1000000000")),
    ("hf_mixtral_experts_1e6", r"ValueError: .*hf_mixtral_experts_1e6/model.safetensors holds 3 expert\(s\) "
                               r"model.layers.0.block_sparse_moe.experts.0.. .*experts.2, but its config says "
                               r"n_expert=1000000"),
    ("hf_mixtral_hidden_1e5", SHAPE.format(where=".*/model.safetensors", name="model.embed_tokens.weight",
                                           got="11, 8", want="11, 100000")),
    ("hf_t5_vocab_3e7", SHAPE.format(where=".*hf_t5_vocab_3e7/model.safetensors", name="shared.weight",
                                     got="11, 8", want="30000000, 8")),
    ("hf_t5_d_ff_1e9", SHAPE.format(where=".*/model.safetensors",
                                    name=r"encoder.block.0.layer.1.DenseReluDense.wi.weight", got="8, 16",
                                    want="8, 1000000000")),
    ("hf_bert_vocab_3e7", SHAPE.format(where=".*hf_bert_vocab_3e7/model.safetensors",
                                       name="embeddings.word_embeddings.weight", got="11, 8", want="30000000, 8")),
    ("hf_bert_hidden_1e5", SHAPE.format(where=".*/model.safetensors", name="embeddings.word_embeddings.weight",
                                        got="11, 8", want="11, 100000")),
    ("ckpt_llama_vocab_3e7", SHAPE.format(where="checkpoint .*ckpt_llama_vocab_3e7.npz",
                                          name="model.embed_tokens.weight", got="11, 8", want="30000000, 8")),
    ("ckpt_llama_hidden_1e9", SHAPE.format(where="checkpoint .*ckpt_llama_hidden_1e9.npz",
                                           name=r"model.layers.0.mlp.gate_proj.weight", got="8, 24",
                                           want="8, 1000000000")),
    ("ckpt_mixtral_experts_1e6", r"ValueError: checkpoint .*ckpt_mixtral_experts_1e6.npz holds 3 expert\(s\) .* "
                                 r"n_expert=1000000"),
    ("ckpt_mixtral_width_1e5", SHAPE.format(where="checkpoint .*ckpt_mixtral_width_1e5.npz",
                                            name="model.embed_tokens.weight", got="11, 8", want="11, 100000")),
])
def test_a_huge_width_over_tiny_tensors_is_refused_before_building(limited, case, expected):
    outcome, seconds = limited[case]
    assert re.match(expected, outcome), outcome
    assert seconds < 5, f"{case} took {seconds:.1f} s"
