"""Tests for minillm.data: the pretraining-data pipeline.

Properties (hypothesis, derandomised by the ``ci`` profile):
idempotence, clean unique documents survive untouched, every exact duplicate
goes, near duplicates above the threshold go and different documents stay,
no generated e-mail / phone / IP survives scrubbing, the pipeline pulls one
document at a time and its memory does not grow with the corpus beyond the
dedup index, and the report's counts add up.
"""
import re
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minillm.data import (CleanConfig, Cleaner, MinHashLSH, clean_documents, clean_folder,
                          normalise, scrub_pii)

_rng = np.random.default_rng(1234)
VOCAB = ["".join(_rng.choice(list("abcdefghijklmnopqrstuvwxyz"), size=n))
         for n in _rng.integers(3, 10, size=5000)]


def clean_doc(rng, min_chars=300):
    """A document every filter accepts: lines of random words, each ending with a period."""
    lines = []
    while sum(len(line) + 1 for line in lines) < min_chars:
        words = [VOCAB[i] for i in rng.integers(0, len(VOCAB), size=rng.integers(6, 13))]
        lines.append(" ".join(words).capitalize() + ".")
    return "\n".join(lines)


def clean_corpus(seed, n_docs):
    rng = np.random.default_rng(seed)
    return [(f"doc{i}.txt", clean_doc(rng)) for i in range(n_docs)]


def edit_words(text, rate, rng):
    """Replace about ``rate`` of the words by random vocabulary words (line breaks kept)."""
    lines = []
    for line in text.split("\n"):
        words = line.split(" ")
        for i in np.flatnonzero(rng.random(len(words)) < rate):
            words[i] = VOCAB[rng.integers(len(VOCAB))]
        lines.append(" ".join(words))
    return "\n".join(lines)


def run(docs, config=None):
    cleaned, report = clean_documents(docs, config)
    return list(cleaned), report


def doc_removals(report):
    return {r: c for r, (c, _) in report.removed.items() if r in report.doc_reasons}


# --------------------------------------------------------------- strategies
phones = st.one_of(
    st.builds("{}{}-{}-{}".format, st.sampled_from(["", "+1 ", "1-"]),
              st.integers(200, 999), st.integers(200, 999), st.integers(0, 9999).map("{:04d}".format)),
    st.builds("({}) {}-{}".format, st.integers(200, 999), st.integers(200, 999),
              st.integers(0, 9999).map("{:04d}".format)),
    st.builds("{}.{}.{}".format, st.integers(200, 999), st.integers(200, 999),
              st.integers(0, 9999).map("{:04d}".format)),
    st.builds(lambda cc, groups, sep: f"+{cc}{sep}" + sep.join(groups), st.integers(1, 999),
              st.lists(st.integers(100, 9999).map(str), min_size=2, max_size=3), st.sampled_from(" -.")))
ips = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str).filter(lambda a: a != "::"))
pii = st.one_of(st.emails(), phones, ips)
prose = st.text(alphabet="abcdefghij klmnopqrstuvwxyzABCXYZ ,;!?'\"()-\n", max_size=40)


