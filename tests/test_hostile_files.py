"""Issue 20: hostile files. Every loader refuses what it cannot trust, fast, in bounded memory, naming the file.

One test per case of the issue, each file crafted here (FIFOs with os.mkfifo,
a zip bomb with zipfile, all tiny on disk), each under a 10 s limit. The cases
that used to allocate gigabytes run together in one subprocess whose address
space is capped (RLIMIT_AS), so a regression fails with MemoryError instead of
swapping the machine.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import minillm.hf
from minillm import GPT, GPTConfig, checkpoint
from minillm.checkpoint import CheckpointError
from minillm.data import clean_folder
from minillm.corpus import load_corpus
from minillm.hf import files, gpt2 as hf_gpt2
from minillm.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from minillm.tokenizers import load as load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"vocab_size": 11, "block_size": 8, "n_layer": 2, "n_head": 2, "n_embd": 4}
ADDRESS_SPACE = 320 << 20     # python + numpy + minillm need ~ 115 MB of it


pytestmark = pytest.mark.usefixtures("time_limit")      # each test: 10 s at most (conftest.py)


# ------------------------------------------------------------------ crafting files

def gpt2_tensors(seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in hf_gpt2.expected_shapes(CONFIG).items()}


def gpt2_folder(path, tensors=None, **config_changes):
    """A Hugging Face GPT-2 folder written as given: no check on the way out."""
    files.write_folder(path, {**hf_gpt2.config_to_hf(CONFIG), **config_changes},
                       gpt2_tensors() if tensors is None else tensors)
    return path


def raw_safetensors(path, tensors):
    """A safetensors file by hand: {name: (dtype string, shape, raw bytes)} (bfloat16 has no NumPy dtype)."""
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def tiny_checkpoint(path, tokenizer=None):
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=1, n_embd=4))
    tokenizer = tokenizer or CharTokenizer(list("abcd\n")).to_dict()
    checkpoint.save(path, model, step=3, tokenizer=tokenizer)
    return path


def rewrite(path, change_meta=None, **arrays_to_add):
    """Rewrite a checkpoint's 'meta' JSON with ``change_meta(meta)`` and add arrays, as a hostile tool would."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    meta = json.loads(str(arrays["meta"]))
    if change_meta:
        change_meta(meta)
    arrays.update(arrays_to_add, meta=np.array(json.dumps(meta)))
    np.savez(path, **arrays)
    return path


def trained_bpe():
    return BPETokenizer.train("singing sings song sang " * 40, 256 + 12, special_tokens=("<|endoftext|>",))


def run_demo(name, argv, capsys):
    """Run demos/<name>.py's main in this process; (exit status, stderr)."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "demos", f"{name}.py"))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    with pytest.raises(SystemExit) as exit_info:
        demo.main(argv)
    return exit_info.value.code, capsys.readouterr().err


# ------------------------------------------------------------------ bounded memory (one subprocess)

WORKER = """
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
results = {{}}
for name, code in json.loads(sys.argv[1]).items():
    start = time.perf_counter()
    try:
        exec(code, {{}})
        outcome = "loaded"
    except BaseException as error:
        outcome = f"{{type(error).__name__}}: {{error}}"
    results[name] = [outcome[:600], time.perf_counter() - start]
print(json.dumps(results))
"""


def zip_bomb(path, inflated=160 << 20):
    """A checkpoint-shaped .npz whose model entry inflates to ``inflated`` bytes from ~1/250 of it."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("meta.npy", b"")   # never reached
        with z.open("model/wte.weight.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": (inflated,)})
            zeros = bytes(1 << 20)
            for _ in range(inflated >> 20):
                f.write(zeros)


