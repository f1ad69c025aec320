"""Pretrain a small BERT on the shipped Shakespeare with the masked-LM objective.

    python demos/pretrain_mlm.py                       # a few minutes on 2 CPU cores
    python demos/pretrain_mlm.py --iters 3000 --n-embd 192

Each batch is random windows of the corpus, written [CLS] window [SEP]; 15 % of
the tokens are chosen, 80 % of those become [MASK], 10 % a random token, 10 %
stay (``minillm.mlm``), and the loss is the cross-entropy at the chosen
positions only. Prints the held-out masked-token accuracy and loss as it
trains, fill-mask examples before and after ("To be, or not to [MASK]"), and
writes into ``--out``: ``model/`` (config.json + model.safetensors, loadable by
``minillm.hf.load`` and by transformers' BertForMaskedLM), ``tokenizer.json``
(minillm's), ``mlm_curves.png`` and ``metrics.json``.

Tokenizer: byte-level BPE (``--tokenizer bpe``, default) trained here on the
corpus with [PAD] [CLS] [SEP] [MASK] added. A BPE token is often a whole word
(" be", " not"), so a masked token has to be guessed from the sentence around
it. With characters (``--tokenizer char``) a masked letter is mostly a
spelling exercise, solved from the letters next to it ("th[MASK] king"), and
the fill-mask examples ask for one letter.

Defaults (BPE 1024, 2 layers x 128, 16-token sequences, 128 a batch, lr 2e-3,
1500 steps) were found by counting steps. A masked LM first learns the
unigram guess ("\n", ",") and to copy the 10 % unchanged tokens; it uses the
sentence only once attention has learned where the neighbours are. With
64-token windows and 4 layers it was still on that plateau after 600 steps
(the same guess for every prompt); with 16-token windows (16 learned
positions to tell apart, and each prompt is one line) and 2 layers it leaves
it after about 300 steps, and by 1500 it fills in words of the right kind.
"""
import argparse
import json
import os
import time

import numpy

from minillm import Bert, BertConfig, backend, cli
from minillm.mlm import fill_mask, masked_accuracy, mlm_batch
from minillm.optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_weight_decay, set_lr
from minillm.progress import Progress
from minillm.corpus import load_corpus
from minillm.tokenizers import BPETokenizer, CharTokenizer

SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[MASK]")
PROMPTS = ("To be, or not to [MASK].", "O Romeo, Romeo, wherefore art thou [MASK]?",
           "Good night, sweet [MASK].", "My lord, the [MASK] is dead.")


