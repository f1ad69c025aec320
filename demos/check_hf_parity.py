"""Check that minillm and Hugging Face transformers compute the same GPT-2.

Needs torch and transformers (NOT minillm dependencies; install them yourself).
Runs fully offline: nothing is downloaded.

    python demos/check_hf_parity.py                      # random small models, both directions
    python demos/check_hf_parity.py --model-dir gpt2/    # also a real GPT-2 folder

1. minillm -> transformers: a random minillm GPT is written with
   ``save_pretrained``; ``GPT2LMHeadModel.from_pretrained`` loads the folder;
   the logits on the same token ids must agree.
2. transformers -> minillm: a random ``GPT2LMHeadModel`` (with non-zero biases
   and LayerNorm parameters) is saved by transformers; ``GPT.from_pretrained``
   loads it; the logits must agree.
3. Tokenizer: a BPE trained by minillm is written as vocab.json + merges.txt and
   read by transformers' ``GPT2Tokenizer``; both must encode Shakespeare,
   tricky Unicode and 300 random strings to the same ids.
4. With ``--model-dir``: both libraries load that folder and are compared
   (logits, and the tokenizer if vocab.json + merges.txt are there).

Prints the largest absolute logit difference of each check and exits with
status 1 if any exceeds ``--tol`` or any text encodes differently.
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402


def _hf_logits(model, ids):
    import torch
    with torch.no_grad():
        return model(torch.as_tensor(ids, dtype=torch.long)).logits.double().numpy()


def _our_logits(model, ids):
    from minillm import backend, no_grad
    with no_grad():
        return backend.to_numpy(model(ids).data).astype(np.float64)


def _report(name, a, b, tol):
    diff = float(np.max(np.abs(a - b)))
    same_argmax = bool(np.all(a.argmax(-1) == b.argmax(-1)))
    ok = diff <= tol
    print(f"{name}: logits {a.shape}, max |difference| = {diff:.3e}, "
          f"same argmax everywhere: {same_argmax} -> {'OK' if ok else 'MISMATCH'}")
    return ok


def check_ours_to_hf(tmp, tol, seed):
    from transformers import GPT2LMHeadModel
    from minillm import backend
    from minillm.models import GPT, GPTConfig
    config = GPTConfig(vocab_size=97, block_size=32, n_layer=3, n_head=4, n_embd=32)
    model = GPT(config, seed=seed)
    rng = np.random.default_rng(seed)
    for p in model.parameters():  # make every parameter matter (biases start at 0, LN weights at 1)
        p.data[...] = p.data + backend.asarray(0.05 * rng.standard_normal(p.shape), dtype=p.dtype)
    model.save_pretrained(tmp)
    hf_model, info = GPT2LMHeadModel.from_pretrained(tmp, local_files_only=True, output_loading_info=True)
    hf_model.eval()
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    print(f"transformers loading info for our folder: {problems or 'no missing, unexpected or mismatched keys'}")
    ids = rng.integers(0, config.vocab_size, size=(2, config.block_size))
    ok = _report("minillm -> transformers", _our_logits(model, ids), _hf_logits(hf_model, ids), tol)
    return ok and not problems


def check_hf_to_ours(tmp, tol, seed):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    from minillm.models import GPT
    torch.manual_seed(seed)
    hf_model = GPT2LMHeadModel(GPT2Config(vocab_size=89, n_positions=24, n_embd=48, n_layer=2,
                                          n_head=6, bos_token_id=0, eos_token_id=0)).eval()
    with torch.no_grad():
        for p in hf_model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf_model.save_pretrained(tmp, safe_serialization=True)
    model = GPT.from_pretrained(tmp)
    ids = np.random.default_rng(seed).integers(0, 89, size=(2, 24))
    return _report("transformers -> minillm", _our_logits(model, ids), _hf_logits(hf_model, ids), tol)


TRICKY = ["", " ", "\n\n", "héllo wörld", "e\u0301\u0302", "👩\u200d👩\u200d👧 family", "\x00\x01\x7f",
          "日本語のテキスト", "שלום עולם", "  leading and trailing  ", "it's we'll they're 'S",
          "3.14159 and 2,718", "tab\tsep\r\nline", "\ufeffbom", "a<|endoftext|>b<|endoftext|>"]


def _random_strings(rng, n):
    """Strings of code points drawn from ASCII, Latin-1, combining marks, CJK, emoji and controls."""
    ranges = [(0, 0x7F), (0x80, 0x24F), (0x300, 0x36F), (0x4E00, 0x4E80), (0x1F600, 0x1F64F), (0x2000, 0x206F)]
    out = []
    for _ in range(n):
        lo_hi = [ranges[k] for k in rng.integers(0, len(ranges), size=rng.integers(0, 30))]
        out.append("".join(chr(int(rng.integers(lo, hi + 1))) for lo, hi in lo_hi))
    return out


def _compare_tokenizers(name, ours, theirs, texts):
    bad = [t for t in texts if ours.encode(t) != theirs.encode(t)]
    print(f"{name}: {len(texts) - len(bad)}/{len(texts)} texts encode identically"
          + (f"; first mismatch {bad[0]!r}" if bad else " -> OK"))
    return not bad


def check_tokenizer(tmp, seed):
    """A BPE trained by minillm, saved as vocab.json + merges.txt, read by transformers' GPT2Tokenizer."""
    from transformers import GPT2Tokenizer
    from minillm.tokenizers import BPETokenizer
    corpus = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "minillm", "corpus", "shakespeare.txt")
    with open(corpus, encoding="utf-8") as f:
        text = f.read()
    ours = BPETokenizer.train(text[:300_000], vocab_size=256 + 500 + 1)
    ours.save_gpt2(tmp)
    theirs = GPT2Tokenizer.from_pretrained(tmp, local_files_only=True)
    texts = [text[k:k + 2000] for k in range(300_000, 400_000, 2000)] + TRICKY + _random_strings(
        np.random.default_rng(seed), 300)
    return _compare_tokenizers("minillm BPE (500 merges) vs transformers GPT2Tokenizer", ours, theirs, texts)


def check_dir(model_dir, tol, seed):
    from transformers import GPT2LMHeadModel
    from minillm.models import GPT
    model = GPT.from_pretrained(model_dir)
    hf_model = GPT2LMHeadModel.from_pretrained(model_dir, local_files_only=True).eval()
    ids = np.random.default_rng(seed).integers(0, model.config.vocab_size, size=(1, 64))
    ok = _report(f"{model_dir} in both", _our_logits(model, ids), _hf_logits(hf_model, ids), tol)
    vocab, merges = os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt")
    if os.path.isfile(vocab) and os.path.isfile(merges):
        from transformers import GPT2Tokenizer
        from minillm.tokenizers import BPETokenizer
        ours = BPETokenizer.from_gpt2(vocab, merges)
        theirs = GPT2Tokenizer.from_pretrained(model_dir, local_files_only=True)
        ok &= _compare_tokenizers(f"{model_dir} tokenizer", ours, theirs,
                                  TRICKY + _random_strings(np.random.default_rng(seed), 300))
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="a GPT-2 folder (config.json + model.safetensors) to compare too")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest allowed |logit difference|")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        sys.exit(f"this check needs torch and transformers ({e}); pip install torch transformers")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        ok &= check_ours_to_hf(os.path.join(tmp, "ours"), args.tol, args.seed)
        ok &= check_hf_to_ours(os.path.join(tmp, "theirs"), args.tol, args.seed)
        ok &= check_tokenizer(os.path.join(tmp, "tokenizer"), args.seed)
    if args.model_dir:
        ok &= check_dir(args.model_dir, args.tol, args.seed)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