def claim_layers(folder, n_layer):
    """Make a Llama or BERT folder's config.json claim ``n_layer`` layers over the weights it has."""
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": n_layer}))


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """{case: (outcome, seconds)} for the cases that used to allocate gigabytes, run under RLIMIT_AS."""
    root = tmp_path_factory.mktemp("limited")
    cases = {}
    for name, changes in {"n_layer_1e6": {"n_layer": 10 ** 6}, "n_layer_1e9": {"n_layer": 10 ** 9},
                          "vocab_3e7": {"vocab_size": 3 * 10 ** 7}}.items():
        folder = gpt2_folder(root / f"hf_{name}", **changes)
        cases[f"hf_{name}"] = f"import minillm.hf; minillm.hf.load({str(folder)!r})"
    from minillm.models import Llama, LlamaConfig
    llama = root / "llama"
    minillm.hf.save(Llama(LlamaConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)), llama)
    claim_layers(llama, 10 ** 6)
    cases["hf_llama_n_layer_1e6"] = f"import minillm.hf; minillm.hf.load({str(llama)!r})"
    from minillm.models import Mixtral, MixtralConfig
    mixtral = root / "mixtral"
    minillm.hf.save(Mixtral(MixtralConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8, n_expert=2,
                                          top_k=1)), mixtral)
    claim_layers(mixtral, 10 ** 6)
    cases["hf_mixtral_n_layer_1e6"] = f"import minillm.hf; minillm.hf.load({str(mixtral)!r})"
    from minillm.models.t5 import T5, T5Config
    t5 = root / "t5"
    minillm.hf.save(T5(T5Config(vocab_size=11, d_model=8, d_kv=4, d_ff=16, num_layers=2, num_heads=2)), t5)
    config = json.loads((t5 / "config.json").read_text())
    (t5 / "config.json").write_text(json.dumps({**config, "num_decoder_layers": 10 ** 6}))
    cases["hf_t5_n_layer_1e6"] = f"import minillm.hf; minillm.hf.load({str(t5)!r})"
    from minillm.models.bert import Bert, BertConfig
    bert = root / "bert"
    minillm.hf.save(Bert(BertConfig(vocab_size=11, max_position_embeddings=8, n_layer=2, n_head=2, n_embd=8)), bert)
    claim_layers(bert, 10 ** 6)
    cases["hf_bert_n_layer_1e6"] = f"import minillm.hf; minillm.hf.load({str(bert)!r})"
    one_layer = Llama(LlamaConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    path = rewrite(checkpoint.save(root / "llama.npz", one_layer) or root / "llama.npz",
                   lambda meta: meta["config"].update(n_layer=10 ** 6))
    cases["ckpt_llama_n_layer_1e6"] = f"from minillm.models import Llama; Llama.from_checkpoint({str(path)!r})"
    for name, changes in {"n_layer_1e6": {"n_layer": 10 ** 6}, "vocab_3e7": {"vocab_size": 3 * 10 ** 7}}.items():
        path = rewrite(tiny_checkpoint(root / f"{name}.npz"), lambda meta: meta["config"].update(changes))
        cases[f"ckpt_{name}"] = f"from minillm import GPT; GPT.from_checkpoint({str(path)!r})"
    zip_bomb(root / "bomb.npz")
    cases["npz_bomb"] = f"from minillm import checkpoint; checkpoint.load({str(root / 'bomb.npz')!r})"
    trained_bpe().save_gpt2(root / "tok")
    vocab = json.loads((root / "tok" / "vocab.json").read_text())
    vocab["<" + "a" * 10 ** 7 + ">"] = len(vocab)
    (root / "tok" / "vocab.json").write_text(json.dumps(vocab))
    cases["special_10mb"] = f"from minillm.tokenizers import load; load({str(root / 'tok')!r})"
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", WORKER.format(limit=ADDRESS_SPACE), json.dumps(cases)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("case, expected", [
    ("hf_n_layer_1e6", r"ValueError: .*model.safetensors holds 2 layer\(s\) h.0.. h.1, but its config says "
                       r"n_layer=1000000"),
    ("hf_n_layer_1e9", r"ValueError: .*model.safetensors holds 2 layer\(s\) .* n_layer=1000000000"),
    ("hf_vocab_3e7", r"ValueError: .*model.safetensors: tensor wte.weight has shape \(11, 4\), "
                     r"expected \(30000000, 4\)"),
    ("hf_llama_n_layer_1e6", r"ValueError: .*model.safetensors holds 2 layer\(s\) model.layers.0.. "
                             r"model.layers.1, but its config says n_layer=1000000"),
    ("hf_mixtral_n_layer_1e6", r"ValueError: .*mixtral/model.safetensors holds 2 layer\(s\) model.layers.0.. "
                               r"model.layers.1, but its config says n_layer=1000000"),
    ("hf_t5_n_layer_1e6", r"ValueError: .*t5/model.safetensors holds 2 layer\(s\) decoder.block.0.. "
                          r"decoder.block.1, but its config says n_layer=1000000"),
    ("hf_bert_n_layer_1e6", r"ValueError: .*bert/model.safetensors holds 2 layer\(s\) encoder.layer.0.. "
                            r"encoder.layer.1, but its config says n_layer=1000000"),
    ("ckpt_llama_n_layer_1e6", r"ValueError: checkpoint .*llama.npz holds 1 layer\(s\) model.layers.0.. "
                               r"model.layers.0, but its config says n_layer=1000000"),
    ("ckpt_n_layer_1e6", r"ValueError: checkpoint .*n_layer_1e6.npz holds 1 layer\(s\) .* n_layer=1000000"),
    ("ckpt_vocab_3e7", r"ValueError: checkpoint .*vocab_3e7.npz: tensor wte.weight has shape \(5, 4\), expected "
                       r"\(30000000, 4\) from its config"),
    ("npz_bomb", r"CheckpointError: checkpoint .*bomb.npz would inflate to 167,772,\d+ bytes from \d+,\d+ on disk"),
    ("special_10mb", r"ValueError: .*vocab.json: special token '<aaaa.*is 10,000,002 characters long, more than 256"),
])
def test_tiny_files_fail_fast_in_bounded_memory(limited, case, expected):
    outcome, seconds = limited[case]
    assert re.match(expected, outcome), outcome
    assert seconds < 5, f"{case} took {seconds:.1f} s"   # before: 7-15 s, then MemoryError


