"""Learning BPE merges from text, with incremental pair counts.

The textbook loop is: count every adjacent pair of tokens in the corpus, merge
the most frequent pair everywhere, repeat. Rescanning a 1 MB corpus for each of
1,000 merges is slow, so we count smarter:

1. Pre-tokenise (GPT-2's regex) and count each distinct chunk ("word") once:
   the shipped corpus's 1.04 M characters are 284,546 chunks, only 15,649 distinct.
2. pair_count[(a, b)] = sum over words of (occurrences of (a, b) in the word)
   x (count of the word). Built once.
3. where[(a, b)] = the words that contain (a, b). To apply a merge we visit
   only those words: subtract each one's old pairs, merge, add its new pairs.
   Every other count is unchanged, so the totals stay exact.
4. The most frequent pair comes from a heap of (-count, pair) entries. Counts
   change, so old entries go stale; a popped entry is used only if its count
   is still current (lazy deletion). Ties go to the smallest (a, b), so
   training is deterministic.

Special tokens are cut out of the training text first: they are never merged.
"""
import heapq
import time
from collections import Counter, defaultdict

import regex

from minillm.tokenizers.bytelevel import GPT2_SPLIT_PATTERN, special_splitter


def count_words(text, special_tokens=(), pattern=GPT2_SPLIT_PATTERN):
    """Counter of pre-tokenised chunks (str) in ``text``, special tokens removed."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    split = regex.compile(pattern)
    splitter = special_splitter(special_tokens)
    pieces = splitter.split(text)[::2] if splitter else [text]  # drop the specials
    counts = Counter()
    for piece in pieces:
        counts.update(split.findall(piece))
    return counts


def _pairs(word):
    return zip(word, word[1:])


def merge_pair(word, a, b, new_id):
    """Replace each (a, b) in ``word`` (a list of ids), left to right, by ``new_id``."""
    out, i, n = [], 0, len(word)
    while i < n:
        if i < n - 1 and word[i] == a and word[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out


def learn_merges(text, n_merges, special_tokens=(), pattern=GPT2_SPLIT_PATTERN,
                 verbose=False):
    """Learn up to ``n_merges`` merges; returns list[(id_a, id_b)], new ids 256, 257, ...

    Stops early when no adjacent pair is left (every word is a single token).
    """
    if n_merges < 0:
        raise ValueError(f"n_merges must be >= 0, got {n_merges}")
    t0 = time.perf_counter()
    word_counts = count_words(text, special_tokens, pattern)
    words = [list(w.encode("utf-8")) for w in word_counts]  # word index -> ids
    counts = list(word_counts.values())                       # word index -> frequency

    pair_count = defaultdict(int)
    where = defaultdict(set)
    for w, (word, c) in enumerate(zip(words, counts)):
        for pair in _pairs(word):
            pair_count[pair] += c
            where[pair].add(w)
    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)

    merges = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg or neg == 0:
            continue  # a stale entry: the count changed after it was pushed
        a, b = pair
        new_id = 256 + len(merges)
        merges.append(pair)
        changed = set()
        for w in sorted(where.pop(pair)):
            word = words[w]
            new_word = merge_pair(word, a, b, new_id)
            if len(new_word) == len(word):
                continue  # stale membership: the pair left this word earlier
            c = counts[w]
            for p in _pairs(word):
                pair_count[p] -= c
                changed.add(p)
            for p in _pairs(new_word):
                pair_count[p] += c
                where[p].add(w)
                changed.add(p)
            words[w] = new_word
        for p in changed:
            c = pair_count[p]
            if c > 0:
                heapq.heappush(heap, (-c, p))
            else:
                del pair_count[p]
        pair_count.pop(pair, None)
        if verbose and len(merges) % 100 == 0:
            print(f"merge {len(merges)}: {pair} count {-neg} "
                  f"({time.perf_counter() - t0:.2f} s)")
    return merges
