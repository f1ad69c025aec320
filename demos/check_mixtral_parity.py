"""Check that minillm and Hugging Face transformers compute the same Mixtral, and print the figures.

Needs torch and transformers (NOT minillm dependencies). Offline: a random-weight
``MixtralForCausalLM`` is built from a config here; nothing is downloaded.

    python demos/check_mixtral_parity.py
    python demos/check_mixtral_parity.py --experts 8 --top-k 2 --layers 3

1. transformers -> minillm: ``save_pretrained`` folder, ``minillm.hf.load``: largest logit difference.
2. minillm -> transformers: ``minillm.hf.save``, ``AutoModelForCausalLM.from_pretrained``: the same.
3. The load-balancing loss (``output_router_logits=True``) and the training loss with labels.
4. Greedy generation, token for token (minillm with and without its KV cache).

Exits with status 1 if a logit difference exceeds ``--tol`` or anything else differs.
"""
import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed logit difference (float32)")
    args = p.parse_args(argv)
    if not 1 <= args.top_k <= args.experts:
        p.error(f"--top-k ({args.top_k}) must be between 1 and --experts ({args.experts})")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        import torch
        import transformers
    except ImportError as error:
        sys.exit(f"error: this check needs torch and transformers ({error})")
    import minillm.hf
    from minillm import backend, no_grad
    from minillm import functional as F

    config = transformers.MixtralConfig(
        vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=args.layers,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=args.experts,
        num_experts_per_tok=args.top_k, max_position_embeddings=128, router_aux_loss_coef=0.02,
        bos_token_id=None, eos_token_id=None, pad_token_id=None, experts_implementation="eager")
    torch.manual_seed(args.seed)
    reference = transformers.MixtralForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.normal_(0.0, 1.0)                        # decisive routing (no near-ties)
    idx = numpy.random.default_rng(args.seed).integers(0, 97, (2, 16))
    with torch.no_grad():
        out = reference(torch.as_tensor(idx), labels=torch.as_tensor(idx), output_router_logits=True)
    expected = out.logits.double().numpy()
    failures = []
    with tempfile.TemporaryDirectory() as folder:
        reference.save_pretrained(folder)
        model = minillm.hf.load(folder)
        with no_grad():
            logits = model(idx)
        error = float(numpy.abs(backend.to_numpy(logits.data) - expected).max())
        print(f"transformers -> minillm: max |logit difference| {error:.2e} (logits up to "
              f"{numpy.abs(expected).max():.2f})")
        failures += ["logits (load)"] if error > args.tol else []
        aux, theirs = float(model.router_aux_loss().data), out.aux_loss.item()
        loss = float((F.cross_entropy(logits[:, :-1], idx[:, 1:]) + model.auxiliary_loss()).data)
        print(f"aux loss: minillm {aux:.7f}, transformers {theirs:.7f}; training loss: minillm {loss:.7f}, "
              f"transformers {out.loss.item():.7f}")
        failures += ["aux loss"] if abs(aux - theirs) > 1e-5 * theirs else []
    with tempfile.TemporaryDirectory() as folder:
        minillm.hf.save(model, folder)
        again = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.no_grad():
            theirs = again(torch.as_tensor(idx)).logits.double().numpy()
        error = float(numpy.abs(theirs - backend.to_numpy(logits.data)).max())
        print(f"minillm -> transformers ({type(again).__name__}): max |logit difference| {error:.2e}")
        failures += ["logits (save)"] if error > args.tol else []
    prompt = idx[:, :4]
    with torch.no_grad():
        greedy = reference.generate(torch.as_tensor(prompt), max_new_tokens=24, do_sample=False,
                                    attention_mask=torch.ones(prompt.shape, dtype=torch.long)).numpy()
    for use_cache in (True, False):
        ours = backend.to_numpy(model.generate(prompt, 24, temperature=0, use_cache=use_cache))
        same = numpy.array_equal(ours, greedy)
        print(f"greedy generation, 24 new tokens x 2 rows, use_cache={use_cache}: "
              f"{'identical' if same else 'DIFFERENT'}")
        failures += [] if same else [f"generation (use_cache={use_cache})"]
    print("all checks passed" if not failures else f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