# ------------------------------------------------------------------ Hugging Face folders

def test_fifos_in_a_model_folder_are_refused_not_waited_on(tmp_path):
    gpt2_folder(tmp_path / "a")
    os.remove(tmp_path / "a" / "model.safetensors")
    os.mkfifo(tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match=r"weights file .*a/model.safetensors is a FIFO"):
        GPT.from_pretrained(tmp_path / "a")
    gpt2_folder(tmp_path / "b")
    os.rename(tmp_path / "b" / "model.safetensors", tmp_path / "b" / "model-1.safetensors")
    os.mkfifo(tmp_path / "b" / "model-2.safetensors")
    (tmp_path / "b" / files.SHARD_INDEX_NAME).write_text(json.dumps(
        {"weight_map": {"wte.weight": "model-1.safetensors", "wpe.weight": "model-2.safetensors"}}))
    with pytest.raises(ValueError, match=r"shard named in .*index.json .*model-2.safetensors is a FIFO"):
        minillm.hf.load(tmp_path / "b")
    os.remove(tmp_path / "b" / "config.json")
    os.mkfifo(tmp_path / "b" / "config.json")
    with pytest.raises(ValueError, match="config.json is a FIFO"):
        minillm.hf.load(tmp_path / "b")


@pytest.mark.parametrize("shard", ["../other/model.safetensors", "{root}/other/model.safetensors"])
def test_shard_names_that_leave_the_folder_are_not_read(tmp_path, shard):
    gpt2_folder(tmp_path / "other")                            # a readable file is there: it must not be read
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text((tmp_path / "other" / "config.json").read_text())
    (tmp_path / "m" / files.SHARD_INDEX_NAME).write_text(json.dumps(
        {"weight_map": {"wte.weight": shard.format(root=tmp_path)}}))
    with pytest.raises(ValueError, match="points outside the folder"):
        minillm.hf.load(tmp_path / "m")


@pytest.mark.parametrize("dtype", ["int8", "bool", "int64", "complex64"])
def test_weights_of_a_dtype_no_model_uses_are_refused_by_name(tmp_path, dtype):
    tensors = gpt2_tensors()
    tensors["h.1.mlp.c_fc.weight"] = tensors["h.1.mlp.c_fc.weight"].astype(dtype)
    with pytest.raises(ValueError, match=f"tensor h.1.mlp.c_fc.weight has dtype {dtype}; weights must be"):
        minillm.hf.load(gpt2_folder(tmp_path, tensors))


