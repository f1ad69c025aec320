"""An extra head: which play is this passage from? Against a zero-shot baseline.

    python demos/classify.py                     # about 2 minutes on 2 CPU cores
    python demos/classify.py --task genre        # comedy (The Tempest, A Midsummer Night's Dream) vs tragedy
    python demos/classify.py --ckpt out/shakespeare/ckpt.npz --iters 600

The shipped corpus has eight plays (minillm/corpus/PROVENANCE.md): six
tragedies and two comedies, no history. A passage is ``--passage-len``
characters cut at random from a play. Every play is split in two: its first
80 % feeds pretraining (when the demo pretrains its own base) and the
classifier's training passages, its last 20 % only the test passages, so no
test text was seen by anything before the test.

Three classifiers, the same test passages:

* **zero-shot**: no training at all. A play model knows who speaks in which
  play, so we ask it who speaks next: P(name | passage + "\\n\\n") for the
  most frequent speaker of each play (Ham, MACBETH, Romeo, Lear, OTHELLO,
  BRUTUS, PROSPERO, LYSANDER, spelt as the play spells them), normalised over
  the eight names with ``minillm.evaluate.classify`` (per-token mean, since
  the names differ in length): the course's P(label | prompt) idea. For
  genres we compare the mean probability of each genre's plays (a sum would
  favour the six tragedies over the two comedies).
* **head (last token), frozen body**: ``GPTClassifier``: the last hidden state
  (after ln_f, at the passage's last character) -> Linear(C, K); only the head trains.
* **head (mean), frozen body**: the same head on the mean of the passage's hidden states.
* **head (last token) + body**: every weight trained (a smaller learning rate for the body).

For ``--task genre`` the passages are balanced: as many comedy as tragedy
passages (each comedy gives three times as many as each tragedy).

Prints accuracies (and chance) and writes ``--out/classify.png`` (confusion matrices).
"""
import argparse
import os
import time

import numpy

from minillm import backend, cli
from minillm.evaluate import classify
from minillm.corpus import load_corpus, split_plays
from minillm.finetune import GPTClassifier, classifier_step, load_pretrained, pretrain_base, predict_classes
from minillm.models import GPT, GPTConfig
from minillm.optim import AdamW
from minillm.progress import Progress
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig

SPEAKERS = {  # the most frequent speaker of each play, as that play spells the speaker lines
    "HAMLET, PRINCE OF DENMARK": "Ham", "MACBETH": "MACBETH", "ROMEO AND JULIET": "Romeo",
    "THE TRAGEDY OF KING LEAR": "Lear", "OTHELLO, THE MOOR OF VENICE": "OTHELLO", "JULIUS CAESAR": "BRUTUS",
    "THE TEMPEST": "PROSPERO", "A MIDSUMMER NIGHT'S DREAM": "LYSANDER",
}
COMEDIES = ("THE TEMPEST", "A MIDSUMMER NIGHT'S DREAM")
SHORT = {"HAMLET, PRINCE OF DENMARK": "Hamlet", "ROMEO AND JULIET": "Romeo", "THE TRAGEDY OF KING LEAR": "Lear",
         "OTHELLO, THE MOOR OF VENICE": "Othello", "JULIUS CAESAR": "Caesar", "THE TEMPEST": "Tempest",
         "A MIDSUMMER NIGHT'S DREAM": "Dream", "MACBETH": "Macbeth"}


