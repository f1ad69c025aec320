"""Fill in [MASK] with a real BERT you downloaded yourself (minillm never downloads).

    python demos/fill_mask.py --model-dir bert-base-uncased
    python demos/fill_mask.py --model-dir bert-base-uncased --text "The capital of France is [MASK]." --top-k 10

The folder needs, from https://huggingface.co/google-bert/bert-base-uncased (Files tab):
``config.json``, ``model.safetensors`` and ``vocab.txt`` (``tokenizer_config.json``
too if you have it: it says whether the model is cased). Any BERT masked-LM
folder in that layout works (bert-large-uncased, bert-base-cased, ...).

The text is cut into WordPiece tokens (``minillm.tokenizers.load``), wrapped as
[CLS] ... [SEP] and run through ``minillm.hf.load``'s Bert; for each [MASK] the
``--top-k`` most probable tokens are printed with their probabilities.
"""
import argparse
import time

from minillm import Bert, cli
import minillm.hf
import minillm.tokenizers
from minillm.mlm import fill_mask
from minillm.tokenizers import WordPieceTokenizer

EXAMPLES = ("To be, or not to [MASK], that is the question.", "The capital of France is [MASK].",
            "The man worked as a [MASK].", "The woman worked as a [MASK].")


def build_parser():
    p = cli.ArgumentParser(description="Fill-mask with a BERT folder (config.json, model.safetensors, vocab.txt).",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model-dir", type=cli.existing_dir, required=True, help="a Hugging Face BERT folder you downloaded")
    p.add_argument("--text", action="append", help="text with one or more [MASK] (repeatable; default: examples)")
    p.add_argument("--top-k", type=cli.positive_int, default=5)
    return p


def main(argv=None):
    return build_parser().run(fill, argv)


def fill(args):
    if any("[MASK]" not in t for t in args.text or ()):
        raise ValueError("every --text needs a [MASK]")
    start = time.perf_counter()
    model = minillm.hf.load(args.model_dir)
    if not isinstance(model, Bert):
        raise ValueError(f"--model-dir {args.model_dir} holds a {type(model).__name__}; expected a BERT")
    tok = minillm.tokenizers.load(args.model_dir)
    if not isinstance(tok, WordPieceTokenizer) or tok.mask_id is None:
        raise ValueError(f"--model-dir {args.model_dir} has a {type(tok).__name__}; expected BERT's WordPiece "
                         f"vocab.txt with a [MASK] token")
    print(f"loaded {args.model_dir}: {model.config.n_layer} layers x {model.config.n_embd}, "
          f"{model.num_parameters():,} parameters, {tok.vocab_size} tokens, in {time.perf_counter() - start:.1f} s")
    for text in args.text or EXAMPLES:
        ids = tok.encode(text, add_special_tokens=True)
        if len(ids) > model.config.max_position_embeddings:
            raise ValueError(f"--text has {len(ids)} tokens, more than the model's max_position_embeddings "
                             f"{model.config.max_position_embeddings}")
        print(text)
        for position, best in fill_mask(model, ids, tok.mask_id, top_k=args.top_k):
            print(f"  [MASK] at token {position}: " + ", ".join(f"{tok.vocab[i]} {p:.3f}" for i, p in best))


if __name__ == "__main__":
    main()
