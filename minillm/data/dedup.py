"""Steps 3-5 of cleaning: drop lines (boilerplate, lines seen before) and duplicate documents.

Lines and documents are compared after case folding and collapsing spaces, so
"To be, or not  to be" repeats "to be, or not to be". Exact duplicates are a
hash set; near duplicates (Jaccard similarity of word shingles at least a
threshold) are found with MinHash signatures and LSH banding.
"""
import hashlib
import re

import numpy as np

from minillm.data.report import snippet, text_bytes


def text_key(text, digest_size):
    """A hash of ``text`` that ignores case and spacing (lines: 8 bytes, documents: 16)."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=digest_size).digest()


def line_key(line):
    """8-byte hash of a line, ignoring case and spacing."""
    return text_key(line, 8)


def drop_lines(text, is_bad, reason, report=None):
    """Remove the lines for which ``is_bad(line)`` holds; count them under ``reason``."""
    kept = []
    for line in text.split("\n"):
        if line.strip() and is_bad(line):
            if report is not None:
                report.add(reason, 1, 0, snippet(line))
        else:
            kept.append(line)
    new = "\n".join(kept).strip("\n")
    if report is not None and new != text:
        report.removed.setdefault(reason, [0, 0])[1] += text_bytes(text) - text_bytes(new)
    return new


class MinHashLSH:
    """Near-duplicate detection by MinHash signatures and LSH banding.

    A document is the set S of its word k-shingles (k consecutive words).
    Two documents are near duplicates when their Jaccard similarity
    J(A, B) = |A ∩ B| / |A ∪ B| is at least the threshold t.

    MinHash: for a random hash h, P[min h(A) = min h(B)] = J(A, B), because the
    smallest element of A ∪ B is equally likely to be any of its elements and
    the two minima agree exactly when it lies in A ∩ B. We use n seeded
    universal hashes h_i(x) = (a_i x + b_i) mod p, p = 2^31 - 1, a_i and b_i
    drawn uniformly below p, on shingle hashes x < p (a_i x + b_i < 2^63: no
    overflow in uint64; a small a_i would not scramble, so a_i spans all of
    [1, p)). The signature is (min h_1(S), ..., min h_n(S)), and the
    share of equal entries estimates J with standard error sqrt(J(1 - J) / n).

    LSH: cut the signature into b bands of r rows (n = b r). Two documents
    become candidates if some band is equal: P = 1 - (1 - J^r)^b, an S-curve
    in J. Only candidates are compared, so a query costs the size of its
    buckets, not of the whole corpus. The index grows by one signature and b
    bucket entries per added document.
    """
    _P = (1 << 31) - 1                  # a Mersenne prime

    def __init__(self, threshold, shingle_size=5, num_perm=128, bands=None, seed=0):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, self._P, num_perm, dtype=np.uint64)   # (n,)
        self.b = rng.integers(0, self._P, num_perm, dtype=np.uint64)   # (n,)
        self.threshold, self.shingle_size = threshold, shingle_size
        self.bands = bands or self.choose_bands(threshold, num_perm)
        self.rows = num_perm // self.bands
        self.buckets = [{} for _ in range(self.bands)]   # band -> {band bytes: [doc number]}
        self.names, self.signatures = [], []

    @staticmethod
    def choose_bands(threshold, num_perm, recall=0.99):
        """Most rows per band (fewest false candidates) that still catch J = threshold with P >= recall."""
        for rows in sorted((r for r in range(1, num_perm + 1) if num_perm % r == 0), reverse=True):
            if 1.0 - (1.0 - threshold ** rows) ** (num_perm // rows) >= recall:
                return num_perm // rows
        return num_perm

    def shingles(self, text):
        """The set of word k-shingles of ``text`` (lower case, letters and digits only)."""
        words = re.findall(r"\w+", text.casefold())
        k = min(self.shingle_size, len(words))
        return {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)} if words else set()

    def shingle_hashes(self, text):
        """Hashes (below p) of the k-shingles: a polynomial in the words' 64-bit hashes, mod 2^64.

        Hashing each distinct word once and combining is the same set as hashing
        each shingle string (up to rare collisions), and much faster in NumPy.
        """
        words = re.findall(r"\w+", text.casefold())
        table = {w: int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "little")
                 for w in set(words)}
        w = np.array([table[word] for word in words], dtype=np.uint64)           # (W,)
        k = min(self.shingle_size, w.size)
        h = np.zeros(w.size - k + 1 if w.size else 0, dtype=np.uint64)           # (W-k+1,)
        for j in range(k):
            h = h * np.uint64(0x9E3779B97F4A7C15) + w[j:j + h.size]              # wraps mod 2^64
        return np.unique((h >> np.uint64(32)) % np.uint64(self._P))             # (S,) distinct

    def signature(self, text):
        """(num_perm,) uint64 minhashes of the shingle set, or None for a text without words."""
        x = self.shingle_hashes(text)                                            # (S,)
        if x.size == 0:
            return None
        sig = np.full(self.a.shape, np.iinfo(np.uint64).max, dtype=np.uint64)     # (n,)
        for start in range(0, x.size, 4096):                                     # bounded memory
            chunk = x[None, start:start + 4096]                                  # (1, s)
            h = (self.a[:, None] * chunk + self.b[:, None]) % np.uint64(self._P)  # (n, s)
            sig = np.minimum(sig, h.min(axis=1))                                 # (n,)
        return sig

    def _bands(self, sig):
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def query(self, sig):
        """(name, estimated Jaccard) of the most similar indexed document at or above the threshold."""
        candidates = {d for band, key in zip(self.buckets, self._bands(sig)) for d in band.get(key, ())}
        best = max(((float(np.mean(self.signatures[d] == sig)), d) for d in candidates), default=None)
        if best is None or best[0] < self.threshold:
            return None
        return self.names[best[1]], best[0]

    def add(self, name, sig):
        for band, key in zip(self.buckets, self._bands(sig)):
            band.setdefault(key, []).append(len(self.names))
        self.names.append(name)
        self.signatures.append(sig)