def build_parser():
    p = cli.ArgumentParser(description="Classify passages by play (or genre): extra head vs zero-shot.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", type=cli.existing_file, default=None,
                   help="base checkpoint (default: pretrain one briefly here)")
    p.add_argument("--task", choices=("play", "genre"), default="play")
    p.add_argument("--out", default=os.path.join("out", "classify"))
    p.add_argument("--pretrain-iters", type=cli.positive_int, default=400,
                   help="pretraining steps when there is no --ckpt")
    p.add_argument("--iters", type=cli.positive_int, default=300, help="classifier training steps (each variant)")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--lr", type=cli.positive_float, default=3e-2, help="learning rate of the head")
    p.add_argument("--body-lr", type=cli.positive_float, default=1e-3,
                   help="learning rate of the body (head + body)")
    p.add_argument("--passage-len", type=cli.positive_int, default=64, help="characters per passage")
    p.add_argument("--n-train", type=cli.positive_int, default=400,
                   help="training passages per play (per play on average with --task genre)")
    p.add_argument("--n-test", type=cli.positive_int, default=25,
                   help="test passages per play (per play on average with --task genre)")
    p.add_model_flags(block_size=64, n_layer=2, n_head=4, n_embd=64)
    p.add_argument("--seed", type=cli.non_negative_int, default=1337)
    return p


def passages(text, n, length, rng):
    starts = rng.integers(0, len(text) - length, size=n)
    return [text[s:s + length] for s in starts]


def main(argv=None):
    return build_parser().run(compare, argv)