def build_parser():
    p = cli.ArgumentParser(description="Masked-LM pretraining of a small BERT on Shakespeare.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default=os.path.join("out", "pretrain_mlm"))
    p.add_argument("--tokenizer", choices=("bpe", "char"), default="bpe")
    p.add_argument("--vocab-size", type=cli.positive_int, default=1024,
                   help="BPE vocabulary, the 4 special tokens included")
    p.add_argument("--iters", type=cli.positive_int, default=1500)
    p.add_argument("--batch-size", type=cli.positive_int, default=128)
    p.add_argument("--seq-len", type=cli.positive_int, default=16, help="tokens per sequence, [CLS] and [SEP] included")
    p.add_argument("--n-layer", type=cli.positive_int, default=2)
    p.add_argument("--n-head", type=cli.positive_int, default=4)
    p.add_argument("--n-embd", type=cli.positive_int, default=128)
    p.add_argument("--lr", type=cli.positive_float, default=2e-3)
    p.add_argument("--min-lr", type=cli.positive_float, default=1e-4)
    p.add_argument("--warmup-iters", type=cli.non_negative_int, default=30)
    p.add_argument("--weight-decay", type=cli.non_negative_float, default=0.01)
    p.add_argument("--eval-every", type=cli.positive_int, default=250)
    p.add_argument("--eval-batches", type=cli.positive_int, default=8, help="held-out batches per evaluation")
    p.add_argument("--prompt", action="append", help="a fill-mask prompt with [MASK] (repeatable)")
    p.add_argument("--seed", type=int, default=1337)
    return p


def check_flags(args):
    """What no single flag's type can check, as a ValueError naming the flags."""
    if args.seq_len < 3:
        raise ValueError(f"--seq-len must be at least 3 ([CLS] token [SEP]), got {args.seq_len}")
    if args.min_lr > args.lr:
        raise ValueError(f"--min-lr ({args.min_lr}) must not exceed --lr ({args.lr})")
    if any("[MASK]" not in prompt for prompt in args.prompt or ()):
        raise ValueError("every --prompt needs a [MASK]")


class MaskableText:
    """The tokenizer plus the ids of the four special tokens, and prompts with [MASK] in them."""

    def __init__(self, kind, corpus, vocab_size):
        self.kind = kind
        if kind == "bpe":
            self.tok = BPETokenizer.train(corpus, vocab_size, special_tokens=SPECIALS)
            self.special = {s: self.tok.special_tokens[s] for s in SPECIALS}
        else:
            self.tok = CharTokenizer.from_text(corpus)
            self.special = {s: self.tok.vocab_size + k for k, s in enumerate(SPECIALS)}
        self.vocab_size = self.tok.vocab_size + (len(SPECIALS) if kind == "char" else 0)

    def encode(self, text):
        return self.tok.encode(text, special=False) if self.kind == "bpe" else self.tok.encode(text)

    def encode_prompt(self, text):
        """[CLS] prompt [SEP], each [MASK] one token. A BPE token carries its leading space
        (" be"), so the space before a [MASK] belongs to the masked token."""
        ids = [self.special["[CLS]"]]
        for k, piece in enumerate(text.split("[MASK]")):
            if k:
                ids.append(self.special["[MASK]"])
            piece = piece.rstrip(" ") if self.kind == "bpe" and k < text.count("[MASK]") else piece
            ids += self.encode(piece) if piece else []
        return ids + [self.special["[SEP]"]]

    def token_text(self, i):
        names = {v: k for k, v in self.special.items()}
        return names[i] if i in names else self.tok.decode([i])


def show_fill_mask(model, text, prompts, say):
    for prompt in prompts:
        ids = text.encode_prompt(prompt)
        if len(ids) > model.config.max_position_embeddings:
            say(f"  {prompt:<46} (skipped: {len(ids)} tokens, more than --seq-len)")
            continue
        for position, best in fill_mask(model, ids, text.special["[MASK]"], top_k=5):
            guesses = ", ".join(f"{text.token_text(i)!r} {p:.2f}" for i, p in best)
            say(f"  {prompt:<46} -> {guesses}")


def evaluate(model, batches):
    """(mean masked-LM loss, masked-token accuracy) over fixed held-out batches."""
    model.eval()
    losses, correct, counted = [], 0, 0
    from minillm import no_grad
    with no_grad():
        for inputs, targets in batches:
            logits, loss = model(inputs, targets=targets)
            losses.append(float(loss.data))
            c, n = masked_accuracy(backend.to_numpy(logits.data), targets)
            correct, counted = correct + c, counted + n
    model.train()
    return float(numpy.mean(losses)), correct / counted


def main(argv=None):
    return build_parser().run(pretrain, argv)


def pretrain(args):
    check_flags(args)
    corpus = load_corpus()
    started = time.perf_counter()
    text = MaskableText(args.tokenizer, corpus, args.vocab_size)
    ids = numpy.array(text.encode(corpus), dtype=numpy.int64)
    cut = int(0.9 * len(ids))
    train_ids, val_ids = ids[:cut], ids[cut:]
    special_ids = list(text.special.values())
    s = text.special
    batch = dict(batch_size=args.batch_size, seq_len=args.seq_len, cls_id=s["[CLS]"], sep_id=s["[SEP]"],
                 mask_id=s["[MASK]"], vocab_size=text.vocab_size, special_ids=special_ids)
    val_rng = numpy.random.default_rng(args.seed + 1)
    val_batches = [mlm_batch(val_ids, rng=val_rng, **batch) for _ in range(args.eval_batches)]
    config = BertConfig(vocab_size=text.vocab_size, max_position_embeddings=args.seq_len, n_layer=args.n_layer,
                        n_head=args.n_head, n_embd=args.n_embd, pad_token_id=s["[PAD]"])
    model = Bert(config, seed=args.seed)
    print(f"{args.tokenizer} tokenizer, {text.vocab_size} ids; {len(train_ids):,} training tokens; BERT "
          f"{config.n_layer}x{config.n_embd}, {model.num_parameters():,} parameters; backend {backend.name}")
    prompts = args.prompt or PROMPTS
    print("fill-mask before training:")
    show_fill_mask(model, text, prompts, print)
    history = {"step": [], "val_loss": [], "val_accuracy": [], "train_loss": []}
    val_loss, val_acc = evaluate(model, val_batches)
    history["step"].append(0), history["val_loss"].append(val_loss), history["val_accuracy"].append(val_acc)
    print(f"step 0: held-out masked-LM loss {val_loss:.3f}, masked-token accuracy {val_acc:.1%}")

    optimizer = AdamW(param_groups_for_weight_decay(model, args.weight_decay), lr=args.lr)
    rng = numpy.random.default_rng(args.seed)
    progress = Progress(args.iters)
    train_start = time.perf_counter()
    for step in range(args.iters):
        lr = cosine_lr(step, args.lr, args.min_lr, min(args.warmup_iters, args.iters), args.iters)
        set_lr(optimizer, lr)
        inputs, targets = mlm_batch(train_ids, rng=rng, **batch)
        _, loss = model(inputs, targets=targets)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        history["train_loss"].append(float(loss.data))
        progress.update(step + 1, float(loss.data), lr)
        if (step + 1) % args.eval_every == 0 or step + 1 == args.iters:
            val_loss, val_acc = evaluate(model, val_batches)
            for key, value in (("step", step + 1), ("val_loss", val_loss), ("val_accuracy", val_acc)):
                history[key].append(value)
            progress.message(f"step {step + 1}: held-out masked-LM loss {val_loss:.3f}, "
                             f"masked-token accuracy {val_acc:.1%}")
    progress.close()
    train_seconds = time.perf_counter() - train_start
    print("fill-mask after training:")
    show_fill_mask(model, text, prompts, print)
    targets = numpy.concatenate([t[t != -100] for _, t in val_batches])
    baseline = numpy.bincount(targets).max() / len(targets)          # always the most frequent token
    print(f"masked-token accuracy {history['val_accuracy'][0]:.1%} -> {history['val_accuracy'][-1]:.1%} "
          f"(always guessing the most frequent token: {baseline:.1%}), "
          f"loss {history['val_loss'][0]:.3f} -> {history['val_loss'][-1]:.3f}; training {train_seconds:.0f} s "
          f"({1000 * train_seconds / args.iters:.0f} ms/step), total {time.perf_counter() - started:.0f} s")

    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(os.path.join(args.out, "model"))
    text.tok.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump({**history, "train_seconds": train_seconds, "most_frequent_baseline": baseline, "special_ids": text.special,
                   "tokenizer": args.tokenizer}, f)
    plot(history, os.path.join(args.out, "mlm_curves.png"))
    print(f"wrote {args.out}/model, tokenizer.json, metrics.json, mlm_curves.png")


def plot(history, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    train = numpy.array(history["train_loss"])
    window = max(1, len(train) // 30)
    smooth = numpy.convolve(train, numpy.ones(window) / window, mode="valid")
    left.plot(numpy.arange(window, len(train) + 1), smooth, label="train (moving mean)", alpha=0.7)
    left.plot(history["step"], history["val_loss"], "o-", label="held-out")
    left.set(xlabel="step", ylabel="masked-LM loss (nats)", title="loss at the chosen 15 %")
    left.legend()
    right.plot(history["step"], numpy.array(history["val_accuracy"]) * 100, "o-", color="C2")
    right.set(xlabel="step", ylabel="accuracy (%)", title="masked-token accuracy, held-out")
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
