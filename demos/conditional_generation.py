"""Tasks as conditional generation: sentiment, question answering and "TL;DR" summaries.

A language model only ever answers one question: what comes next? The course
turns tasks into that question by writing a prompt:

* **Sentiment by next-word probability.** Compare P(" positive" | prompt) with
  P(" negative" | prompt) for the prompt 'The sentiment of the sentence "..."
  is:' and normalise over the two labels (``minillm.evaluate.classify``).
  We also print the same comparison for a content-free sentence ("N/A"): if
  the answer does not move when the sentence changes, the model is not
  reading the sentence, it just prefers one label (a *calibration* check).
* **Question answering by iterated generation.** "Q: ...\\nA:" and let the
  model continue, one token at a time, until a newline (greedy decoding by
  default; ``--temperature 0.8 --top-k 20`` samples instead).
* **Summarisation with "TL;DR:".** A passage, then "\\nTL;DR:", then generate.

    python demos/conditional_generation.py --ckpt out/shakespeare/ckpt.npz
    python demos/conditional_generation.py --model-dir path/to/gpt2   # config.json, model.safetensors,
                                                                      # vocab.json, merges.txt
    python demos/conditional_generation.py --untrained                # mechanics only, random weights
    python demos/conditional_generation.py --model-dir path/to/flan-t5-small   # config.json,
                                                                      # model.safetensors, tokenizer.json

With a Flan-T5 folder (an encoder-decoder, instruction-tuned) the same three tasks
are asked as instructions, the way Flan was trained: the encoder reads the
instruction, the decoder writes the answer. Sentiment scores each label as the
decoder's whole answer, log P(label </s> | instruction), normalised over the labels.

Be honest about what to expect. These framings work because a *large* model
saw millions of reviews, Q&A pages and "TL;DR" posts during pretraining. A
small character-level model trained on Shakespeare saw none: its "sentiment"
is which of "p" or "n" it prefers to spell after "is:", its answers are
Shakespeare-flavoured babble, and its summaries continue the play. The code
path is the same; the knowledge is not. GPT-2 small (124M) already does
better on sentiment and produces plausible-looking (often wrong) answers.
"""
import argparse
import os

import numpy

from minillm import checkpoint, cli
from minillm.evaluate import classify, sequence_logprob

SENTENCES = [
    "I loved this film, it was wonderful and moving.",
    "What a terrible, boring waste of an evening.",
    "The actors were brilliant and the story was a joy.",
    "I hated every minute; the plot was awful.",
]
NEUTRAL = "N/A"
QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Romeo and Juliet?",
    "What colour is the sky on a clear day?",
]
PASSAGE = ("The king has lost his way in the storm. His daughters have turned him out of "
           "doors, and only his fool and a loyal servant stay beside him on the heath.")


def load(args):
    """(model, tokenizer, description) from --ckpt, --model-dir or --untrained."""
    from minillm.models import GPT, GPTConfig
    from minillm.tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict

    if args.ckpt:
        ckpt = checkpoint.load(args.ckpt)
        if ckpt.get("tokenizer") is None:
            raise ValueError(f"--ckpt {args.ckpt} holds no tokenizer: save checkpoints with tokenizer=... "
                             "(demos/train_shakespeare.py does)")
        model, _ = checkpoint.restore(ckpt)
        return model, tokenizer_from_dict(ckpt["tokenizer"]), f"checkpoint {args.ckpt}"
    if args.model_dir and _model_type(args.model_dir) == "t5":
        import minillm.hf
        import minillm.tokenizers
        return (minillm.hf.load(args.model_dir), minillm.tokenizers.load(args.model_dir),
                f"T5 weights from {args.model_dir}")
    if args.model_dir:
        vocab, merges = (os.path.join(args.model_dir, name) for name in ("vocab.json", "merges.txt"))
        for path in (vocab, merges):
            if not os.path.lexists(path):          # a FIFO or a link is refused by name when read
                raise FileNotFoundError(f"{path} is missing: --model-dir needs GPT-2's vocab.json and merges.txt "
                                        "beside config.json and model.safetensors")
        return (GPT.from_pretrained(args.model_dir), BPETokenizer.from_gpt2(vocab, merges),
                f"GPT-2 weights from {args.model_dir}")
    from minillm.corpus import load_corpus
    tokenizer = CharTokenizer.from_text(load_corpus())
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32)
    return GPT(config, seed=args.seed), tokenizer, "an UNTRAINED char model (random weights)"