def test_bfloat16_weights_are_read_exactly_and_a_short_one_is_named(tmp_path):
    gpt2_folder(tmp_path)
    tensors = {n: ("F32", a.shape, a.tobytes()) for n, a in gpt2_tensors().items()}
    wpe = np.tile(np.array([1.0, -2.5, 0.15625, 2.0 ** 100], np.float32), (8, 1))   # exact in bfloat16
    tensors["wpe.weight"] = ("BF16", (8, 4), (wpe.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    raw_safetensors(tmp_path / "model.safetensors", tensors)
    np.testing.assert_array_equal(dict(minillm.hf.load(tmp_path).named_parameters())["wpe.weight"].numpy(), wpe)
    tensors["wpe.weight"] = ("BF16", (8, 4), bytes(2 * 8 * 3))                     # 16 bytes short
    raw_safetensors(tmp_path / "model.safetensors", tensors)
    with pytest.raises(ValueError, match=r"model.safetensors: tensor wpe.weight \(BF16, shape \(8, 4\)\) does not "
                                         r"fit its data_offsets") as error:
        minillm.hf.load(tmp_path)
    assert "reshape" not in str(error.value)


def test_a_weight_given_with_and_without_the_prefix_is_refused(tmp_path):
    tensors = gpt2_tensors()
    tensors["transformer.wte.weight"] = tensors["wte.weight"] + 1
    with pytest.raises(ValueError, match="tensor wte.weight is present both as 'wte.weight' and as "
                                         "'transformer.wte.weight'"):
        minillm.hf.load(gpt2_folder(tmp_path, tensors))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused_with_the_tensor_named(tmp_path, bad):
    tensors = gpt2_tensors()
    tensors["h.0.attn.c_proj.weight"][1, 2] = bad
    with pytest.raises(ValueError, match=r"tensor h.0.attn.c_proj.weight has 1 non-finite value\(s\)"):
        minillm.hf.load(gpt2_folder(tmp_path / "a", tensors))
    tensors = gpt2_tensors()
    tensors["wte.weight"][0, 0] = bad
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()   # identical, so not "different from wte"
    with pytest.raises(ValueError, match="tensor wte.weight has 1 non-finite"):
        minillm.hf.load(gpt2_folder(tmp_path / "b", tensors))


@pytest.mark.parametrize("write, message", [
    (lambda d: (d / files.SHARD_INDEX_NAME).write_text('{"weight_map": {'), "index.json is not valid JSON"),
    (lambda d: (d / files.SHARD_INDEX_NAME).write_text('{"weight_map": [1]}'), '"weight_map" must be a JSON object'),
    (lambda d: (d / "config.json").write_text('{"model_type": "gpt2", "n_embd": null}'), "config.json is missing"),
    (lambda d: (d / "config.json").write_text(json.dumps({**hf_gpt2.config_to_hf(CONFIG), "n_embd": None})),
     "config.json: n_embd must be a positive integer, got None"),
    (lambda d: (d / "config.json").write_text("[" * 50_000 + "]" * 50_000), "config.json is not usable JSON: it is "
                                                                            "nested too deeply"),
    (lambda d: (d / "config.json").write_text('{"model_type": ["gpt2"]}'), 'has no "model_type" string'),
], ids=["index_json", "weight_map", "missing_keys", "n_embd_null", "deep", "model_type_list"])
def test_config_and_index_errors_name_the_file(tmp_path, write, message):
    gpt2_folder(tmp_path)
    if "index" in message or "weight_map" in message:
        os.remove(tmp_path / "model.safetensors")
    write(tmp_path)
    with pytest.raises(ValueError, match=message):
        minillm.hf.load(tmp_path)


# ------------------------------------------------------------------ checkpoints

def test_a_fifo_or_a_device_is_named_not_called_missing(tmp_path):
    os.mkfifo(tmp_path / "ckpt.npz")
    with pytest.raises(ValueError, match=r"checkpoint .*ckpt.npz is a FIFO \(named pipe\), not a regular file"):
        checkpoint.load(tmp_path / "ckpt.npz")
    with pytest.raises(ValueError, match="checkpoint /dev/zero is a character device"):
        checkpoint.load("/dev/zero")


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("config"), "its meta has no 'config' field"),
    (lambda m: m.update(step="abc"), "meta field 'step' must be an integer >= 0, got 'abc'"),
    (lambda m: m.update(step=True), "meta field 'step' must be an integer >= 0, got True"),
    (lambda m: m.update(config=[1]), "meta field 'config' must be a JSON object"),
    (lambda m: m.update(optimizer=3), "meta field 'optimizer' must be a JSON object or null"),
    (lambda m: m["extra"].update(config={"n_layer": 1}), r"extra entries may not be named \['config'\]"),
], ids=["no_config", "step_text", "step_bool", "config_list", "optimizer_int", "extra_named_config"])
def test_checkpoint_meta_is_checked_by_type(tmp_path, change, message):
    path = rewrite(tiny_checkpoint(tmp_path / "c.npz"), change)
    with pytest.raises(CheckpointError, match=f"checkpoint .*c.npz: {message}"):
        checkpoint.load(path)