def compare(args):
    if args.ckpt is None and args.passage_len > args.block_size:     # known before pretraining: say it now
        raise ValueError(f"--passage-len {args.passage_len} exceeds --block-size {args.block_size}")
    corpus = load_corpus()
    plays = split_plays(corpus)
    titles = [t for t, _ in plays]
    if sorted(titles) != sorted(SPEAKERS):
        raise ValueError(f"this demo expects the eight shipped plays, found {titles}")
    cut = {t: int(0.8 * len(p)) for t, p in plays}
    rng = numpy.random.default_rng(args.seed)
    if args.ckpt is not None:
        base, tok = load_pretrained(args.ckpt)
        print(f"base: {args.ckpt} (note: it may have seen the test passages during pretraining)")
    else:
        tok = CharTokenizer.from_text(corpus)
        train_text = "\n\n\n".join(p[:cut[t]] for t, p in plays)
        ids = numpy.array(tok.encode(train_text))
        config = GPTConfig(vocab_size=tok.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                           n_head=args.n_head, n_embd=args.n_embd)
        print(f"pretraining a {config.n_layer}-layer, {config.n_embd}-wide char model for {args.pretrain_iters} "
              "steps on the first 80 % of each play ...", flush=True)
        tcfg = TrainConfig(iters=args.pretrain_iters, batch_size=16, lr=2e-3, min_lr=2e-4, warmup_iters=20,
                           eval_every=max(args.pretrain_iters, 1), eval_iters=5, checkpoint_every=0,
                           seed=args.seed, log_every=100)
        base = pretrain_base(ids[:int(0.95 * len(ids))], ids[int(0.95 * len(ids)):], config, tcfg,
                             seed=args.seed)
    if args.passage_len > base.config.block_size:
        raise ValueError(f"--passage-len {args.passage_len} exceeds the model's block_size {base.config.block_size}")

    if args.task == "play":
        classes = titles
        label_of = {t: i for i, t in enumerate(titles)}
    else:
        classes = ["comedy", "tragedy"]
        label_of = {t: 0 if t in COMEDIES else 1 for t in titles}
    train_x, train_y, test_x, test_y, test_play = [], [], [], [], []
    members = numpy.bincount([label_of[t] for t in titles])            # plays per class
    for title, text in plays:
        share = len(titles) / (len(classes) * members[label_of[title]])   # balanced classes
        for s in passages(text[:cut[title]], round(args.n_train * share), args.passage_len, rng):
            train_x.append(tok.encode(s))
            train_y.append(label_of[title])
        for s in passages(text[cut[title]:], round(args.n_test * share), args.passage_len, rng):
            test_x.append(s)
            test_y.append(label_of[title])
            test_play.append(title)
    train_x, train_y, test_y = numpy.array(train_x), numpy.array(train_y), numpy.array(test_y)
    test_ids = numpy.array([tok.encode(s) for s in test_x])
    base_state = base.state_dict()
    results, confusions = [], {}

    # zero-shot: who speaks next?
    start = time.perf_counter()
    base.eval()
    names = [SPEAKERS[t] for t in titles]
    predicted = []
    progress = Progress(len(test_x), every=max(1, len(test_x) // 5), unit="passage")
    print(f"zero-shot: scoring {len(names)} speaker names after each of {len(test_x)} test passages ...", flush=True)
    for passage in test_x:
        probs = classify(base, tok, passage + "\n\n", names, length_normalize=True)
        by_play = numpy.array([probs[SPEAKERS[t]] for t in titles])
        if args.task == "genre":                      # the mean over each genre's plays (2 vs 6 plays)
            comedy = numpy.mean([p for t, p in zip(titles, by_play) if t in COMEDIES])
            tragedy = numpy.mean([p for t, p in zip(titles, by_play) if t not in COMEDIES])
            predicted.append(0 if comedy > tragedy else 1)
        else:
            predicted.append(int(by_play.argmax()))
        progress.update(len(predicted))
    progress.close()
    predicted = numpy.array(predicted)
    results.append(("zero-shot (who speaks next?)", 0, (predicted == test_y).mean(), time.perf_counter() - start))
    confusions["zero-shot"] = predicted

    variants = (("head (last token), frozen body", True, "last"), ("head (mean), frozen body", True, "mean"),
                ("head (last token) + body", False, "last"))
    for name, freeze, pooling in variants:
        body = GPT(base.config)
        body.load_state_dict(base_state)
        clf = GPTClassifier(body, len(classes), freeze_body=freeze, seed=args.seed, pooling=pooling)
        groups = [{"params": list(clf.head.parameters()), "lr": args.lr}]
        if not freeze:
            groups.append({"params": list(body.parameters()), "lr": args.body_lr})
        optimizer = AdamW(groups, lr=args.lr, weight_decay=0.0)
        batch_rng = numpy.random.default_rng(args.seed + 1)
        start = time.perf_counter()
        clf.train()
        print(f"{name}: {args.iters} steps ...", flush=True)
        progress = Progress(args.iters)
        for step in range(args.iters):
            rows = batch_rng.choice(len(train_x), size=min(args.batch_size, len(train_x)), replace=False)
            loss = classifier_step(clf, optimizer, train_x[rows], None, train_y[rows])
            progress.update(step + 1, loss)
        progress.close()
        predicted = predict_classes(clf, test_ids)
        n_trained = clf.num_parameters(trainable_only=True)
        results.append((name, n_trained, (predicted == test_y).mean(), time.perf_counter() - start))
        confusions[name] = predicted

    chance = max(numpy.bincount(test_y)) / len(test_y)              # the classes are balanced
    print(f"\nwhich {'play' if args.task == 'play' else 'genre'} is a {args.passage_len}-character passage from? "
          f"{len(test_y)} test passages from the last 20 % of each play; {args.iters} training steps of "
          f"{args.batch_size}; backend {backend.name}")
    print(f"{'classifier':<32} {'trained params':>14} {'accuracy':>9} {'seconds':>8}")
    print(f"{'chance':<32} {0:>14,} {chance:>9.1%} {'':>8}")
    for name, n, acc, seconds in results:
        print(f"{name:<32} {n:>14,} {acc:>9.1%} {seconds:>8.1f}")
    os.makedirs(args.out, exist_ok=True)
    labels = [SHORT.get(c, c) for c in classes]
    plot(confusions, test_y, labels, os.path.join(args.out, "classify.png"))
    print(f"wrote {os.path.join(args.out, 'classify.png')}")


def plot(confusions, truth, labels, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    K = len(labels)
    figure = Figure(figsize=(4.2 * len(confusions), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    for i, (name, predicted) in enumerate(confusions.items()):
        name = name.replace(", frozen body", ",\nfrozen body")
        matrix = numpy.zeros((K, K), dtype=int)
        numpy.add.at(matrix, (truth, predicted), 1)
        axes = figure.add_subplot(1, len(confusions), i + 1)
        axes.imshow(matrix, cmap="Blues")
        axes.set_xticks(range(K), labels, rotation=60, fontsize=7)
        axes.set_yticks(range(K), labels, fontsize=7)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(f"{name}: {(predicted == truth).mean():.0%}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