@st.composite
def messy_corpora(draw):
    """Clean documents plus copies, edited copies, PII, boilerplate, junk and mixtures."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    docs = []
    for i in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["clean", "copy", "edited", "pii", "boiler", "junk",
                                     "repeat", "mix"])) if docs else "clean"
        base = docs[rng.integers(len(docs))][1] if docs else ""
        if kind == "clean":
            text = clean_doc(rng)
        elif kind == "copy":
            text = "  " + base.upper().replace(" ", "   ") + "\r\n"
        elif kind == "edited":
            text = edit_words(base, draw(st.sampled_from([0.02, 0.1, 0.5])), rng)
        elif kind == "pii":
            text = clean_doc(rng) + " " + draw(pii) + " " + draw(prose)
        elif kind == "boiler":
            text = "Copyright (c) 2024 Somebody\n*****\n" + clean_doc(rng) + "\nProject Gutenberg"
        elif kind == "junk":
            text = draw(st.text(max_size=300))
        elif kind == "repeat":
            text = "\n".join([clean_doc(rng, 50)] * 6)
        else:
            text = "\n".join(base.split("\n")[:3] + clean_doc(rng).split("\n"))
        docs.append((f"doc{i}.txt", text))
    return docs


# -------------------------------------------------------------- properties
@given(messy_corpora())
@settings(max_examples=40)
def test_cleaning_clean_output_changes_nothing(docs):
    once, _ = run(docs)
    twice, report = run(once)
    assert twice == once
    assert report.docs_out == report.docs_in
    assert all(nbytes == 0 for _, nbytes in report.removed.values())


@given(st.integers(0, 2**32 - 1), st.integers(1, 15))
def test_unique_clean_documents_all_survive_untouched(seed, n_docs):
    docs = clean_corpus(seed, n_docs)
    out, report = run(docs)
    assert out == docs
    assert report.removed == {}


@given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 100), min_size=1, max_size=8))
def test_every_exact_duplicate_is_removed_and_first_copy_kept(seed, picks):
    originals = clean_corpus(seed, 5)
    docs = list(originals)
    for k, pick in enumerate(picks):   # copies differing only in case and spacing
        name, text = originals[pick % 5]
        docs.insert((pick * 7) % (len(docs) + 1), (f"copy{k}", text.swapcase().replace(" ", "\t ")))
    out, report = run(docs)
    first = {}
    for name, text in docs:
        first.setdefault(" ".join(text.casefold().split()), name)
    assert [name for name, _ in out] == [n for n, _ in docs if n in first.values()]
    assert doc_removals(report) == {"exact_duplicate": len(picks)}


@given(st.integers(0, 2**32 - 1), st.sampled_from([0.0, 0.01, 0.03, 0.1, 0.3, 0.6, 1.0]),
       st.booleans())
@settings(max_examples=30)
def test_near_duplicates_above_threshold_go_and_different_documents_stay(seed, rate, dedup_lines):
    rng = np.random.default_rng(seed)
    config = CleanConfig(near_dup_threshold=0.7, num_perm=256, dedup_lines=dedup_lines)
    original = clean_doc(rng, 3000)
    copy = edit_words(original, rate, rng)
    lsh = MinHashLSH(0.7)
    a, b = lsh.shingles(original), lsh.shingles(copy)
    jaccard = len(a & b) / len(a | b)
    out, report = run([("original", original), ("copy", copy)], config)
    if jaccard >= 0.7 + 0.12:          # 0.12 is more than 4 standard errors at 256 hashes
        assert [n for n, _ in out] == ["original"]
        assert doc_removals(report) == {"near_duplicate": 1} or jaccard == 1.0
    elif jaccard <= 0.7 - 0.12 and not dedup_lines:
        assert [n for n, _ in out] == ["original", "copy"]


def test_minhash_estimate_is_close_to_the_exact_jaccard():
    rng = np.random.default_rng(7)
    lsh = MinHashLSH(0.5, num_perm=256, seed=3)
    for rate in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4, 1.0):
        original = clean_doc(rng, 4000)
        copy = edit_words(original, rate, rng)
        a, b = lsh.shingles(original), lsh.shingles(copy)
        exact = len(a & b) / len(a | b)
        estimate = np.mean(lsh.signature(original) == lsh.signature(copy))
        se = np.sqrt(max(exact * (1 - exact), 0.01) / 256)
        assert abs(estimate - exact) <= 4 * se, (rate, exact, estimate)


def test_lsh_bands_catch_the_threshold():
    for threshold in (0.1, 0.5, 0.8, 0.95):
        b = MinHashLSH.choose_bands(threshold, 128)
        r = 128 // b
        assert 1 - (1 - threshold ** r) ** b >= 0.99


@given(st.lists(st.tuples(prose, pii), min_size=1, max_size=6), prose)
@settings(max_examples=200)
def test_no_generated_pii_survives_scrubbing(pieces, tail):
    text = "".join(f"{before} {item} " for before, item in pieces) + tail
    scrubbed = scrub_pii(text)
    for _, item in pieces:
        assert item not in scrubbed
    assert "@" not in scrubbed.replace("<EMAIL>", "")
    assert scrub_pii(scrubbed) == scrubbed


@given(st.text(alphabet="0123456789.:@-+() abcdefx\n[]", max_size=60))
@settings(max_examples=300)
def test_scrubbing_is_idempotent_on_pii_dense_text(text):
    once = scrub_pii(text)
    assert scrub_pii(once) == once


@given(st.text(max_size=80))
@settings(max_examples=200)
def test_any_single_text_cleans_idempotently_with_filters_relaxed(text):
    config = CleanConfig(min_chars=1, min_letter_share=0.0, max_repeated_line_share=1.0)
    once = Cleaner(config).clean("a", text)
    if once is not None:
        assert Cleaner(config).clean("a", once) == once


def test_pii_placeholders_and_look_alikes():
    text = ("Mail jane.doe+x@example.co.uk or call (555) 123-4567, +44 20 7946 0958; "
            "hosts 192.168.0.1 and 2001:db8::8a2e:370:7334. In 1599, at 12:30, "
            "version 3.11.2, act 4.3, 300.400.500.600, std::vector, room 42.")
    assert scrub_pii(text) == (
        "Mail <EMAIL> or call <PHONE>, <PHONE>; hosts <IP> and <IP>. In 1599, at 12:30, "
        "version 3.11.2, act 4.3, 300.400.500.600, std::vector, room 42.")
    out, report = run([("d", clean_doc(np.random.default_rng(0)) + "\nwrite to a@b.org")])
    assert out[0][1].endswith("write to <EMAIL>")
    assert report.removed["pii_email"][0] == 1


def test_quality_filters_and_boilerplate_each_name_their_reason():
    rng = np.random.default_rng(5)
    docs = [("short", "Too short."),
            ("symbols", "%$# 123 456 789 !!! " * 30),
            ("spam", "\n".join(["Buy cheap pills now, limited offer!"] * 20 + [clean_doc(rng, 100)])),
            ("book", "Project Gutenberg EBook\n-----\n" + clean_doc(rng) + "\nCopyright (c) 2024 X")]
    out, report = run(docs)
    assert doc_removals(report) == {"too_short": 1, "few_letters": 1, "repeated_lines": 1}
    assert [n for n, _ in out] == ["book"]
    assert report.removed["boilerplate_line"][0] == 3
    assert "Gutenberg" not in out[0][1] and "-----" not in out[0][1]
    assert "few_letters" in report.table() and "boilerplate_line" in report.table()


def test_lines_seen_in_an_earlier_document_are_dropped():
    rng = np.random.default_rng(2)
    first, second = clean_doc(rng), clean_doc(rng)
    shared = max(first.split("\n"), key=len)
    assert len(shared) >= CleanConfig().line_dedup_min_chars
    short = "Exit."                      # below line_dedup_min_chars: kept every time
    out, report = run([("a", first + "\n" + short), ("b", shared + "\n" + second + "\n" + short)])
    assert out == [("a", first + "\n" + short), ("b", second + "\n" + short)]
    assert report.removed["duplicate_line"] == [1, len(shared) + 1]


def test_a_document_emptied_by_line_dedup_says_so_not_too_short():
    rng = np.random.default_rng(3)
    first = clean_doc(rng)
    copied = "\n".join(first.split("\n")[:3])        # long lines, all seen in `first`
    out, report = run([("a", first), ("b", copied)], CleanConfig(near_dup_threshold=None))
    assert [n for n, _ in out] == ["a"]
    assert doc_removals(report) == {"all_lines_duplicate": 1}


def test_a_line_repeated_with_other_case_and_spacing_in_a_later_document_is_dropped():
    """Line dedup ignores case and spacing, as documented: a copy in CAPITALS with doubled
    and leading spaces (trailing ones are normalised away anyway) is still a duplicate."""
    rng = np.random.default_rng(3)
    first, second = clean_doc(rng), clean_doc(rng)
    shared = max(first.split("\n"), key=len)
    variant = "  " + "   ".join(shared.upper().split(" "))      # other case, other spacing
    assert variant != shared and variant.strip() != shared.upper()
    out, report = run([("a", first), ("b", second + "\n" + variant)])
    assert out == [("a", first), ("b", second)]
    assert report.removed["duplicate_line"][0] == 1


def test_documents_are_deduplicated_in_both_forms_so_a_second_pass_agrees():
    """A document is checked before and after its duplicate lines go. Here b and c differ
    only in a line that z already had, so after line dedup they are the same text:
    checking only the 'before' form would keep both, and a second pass would drop c."""
    rng = np.random.default_rng(4)
    z = clean_doc(rng)
    lines = [line for line in z.split("\n") if len(line) >= 40][:2]
    body = "\n".join(f"Short line number {i}." for i in range(12))
    docs = [("z", z), ("b", lines[0] + "\n" + body), ("c", lines[1] + "\n" + body)]
    config = CleanConfig(near_dup_threshold=None)
    once, report = run(docs, config)
    assert [n for n, _ in once] == ["z", "b"] and doc_removals(report) == {"exact_duplicate": 1}
    assert run(once, config)[0] == once


@given(messy_corpora())
@settings(max_examples=30)
def test_report_counts_and_bytes_add_up(docs):
    out, report = run(docs)
    size = lambda text: len(text.encode("utf-8"))
    assert report.docs_in == len(docs) and report.docs_out == len(out)
    assert report.docs_in == report.docs_out + sum(doc_removals(report).values())
    assert report.bytes_in == sum(size(t) for _, t in docs)
    assert report.bytes_out == sum(size(t) for _, t in out)
    assert report.bytes_in == report.bytes_out + sum(b for _, b in report.removed.values())


# ----------------------------------------------------------------- streaming
def test_pipeline_pulls_one_document_at_a_time():
    pulled = []

    def source():
        for i, doc in enumerate(clean_corpus(11, 50)):
            pulled.append(i)
            yield doc

    cleaned, report = clean_documents(source())
    assert pulled == []                             # nothing is read before it is asked for
    for k, _ in enumerate(cleaned, start=1):
        assert len(pulled) == k == report.docs_in   # one in for each one out (all are kept)


def _big_docs(n_docs, n_words=1500, seed=99):
    """``n_docs`` unique documents of ``n_words`` words (about 10 kB), made on the fly."""
    rng = np.random.default_rng(seed)
    for i in range(n_docs):
        words = [VOCAB[j] for j in rng.integers(0, len(VOCAB), size=n_words)]
        yield f"doc{i}", "\n".join(" ".join(words[k:k + 10]) for k in range(0, n_words, 10))


def _memory(n_docs, config):
    """(peak bytes while cleaning, bytes still held at the end) for ``n_docs`` big documents."""
    tracemalloc.start()
    cleaner = Cleaner(config)
    for _ in cleaner.run(_big_docs(n_docs)):
        pass
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert cleaner.report.docs_out == n_docs
    return peak, held


def test_memory_does_not_grow_with_the_corpus_without_the_dedup_index():
    config = CleanConfig(dedup_lines=False, near_dup_threshold=None)   # keeps 16 bytes per document
    (small, _), (large, _) = _memory(4, config), _memory(40, config)
    assert large - small < 36 * 500          # < 500 B per extra document; each one is 10 kB


def test_memory_grows_only_by_the_documented_dedup_index():
    """Per kept document: a signature (num_perm x 8 B) and its band entries, a 16-byte hash,
    and an 8-byte hash per line of >= line_dedup_min_chars characters (with Python's overheads)."""
    config = CleanConfig()
    long_lines = sum(len(line) >= config.line_dedup_min_chars
                     for line in next(_big_docs(1))[1].split("\n"))
    per_doc = 150 + config.num_perm * 8 + 32 * 250 + long_lines * 160
    (small_peak, small), (large_peak, large) = _memory(3, config), _memory(30, config)
    assert large - small < 27 * per_doc
    assert large_peak - small_peak < 27 * per_doc


# ------------------------------------------------------------------- folders
def test_clean_folder_writes_kept_documents_and_is_idempotent(tmp_path):
    docs = clean_corpus(3, 4) + [("sub/copy.txt", clean_corpus(3, 1)[0][1]), ("x.txt", "tiny")]
    for name, text in docs:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text(text)
    report = clean_folder(tmp_path / "in", tmp_path / "out")
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.txt"))
    assert written == sorted(f"doc{i}.txt" for i in range(4))
    assert report.docs_in == 6 and report.docs_out == 4
    again = clean_folder(tmp_path / "out", tmp_path / "out2")
    assert again.docs_out == 4 and again.removed == {}
    for name in written:
        assert (tmp_path / "out2" / name).read_text() == (tmp_path / "out" / name).read_text()


def test_bad_config_and_folder_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="near_dup_threshold must be in"):
        CleanConfig(near_dup_threshold=1.5)
    with pytest.raises(ValueError, match=r"bands \(7\) must divide num_perm \(128\)"):
        CleanConfig(bands=7)
    with pytest.raises(ValueError, match="shingle_size must be a positive integer"):
        CleanConfig(shingle_size=0)
    with pytest.raises(ValueError, match="does not exist"):
        list(clean_folder(tmp_path / "missing", tmp_path / "out").removed)


def test_normalise_is_idempotent_on_arbitrary_text():
    for text in ["a \r\nb\t\r\n\n\n", "\n\n  x  \n", "e\u0301 \u00a0\n", "", "\ufeff\n\ufeffa \ufeff\n"]:
        assert normalise(normalise(text)) == normalise(text)
        assert not re.search(r"[ \t]\n|\r", normalise(text))