def test_an_extra_array_named_like_a_field_is_refused(tmp_path):
    path = rewrite(tiny_checkpoint(tmp_path / "c.npz"), **{"extra/step": np.array(7)})
    with pytest.raises(CheckpointError, match=r"extra entries may not be named \['step'\]"):
        checkpoint.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.pop("config"), "its meta has no 'config' field"),
    (lambda m: m.update(step="abc"), "meta field 'step' must be an integer"),
    (lambda m: m["config"].update(n_embd=None), "its config is not a GPT's: n_embd must be an integer, got None"),
    (lambda m: m["extra"]["tokenizer"].update(chars=7), "its tokenizer cannot be used"),
], ids=["no_config", "step_text", "n_embd_null", "tokenizer"])
def test_sample_py_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys, change, message):
    path = rewrite(tiny_checkpoint(tmp_path / "c.npz"), change)
    status, err = run_demo("sample", ["--ckpt", str(path), "--max-new-tokens", "2"], capsys)
    assert status == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "c.npz" in err and message in err, err


# ------------------------------------------------------------------ tokenizer files

@pytest.mark.parametrize("pattern", [r"(a|aa)+$|\s+|.", "[a-z]+", "gpt4"])
def test_a_split_pattern_from_a_file_is_never_compiled(tmp_path, capsys, pattern):
    stored = {**trained_bpe().to_dict(), "pattern": pattern}
    with pytest.raises(ValueError, match="bpe tokenizer dict: pattern .* is not one minillm knows"):
        tokenizer_from_dict(stored)
    path = tiny_checkpoint(tmp_path / "c.npz", tokenizer=stored)
    status, err = run_demo("sample", ["--ckpt", str(path), "--prompt", "a" * 40 + "!"], capsys)
    assert status == 2 and "its tokenizer cannot be used" in err and "is not one minillm knows" in err, err


@pytest.mark.parametrize("regex_text", [r"(a|aa)+$|\s+|.", "[a-z]+"])
def test_a_tokenizer_json_split_regex_is_never_compiled(regex_text):
    from minillm.tokenizers.pretokenizers import pre_tokenizer
    split = {"type": "Split", "pattern": {"Regex": regex_text}, "behavior": "Isolated", "invert": False}
    with pytest.raises(ValueError, match="tokenizer.json: pattern .* is not one minillm knows"):
        pre_tokenizer(split, "tokenizer.json")
    from minillm.tokenizers.bytelevel import SPLIT_PATTERNS
    known = pre_tokenizer({**split, "pattern": {"Regex": SPLIT_PATTERNS["llama3"]}}, "tokenizer.json")
    assert known(["In 2024, cats"]) == ["In", " ", "202", "4", ",", " cats"]


def test_the_known_split_pattern_loads_by_name_and_by_its_text():
    tok = trained_bpe()
    for stored in ("gpt2", tok.to_dict()["pattern"]):
        again = tokenizer_from_dict({**tok.to_dict(), "pattern": stored})
        assert again.encode("Hello, world 123!") == tok.encode("Hello, world 123!")
        assert again.decode(again.encode("Hello, world 123!")) == "Hello, world 123!"


@pytest.mark.parametrize("special, message", [
    ("", "special token '' must be a non-empty string"),
    ("<\ud800>", r"special token '<\\ud800>' is not valid text"),
])
def test_special_tokens_must_be_non_empty_valid_text(tmp_path, special, message):
    tok = trained_bpe()
    with pytest.raises(ValueError, match=message):
        BPETokenizer(tok.vocab, tok.merges, {special: tok.vocab_size})
    tok.save_gpt2(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    vocab[special] = len(vocab)
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))    # ensure_ascii: the surrogate as "\ud800"
    with pytest.raises(ValueError, match="vocab.json"):
        load_tokenizer(tmp_path)