def _model_type(directory):
    """config.json's model_type of a Hugging Face folder (None without one)."""
    from minillm.hf import files
    try:
        return files.read_config(directory)[0].get("model_type")
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- an encoder-decoder (Flan-T5)

def seq2seq_logprob(model, tokenizer, instruction, answer):
    """log P(answer </s> | instruction) under an encoder-decoder, in nats (teacher forcing)."""
    from minillm import functional as F
    from minillm import no_grad
    from minillm.backend import to_numpy
    ids = numpy.array([tokenizer.encode(instruction)])                                  # (1, Ts) ends in </s>
    target = tokenizer.encode(answer, add_special_tokens=False) + [model.config.eos_token_id]
    decoder = numpy.array([[model.config.decoder_start_token_id] + target[:-1]])        # (1, Td)
    with no_grad():
        logp = to_numpy(F.log_softmax(model(ids, decoder), axis=-1).data)[0]             # (Td, V)
    return float(sum(logp[t, token] for t, token in enumerate(target)))


def instruct(model, tokenizer, instruction, max_new_tokens, args):
    ids = numpy.array([tokenizer.encode(instruction)])
    out = model.generate(ids, max_new_tokens, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    return tokenizer.decode([int(t) for t in numpy.asarray(out)[0]])


def encoder_decoder_tasks(model, tokenizer, labels, max_new_tokens, args):
    print("\n== Sentiment: each label scored as the decoder's whole answer ==")
    labels = [label.strip() for label in labels]
    for sentence in SENTENCES + [NEUTRAL]:
        instruction = f"Is the sentiment of the following sentence {' or '.join(labels)}?\n{sentence}"
        scores = numpy.array([seq2seq_logprob(model, tokenizer, instruction, label) for label in labels])
        probs = numpy.exp(scores - scores.max())
        probs /= probs.sum()
        shown = ", ".join(f"P({label})={p:.3f}" for label, p in zip(labels, probs))
        tag = "  (calibration: no content)" if sentence == NEUTRAL else ""
        print(f"  {sentence[:50]:<50} {shown}{tag}")
    how = "greedy" if args.temperature == 0 else f"temperature {args.temperature}"
    print(f"\n== Question answering ({how}, until </s>) ==")
    for question in QUESTIONS:
        print(f"  Q: {question}\n  A: {instruct(model, tokenizer, f'Answer the question: {question}', max_new_tokens, args)!r}")
    print("\n== Summarisation ==")
    summary = instruct(model, tokenizer, f"Summarize: {PASSAGE}", 2 * max_new_tokens, args)
    print(f"  passage: {PASSAGE}\n  summary: {summary!r}")


def generate_text(model, tokenizer, prompt, max_new_tokens, stop_at_newline, args):
    """The continuation of ``prompt`` (only the new text), stopping at a newline if asked.
    Greedy by default (--temperature 0); sampled with --temperature > 0 (and --top-k)."""
    ids = numpy.array([tokenizer.encode(prompt)], dtype=numpy.int64)         # (1, T)
    stop = None
    if stop_at_newline:
        newline = tokenizer.encode("\n")
        stop = newline[0] if len(newline) == 1 else None
    out = model.generate(ids, max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         seed=args.seed, stop=stop)
    new = [int(t) for t in numpy.asarray(out)[0, ids.shape[1]:]]
    return tokenizer.decode(new).split("\n")[0] if stop_at_newline else tokenizer.decode(new)


def sentiment(model, tokenizer, labels):
    print("\n== Sentiment by next-word probability ==")
    print(f"prompt: 'The sentiment of the sentence \"...\" is:' -> labels {labels}")
    for sentence in SENTENCES + [NEUTRAL]:
        prompt = f'The sentiment of the sentence "{sentence}" is:'
        try:
            raw = {label: sequence_logprob(model, tokenizer, prompt, label) for label in labels}
            probs = classify(model, tokenizer, prompt, labels)
        except ValueError as error:                                       # e.g. a character outside the vocabulary
            print(f"  skipped {sentence!r}: {error}")
            continue
        shown = ", ".join(f"P({label.strip()})={p:.3f}" for label, p in probs.items())
        logs = ", ".join(f"log P({label.strip()}|prompt)={v:.2f}" for label, v in raw.items())
        tag = "  (calibration: no content)" if sentence == NEUTRAL else ""
        print(f"  {sentence[:50]:<50} {shown}  [{logs}]{tag}")
    print("  If the P(positive) column barely moves from the calibration row, the model is not reading "
          "the sentence.")


def question_answering(model, tokenizer, max_new_tokens, args):
    how = "greedy" if args.temperature == 0 else f"temperature {args.temperature}"
    print(f"\n== Question answering by iterated generation ({how}, until a newline) ==")
    for question in QUESTIONS:
        try:
            answer = generate_text(model, tokenizer, f"Q: {question}\nA:", max_new_tokens, True, args)
        except ValueError as error:
            print(f"  skipped {question!r}: {error}")
            continue
        print(f"  Q: {question}\n  A:{answer!r}")


def summarise(model, tokenizer, max_new_tokens, args):
    print('\n== Summarisation with "TL;DR:" ==')
    try:
        summary = generate_text(model, tokenizer, PASSAGE + "\nTL;DR:", max_new_tokens, False, args)
    except ValueError as error:
        print(f"  skipped: {error}")
        return
    print(f"  passage: {PASSAGE}\n  TL;DR:{summary!r}")


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", type=cli.existing_file, help="a minillm checkpoint (.npz) with its tokenizer")
    source.add_argument("--model-dir", help="a Hugging Face GPT-2 folder (with vocab.json and merges.txt) or a T5 / "
                        "Flan-T5 folder (with tokenizer.json)")
    source.add_argument("--untrained", action="store_true", help="random weights: shows the mechanics only")
    parser.add_argument("--max-new-tokens", type=cli.positive_int, default=None,
                        help="tokens to generate per answer (default: 60 for char models, 20 for BPE)")
    parser.add_argument("--labels", default=" positive, negative",
                        help="comma-separated labels, each with its leading space (default ' positive, negative')")
    parser.add_argument("--temperature", type=cli.non_negative_float, default=0.0,
                        help="0 (default) is greedy decoding; greedy small models tend to repeat a phrase")
    parser.add_argument("--top-k", type=cli.positive_int, default=None)
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    return parser


def main(argv=None):
    return build_parser().run(demo, argv)


def demo(args):
    model, tokenizer, what = load(args)
    model.eval()
    if type(model).__name__ == "T5":
        print(f"model: {what}; {model.num_parameters():,} parameters, an encoder-decoder, Unigram tokens")
        encoder_decoder_tasks(model, tokenizer, args.labels.split(","), args.max_new_tokens or 20, args)
        return
    char_level = type(tokenizer).__name__ == "CharTokenizer"
    max_new = args.max_new_tokens or (60 if char_level else 20)
    labels = [label if label.startswith(" ") else " " + label for label in args.labels.split(",")]
    print(f"model: {what}; {model.num_parameters():,} parameters, block_size {model.config.block_size}, "
          f"{'character' if char_level else 'BPE'} tokens")
    sentiment(model, tokenizer, labels)
    question_answering(model, tokenizer, max_new, args)
    summarise(model, tokenizer, 2 * max_new, args)
    if char_level:
        print("\nA small character model has seen no reviews, questions or TL;DRs: expect its label "
              "preference to be a spelling habit, and its answers to continue Shakespeare.")


if __name__ == "__main__":
    main()
