"""The encoder as a classifier next to the decoder: same task, same size, same training time.

    python demos/encoder_vs_decoder.py                 # about 4 minutes on 2 CPU cores
    python demos/encoder_vs_decoder.py --task play --pretrain-seconds 120 --finetune-seconds 90

The task of ``demos/classify.py``: which genre (comedy or tragedy; ``--task
play``: which of the eight plays) is a 64-character passage from? The same
split: each play's first 80 % for pretraining and training passages, its last
20 % for the test passages. Characters are the tokens (BERT's vocabulary adds
[PAD] [CLS] [SEP] [MASK]).

Two models of the same shape (``--n-layer``, ``--n-embd``, ``--n-head``; the
parameter counts are printed: BERT has a pooler and an MLM transform more,
a few percent), each

1. pretrained from scratch for ``--pretrain-seconds`` with its own objective:
   the decoder (GPT) on next-character prediction, the encoder (BERT) on the
   masked-LM objective (15 %, 80/10/10);
2. finetuned, every weight, for ``--finetune-seconds`` on the labelled passages:
   the decoder through its last position's hidden state (``GPTClassifier``,
   the only position that has seen the whole passage), the encoder through
   [CLS] (pooler, then ``classifier``: every position sees the whole passage).

Time, not steps, is what is equal (CPU time of this process, so that other
programs on a shared machine do not tilt it): the steps each got are printed.
Prints the table and writes ``--out/encoder_vs_decoder.json``.
"""
import argparse
import json
import os
import sys
import time

import numpy

from minillm import Bert, BertConfig, GPT, GPTConfig, backend, cli, no_grad
from minillm import functional as F
from minillm.batches import get_batch
from minillm.corpus import load_corpus, split_plays
from minillm.finetune import GPTClassifier, classifier_step, predict_classes
from minillm.mlm import mlm_batch
from minillm.optim import AdamW, clip_grad_norm
from minillm.tokenizers import CharTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from classify import COMEDIES, passages  # noqa: E402  the task and passages of demos/classify.py