def test_a_truncated_merges_file_is_an_error_not_new_special_tokens(tmp_path):
    tok = trained_bpe()
    tok.save_gpt2(tmp_path)
    assert load_tokenizer(tmp_path).encode("singing") == tok.encode("singing")
    lines = (tmp_path / "merges.txt").read_text().splitlines()
    (tmp_path / "merges.txt").write_text("\n".join(lines[:-4]) + "\n")
    with pytest.raises(ValueError, match=r"vocab.json: 4 token\(s\) are neither a single byte nor the result of a "
                                         r"merge in merges.txt .* is merges.txt truncated\?"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "merges.txt").write_bytes(b"#version: 0.2\ns i\n\xff\xfe\n"),
     r"merges.txt .*is not UTF-8 text: byte 0xff at offset 18"),
    (lambda d: (d / "vocab.json").write_text('{"a": "0"}'), r"vocab.json: token 'a' has id '0'; ids must be integers"),
    (lambda d: (d / "vocab.json").write_text('{"a": 0, "a": 1}'), "vocab.json is not usable JSON: the key 'a' appears"),
    (lambda d: (os.remove(d / "vocab.json"), os.mkfifo(d / "vocab.json")), "vocab.json is a FIFO"),
], ids=["merges_utf8", "string_id", "repeated_token", "fifo"])
def test_tokenizer_file_errors_name_the_file(tmp_path, damage, message):
    trained_bpe().save_gpt2(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        load_tokenizer(tmp_path)


# ------------------------------------------------------------------ the data cleaner and corpus files

def test_the_cleaner_skips_and_reports_what_is_not_a_regular_file_inside(tmp_path):
    good = "A perfectly ordinary document about the weather and the sea. " * 6
    secret = "SECRET outside the folder, never to be copied into the corpus. " * 6
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "good.txt").write_text(good)
    (tmp_path / "outside.txt").write_text(secret)
    os.symlink(tmp_path / "outside.txt", tmp_path / "in" / "escape.txt")
    os.symlink("/dev/zero", tmp_path / "in" / "zero.txt")
    os.symlink("loop.txt", tmp_path / "in" / "loop.txt")
    os.symlink("nothing", tmp_path / "in" / "dangling.txt")
    os.symlink(tmp_path, tmp_path / "in" / "linked_dir")
    os.mkfifo(tmp_path / "in" / "pipe.txt")
    (tmp_path / "in" / "sub.txt").mkdir()
    (tmp_path / "in" / "sub.txt" / "inner.txt").write_text(good.replace("sea", "hills"))
    report = clean_folder(tmp_path / "in", tmp_path / "out")
    skipped = dict(report.skipped)
    assert sorted(skipped) == ["dangling.txt", "escape.txt", "linked_dir", "loop.txt", "pipe.txt", "sub.txt",
                               "zero.txt"]
    assert "symbolic link" in skipped["zero.txt"] and "FIFO" in skipped["pipe.txt"]
    assert skipped["sub.txt"] == "a directory"
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert report.docs_in == 2 and sorted(p.name for p in written) == ["good.txt", "inner.txt"]
    assert "SECRET" not in "".join(p.read_text() for p in written)
    assert "files skipped, not read: 7" in report.table()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its permissions")
def test_an_unreadable_file_is_skipped_not_fatal(tmp_path):
    (tmp_path / "a.txt").write_text("x " * 200)
    (tmp_path / "b.txt").write_text("y " * 200)
    os.chmod(tmp_path / "b.txt", 0)
    report = clean_folder(tmp_path, tmp_path / "out")
    assert [name for name, _ in report.skipped] == ["b.txt"] and report.docs_in == 1


def test_a_corpus_path_that_is_a_fifo_or_a_device_is_named(tmp_path):
    os.mkfifo(tmp_path / "corpus.txt")
    with pytest.raises(ValueError, match="corpus file .*corpus.txt is a FIFO"):
        load_corpus(tmp_path / "corpus.txt")
    with pytest.raises(ValueError, match="corpus file /dev/zero is a character device"):
        load_corpus("/dev/zero")
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xc3(")
    with pytest.raises(ValueError, match=r"corpus file .*bad.txt is not UTF-8 text: byte 0xc3 at offset 3"):
        load_corpus(tmp_path / "bad.txt")
