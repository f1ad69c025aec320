"""Document filters of the kind that "can mistakenly flag data written in dialects".

``minillm.data`` keeps or drops a document by length, share of letters and
repeated lines (``data.quality_problem``). Web-scale pipelines add rules that
judge the *words*, and those are the ones that fall hardest on a variety of
the language the rule's authors did not have in mind:

* **a word blocklist** ("toxicity"-style; C4 dropped every page containing a
  word of its "bad words" list, which Dodge et al., 2021, found removed text
  in African-American English and about LGBTQ+ people disproportionately);
* **vocabulary coverage** (a share of the words must be known "real" words:
  Gopher's rules, C4's English filter);
* **a perplexity filter** (CCNet, Wenzek et al., 2020: a 5-gram model of a
  reference corpus, Wikipedia; documents it finds too surprising are dropped).

Each filter is a function ``text -> reason or None`` (None: keep), the same
shape as ``data.quality_problem`` bound to a config, so ``flag_rate`` can run
any of them over documents.
"""
import math
import re

from minillm.evaluate import token_logprobs

WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
# A few words of C4-style "bad word" lists that Shakespeare uses (insults of his day).
DEFAULT_BLOCKLIST = ("whore", "bastard", "slut", "damn", "bitch", "piss", "arse")


def words(text):
    """The lowercased words of ``text`` (letters, with an inner apostrophe: "o'er")."""
    return [w.lower() for w in WORD.findall(text)]


def blocklist_filter(blocklist=DEFAULT_BLOCKLIST):
    """A filter that flags a document containing any word of ``blocklist`` (whole words, any case)."""
    blocked = {w.lower() for w in blocklist}

    def check(text):
        hits = sorted(blocked.intersection(words(text)))
        return f"blocklisted word {hits[0]!r}" if hits else None
    return check


def coverage_filter(known_words, min_share=0.9):
    """A filter that flags a document when fewer than ``min_share`` of its words are ``known_words``."""
    known = {w.lower() for w in known_words}

    def check(text):
        found = words(text)
        if not found:
            return "no words"
        share = sum(w in known for w in found) / len(found)
        return f"known-word share {share:.2f} < {min_share:.3g}" if share < min_share else None
    return check


def perplexity_filter(model, encode, max_perplexity, stride=None):
    """A filter that flags a document whose perplexity under ``model`` exceeds ``max_perplexity``.

    ``model`` is any language model ``evaluate.token_logprobs`` accepts (a GPT or
    an ``NGramLM``, as CCNet's 5-gram); ``encode`` maps text to token ids.
    """
    def check(text):
        value = document_perplexity(model, encode, text, stride)
        return f"perplexity {value:.1f} > {max_perplexity:.1f}" if value > max_perplexity else None
    return check


def document_perplexity(model, encode, text, stride=None):
    """exp(mean negative log-likelihood) of one document's tokens under ``model``."""
    logp = token_logprobs(model, encode(text), stride=stride)
    return math.exp(-logp.mean())


def flag_rate(documents, check):
    """(fraction flagged, list of 0/1 flags, the first reasons) of ``check`` over ``documents``."""
    flags, reasons = [], []
    for text in documents:
        reason = check(text)
        flags.append(0 if reason is None else 1)
        if reason is not None and len(reasons) < 3:
            reasons.append(reason)
    if not flags:
        raise ValueError("no documents to filter")
    return sum(flags) / len(flags), flags, reasons