def build_parser():
    p = cli.ArgumentParser(description="BERT [CLS] head vs GPT last-token head, equal size and time.",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", choices=("genre", "play"), default="genre")
    p.add_argument("--out", default=os.path.join("out", "encoder_vs_decoder"))
    p.add_argument("--pretrain-seconds", type=cli.positive_float, default=75.0,
                   help="pretraining CPU seconds of each model")
    p.add_argument("--finetune-seconds", type=cli.positive_float, default=45.0,
                   help="finetuning CPU seconds of each model")
    p.add_argument("--batch-size", type=cli.positive_int, default=32)
    p.add_argument("--passage-len", type=cli.positive_int, default=64, help="characters per passage (= GPT's block size)")
    p.add_argument("--n-train", type=cli.positive_int, default=400, help="training passages per play (on average)")
    p.add_argument("--n-test", type=cli.positive_int, default=50, help="test passages per play (on average)")
    p.add_argument("--n-layer", type=cli.positive_int, default=2)
    p.add_argument("--n-head", type=cli.positive_int, default=4)
    p.add_argument("--n-embd", type=cli.positive_int, default=64)
    p.add_argument("--lr", type=cli.positive_float, default=2e-3, help="pretraining learning rate")
    p.add_argument("--finetune-lr", type=cli.positive_float, default=1e-3)
    p.add_argument("--seed", type=int, default=1337)
    return p


def train_for(seconds, step):
    """Call ``step()`` until ``seconds`` of this process's CPU time have passed; returns
    (steps, last loss). CPU time, not wall time: on a shared machine another program's
    load would otherwise decide which model gets more computation."""
    steps, loss, start = 0, float("nan"), time.process_time()
    while time.process_time() - start < seconds:
        loss = step()
        steps += 1
    return steps, loss


def optimizer_step(model, optimizer, loss):
    optimizer.zero_grad()
    loss.backward()
    clip_grad_norm([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    return float(loss.data)


def labelled_passages(plays, cut, task, args, rng):
    """(train passages, train labels, test passages, test labels, class names), classes balanced."""
    titles = [t for t, _ in plays]
    classes = titles if task == "play" else ["comedy", "tragedy"]
    label = {t: (titles.index(t) if task == "play" else int(t not in COMEDIES)) for t in titles}
    members = numpy.bincount([label[t] for t in titles])
    train_x, train_y, test_x, test_y = [], [], [], []
    for title, text in plays:
        share = len(titles) / (len(classes) * members[label[title]])
        for s in passages(text[:cut[title]], round(args.n_train * share), args.passage_len, rng):
            train_x.append(s), train_y.append(label[title])
        for s in passages(text[cut[title]:], round(args.n_test * share), args.passage_len, rng):
            test_x.append(s), test_y.append(label[title])
    return train_x, numpy.array(train_y), test_x, numpy.array(test_y), classes


def main(argv=None):
    return build_parser().run(compare, argv)


def compare(args):
    plays = split_plays(load_corpus())
    cut = {t: int(0.8 * len(p)) for t, p in plays}
    tok = CharTokenizer.from_text(load_corpus())
    V = tok.vocab_size
    PAD, CLS, SEP, MASK = V, V + 1, V + 2, V + 3                        # BERT's specials after the characters
    pretrain_ids = numpy.array(tok.encode("\n\n\n".join(p[:cut[t]] for t, p in plays)), dtype=numpy.int64)
    rng = numpy.random.default_rng(args.seed)
    train_x, train_y, test_x, test_y, classes = labelled_passages(plays, cut, args.task, args, rng)
    train_ids = numpy.array([tok.encode(s) for s in train_x])           # (N, passage_len)
    test_ids = numpy.array([tok.encode(s) for s in test_x])
    wrap = lambda ids: numpy.concatenate([numpy.full((len(ids), 1), CLS), ids,  # noqa: E731  [CLS] x [SEP]
                                          numpy.full((len(ids), 1), SEP)], axis=1)
    shape = dict(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=args.passage_len, **shape), seed=args.seed)
    bert = Bert(BertConfig(vocab_size=V + 4, max_position_embeddings=args.passage_len + 2, pad_token_id=PAD,
                           num_labels=len(classes), **shape), seed=args.seed)
    print(f"{len(train_y)} training and {len(test_y)} test passages of {args.passage_len} characters, "
          f"{len(classes)} classes; {args.pretrain_seconds:.0f} s pretraining + {args.finetune_seconds:.0f} s "
          f"finetuning each; backend {backend.name}", flush=True)
    rows = []

    # the decoder: next-character pretraining, then the last-token head
    batch_rng = numpy.random.default_rng(args.seed + 1)
    optimizer = AdamW(gpt.parameters(), lr=args.lr, weight_decay=0.0)
    pre_steps, pre_loss = train_for(args.pretrain_seconds, lambda: optimizer_step(
        gpt, optimizer, gpt(*get_batch(pretrain_ids, args.batch_size, args.passage_len, batch_rng))[1]))
    print(f"GPT pretrained: {pre_steps} steps, next-character loss {pre_loss:.3f}", flush=True)
    clf = GPTClassifier(gpt, len(classes), freeze_body=False, seed=args.seed)
    optimizer = AdamW(clf.parameters(), lr=args.finetune_lr, weight_decay=0.0)
    rows_of = lambda: batch_rng.choice(len(train_y), size=min(args.batch_size, len(train_y)), replace=False)  # noqa: E731

    def gpt_step():
        rows_ = rows_of()
        return classifier_step(clf, optimizer, train_ids[rows_], None, train_y[rows_])
    fine_steps, fine_loss = train_for(args.finetune_seconds, gpt_step)
    accuracy = (predict_classes(clf, test_ids) == test_y).mean()
    rows.append(("decoder (GPT), last-token head", clf.num_parameters(), pre_steps, fine_steps, accuracy))
    print(f"GPT finetuned: {fine_steps} steps, loss {fine_loss:.3f}, test accuracy {accuracy:.1%}", flush=True)

    # the encoder: masked-LM pretraining, then the [CLS] head
    optimizer = AdamW(bert.parameters(), lr=args.lr, weight_decay=0.0)
    mlm = dict(batch_size=args.batch_size, seq_len=args.passage_len + 2, cls_id=CLS, sep_id=SEP, mask_id=MASK,
               vocab_size=V + 4, special_ids=(PAD, CLS, SEP, MASK))
    def bert_pretrain_step():
        inputs, targets = mlm_batch(pretrain_ids, rng=batch_rng, **mlm)
        return optimizer_step(bert, optimizer, bert(inputs, targets=targets)[1])
    pre_steps, pre_loss = train_for(args.pretrain_seconds, bert_pretrain_step)
    print(f"BERT pretrained: {pre_steps} steps, masked-LM loss {pre_loss:.3f}", flush=True)
    optimizer = AdamW(bert.parameters(), lr=args.finetune_lr, weight_decay=0.0)

    def bert_step():
        rows_ = rows_of()
        logits = bert.classify(wrap(train_ids[rows_]))                          # (B, K)
        return optimizer_step(bert, optimizer, F.cross_entropy(logits, backend.asarray(train_y[rows_])))
    fine_steps, fine_loss = train_for(args.finetune_seconds, bert_step)
    bert.eval()
    with no_grad():
        predicted = numpy.concatenate([backend.to_numpy(bert.classify(wrap(test_ids[i:i + 64])).data).argmax(-1)
                                       for i in range(0, len(test_ids), 64)])
    accuracy = (predicted == test_y).mean()
    rows.append(("encoder (BERT), [CLS] head", bert.num_parameters(), pre_steps, fine_steps, accuracy))
    print(f"BERT finetuned: {fine_steps} steps, loss {fine_loss:.3f}, test accuracy {accuracy:.1%}", flush=True)

    chance = numpy.bincount(test_y).max() / len(test_y)
    print(f"\n{args.task} of a {args.passage_len}-character passage, {len(test_y)} test passages "
          f"(chance {chance:.1%}); every weight finetuned")
    print(f"| model | parameters | pretraining steps ({args.pretrain_seconds:.0f} CPU s) | finetuning steps "
          f"({args.finetune_seconds:.0f} CPU s) | test accuracy |\n| --- | ---: | ---: | ---: | ---: |")
    for name, n, pre, fine, acc in rows:
        print(f"| {name} | {n:,} | {pre} | {fine} | {acc:.1%} |")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "encoder_vs_decoder.json"), "w") as f:
        json.dump({"args": vars(args), "chance": chance, "rows": [list(r[:4]) + [float(r[4])] for r in rows]}, f)
    print(f"wrote {os.path.join(args.out, 'encoder_vs_decoder.json')}")
    return 0


if __name__ == "__main__":
    main()
