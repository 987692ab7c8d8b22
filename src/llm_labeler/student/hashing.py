"""Vectorised feature hashing straight over Arrow string buffers: word n-grams, char n-grams, meta tokens.

scikit-learn's HashingVectorizer runs a Python regex per document (~19k short histories/s a core). Here a whole
batch is one uint8 array: tokens are found with a byte table, hashed with a polynomial hash one character
position at a time across every token at once, and counted with one sort. The same function serves training
(a CSR matrix) and bulk scoring, so the two can never disagree. `ngram_texts` is the slow twin used by `explain`:
it yields each n-gram's text with the very same hash.

Scripts written without spaces between words (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar: "unspaced" below)
are not words here: with `cjk_ngrams=(lo, hi)` every run of their characters gives its character lo..hi-grams
(in the word block, with their own salt), and those characters and the CJK / fullwidth punctuation split word
tokens. Any other byte is tokenized exactly as without the option, so text with no unspaced character (English,
Latin, Cyrillic, Greek...) gets the very same columns either way, and mixed histories get both kinds of feature.
Input must be valid UTF-8 (Arrow string arrays are).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ..errors import ConfigError

__all__ = [
    "HashSpec",
    "columns_as_docs",
    "count_matrix",
    "ngram_texts",
    "to_arrow_strings",
]

_BASE = np.uint64(0x100000001B3)
_PAIR = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)
_MAXLEN = 24  # longer tokens (URLs, uuencoded junk) are hashed by their first 24 bytes
_SALTS = {"w1": 0x1234567, "w2": 0x2345678, "c": 0x3456789, "m": 0x456789A, "z": 0x56789AB}
_MAX_CJK_N = 8  # the compiled path keeps the last 8 characters of a run
_MASK64 = (1 << 64) - 1

_LOWER = np.arange(256, dtype=np.uint8)
_LOWER[65:91] += 32
_WORD = np.zeros(256, dtype=bool)
_WORD[[*range(48, 58), *range(65, 91), *range(97, 123), 95, *range(128, 256)]] = True
_NONSPACE = np.ones(256, dtype=bool)
_NONSPACE[[9, 10, 11, 12, 13, 32]] = False
# One gather from raw bytes straight to the hashed value (lowercased byte + 1), and to the char-n-gram alphabet.
_HASHVAL = _LOWER.astype(np.uint64) + np.uint64(1)
_CHARVAL = np.where(_WORD, _LOWER, np.uint8(32)).astype(np.uint64) + np.uint64(1)

# Code point -> 1 (an unspaced script: n-grammed) or 2 (CJK / fullwidth punctuation: a separator), for the BMP.
# Every range starts at U+0800 or above, so these characters are exactly the 3-byte UTF-8 sequences classified here;
# 4-byte ones are n-grammed when they are CJK ideographs (planes 2 and 3). General punctuation (U+2000-U+206F:
# curly quotes, dashes, ellipsis) is left as it is: Latin text uses it, and its tokens must not change.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals, Kangxi radicals
    (0x3005, 0x3007),  # 々 〆 〇
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3130, 0x318F),  # Hangul compatibility Jamo
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFFDC),  # halfwidth Katakana and Hangul
)
_CJK_PUNCT_RANGES = (
    (0x3000, 0x3004),  # ideographic space, 、 。 〃
    (0x3008, 0x303F),  # 〈〉《》「」『』【】〔〕 〜 ...
    (0x30FB, 0x30FB),  # ・ katakana middle dot
    (0xFE10, 0xFE1F),  # vertical forms
    (0xFE30, 0xFE4F),  # CJK compatibility forms
    (0xFF01, 0xFF0F),  # fullwidth ！＂＃＄％＆＇（）＊＋，－．／
    (0xFF1A, 0xFF20),  # ：；＜＝＞？＠
    (0xFF3B, 0xFF40),  # ［＼］＾＿｀
    (0xFF5B, 0xFF65),  # ｛｜｝～ and halfwidth ｡｢｣､･
)


def _script_table() -> np.ndarray:
    table = np.zeros(0x10000, dtype=np.uint8)
    for lo, hi in _UNSPACED_RANGES:
        table[lo : hi + 1] = 1
    for lo, hi in _CJK_PUNCT_RANGES:
        table[lo : hi + 1] = 2
    return table


_SCRIPT = _script_table()


@dataclass(frozen=True)
class HashSpec:
    """Where each block of hashed features lives: words [0, 2^word_bits), chars, then meta tokens."""

    word_bits: int = 20
    word_ngrams: int = 2
    char_bits: int = 18
    char_ngrams: tuple[int, int] = (0, 0)
    meta_bits: int = 12
    # (0, 0): off, the layout of models saved before this field existed (their HashSpec lacks it, so it reads this)
    cjk_ngrams: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        lo, hi = self.cjk_ngrams
        if (lo, hi) != (0, 0) and not 1 <= lo <= hi <= _MAX_CJK_N:
            raise ConfigError(
                f"cjk_ngrams must be (0, 0) or (lo, hi) with 1 <= lo <= hi <= 8, not {(lo, hi)}"
            )

    @property
    def char_offset(self) -> int:
        """First column of the char block."""
        return 1 << self.word_bits

    @property
    def meta_offset(self) -> int:
        """First column of the meta block."""
        return self.char_offset + (1 << self.char_bits if self.char_ngrams[0] else 0)

    @property
    def n_columns(self) -> int:
        """Width of the whole matrix."""
        return self.meta_offset + (1 << self.meta_bits)

    def block_of(self, cols: np.ndarray) -> np.ndarray:
        """0 words, 1 chars, 2 meta for each column index."""
        return (cols >= self.char_offset).astype(np.int8) + (cols >= self.meta_offset).astype(np.int8)


def to_arrow_strings(values: Any) -> pa.Array:
    """A null-free Arrow string array from a list, numpy array, Arrow array or chunked array."""
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(list(values), pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    return pc.fill_null(arr, "") if arr.null_count else arr


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(bytes, offsets from 0) of a string array, zero-copy."""
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    offsets = offsets.astype(np.int64)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return data[offsets[0] : offsets[-1]], offsets - offsets[0]


def _token_bounds(isword: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of every run of word bytes, split where a document boundary falls inside a run."""
    x = isword.view(np.int8)
    d = np.empty(x.size + 1, dtype=np.int8)
    if x.size:
        d[0], d[-1] = x[0], -x[-1]
        np.subtract(x[1:], x[:-1], out=d[1:-1])
    else:
        d[:] = 0
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    inner = offsets[1:-1]
    inner = inner[(inner > 0) & (inner < x.size)]
    cut = np.unique(inner[isword[inner] & isword[inner - 1]])
    if cut.size:
        starts, ends = np.sort(np.concatenate([starts, cut])), np.sort(np.concatenate([ends, cut]))
    return starts, ends


_CHUNK = 1 << 21


# B^k and B^-k modulo 2^64 (B is odd, so it has an inverse); uint64 products wrap, which is the modulus we want.
def _powers(base: int, n: int) -> np.ndarray:
    steps = np.full(n, base, dtype=np.uint64)
    steps[0] = 1
    return np.cumprod(steps, dtype=np.uint64)


_POW = _powers(int(_BASE), _CHUNK + _MAXLEN + 1)
_INV = _powers(pow(int(_BASE), -1, 1 << 64), _CHUNK + _MAXLEN + 1)


def _hash_tokens(data: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """sum_k (byte_k + 1) * B^k over each token's first _MAXLEN bytes, from prefix sums, 2 MB at a time."""
    ends = starts + np.minimum(lens, _MAXLEN)
    out = np.empty(starts.size, dtype=np.uint64)
    cuts = np.searchsorted(starts, np.arange(0, data.size + _CHUNK, _CHUNK))
    for i, j in zip(cuts[:-1], cuts[1:]):
        if i == j:
            continue
        a = int(starts[i])
        b = int(ends[i:j].max())
        c = _HASHVAL[data[a:b]]
        np.multiply(c, _POW[: b - a], out=c)
        prefix = np.zeros(b - a + 1, dtype=np.uint64)
        np.cumsum(c, out=prefix[1:])
        s, e = starts[i:j] - a, ends[i:j] - a
        out[i:j] = (prefix[e] - prefix[s]) * _INV[s]
    return out


def _bucket(h: np.ndarray, salt: int, bits: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        mixed = (h ^ np.uint64(salt)) * _MIX
    return (mixed >> np.uint64(64 - bits)).astype(np.int64)


def _word_entries(
    data: np.ndarray, offsets: np.ndarray, isword: np.ndarray, spec: HashSpec, meta: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(document index, column) of every word (or meta) n-gram; isword marks the bytes tokens are made of."""
    starts, ends = _token_bounds(isword, offsets)
    lens = ends - starts
    if not meta:  # like scikit-learn's default token pattern: single characters are not words
        keep = lens >= 2
        starts, lens = starts[keep], lens[keep]
    doc = np.searchsorted(offsets, starts, side="right") - 1
    h = _hash_tokens(data, starts, lens)
    if meta:
        return doc, spec.meta_offset + _bucket(h, _SALTS["m"], spec.meta_bits)
    docs, cols = [doc], [_bucket(h, _SALTS["w1"], spec.word_bits)]
    if spec.word_ngrams >= 2 and h.size > 1:
        same = doc[1:] == doc[:-1]
        pair = h[:-1][same] * _PAIR + h[1:][same]
        docs.append(doc[:-1][same])
        cols.append(_bucket(pair, _SALTS["w2"], spec.word_bits))
    return np.concatenate(docs), np.concatenate(cols)


def _char_entries(data: np.ndarray, offsets: np.ndarray, spec: HashSpec) -> tuple[np.ndarray, np.ndarray]:
    """(document index, column) of every character n-gram inside a document."""
    chars = _CHARVAL[data]
    doc_of = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    end_of = np.repeat(offsets[1:], np.diff(offsets))
    docs, cols = [], []
    for n in range(spec.char_ngrams[0], spec.char_ngrams[1] + 1):
        m = chars.size - n + 1
        if m <= 0:
            continue
        h = np.zeros(m, dtype=np.uint64)
        for k in range(n):
            h = h * _BASE + chars[k : k + m]
        ok = np.arange(m) + n <= end_of[:m]
        docs.append(doc_of[:m][ok])
        cols.append(spec.char_offset + _bucket(h[ok], _SALTS["c"] + n, spec.char_bits))
    return (np.concatenate(docs), np.concatenate(cols)) if docs else (np.zeros(0, int), np.zeros(0, int))


def _unspaced_chars(
    data: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bytes of unspaced-script chars and CJK punctuation, then start, byte length and code point of each
    unspaced-script char, in order). Only lead bytes >= 0xE0 are decoded, so Latin text costs one comparison."""
    lead = np.flatnonzero(data >= 0xE0)
    doc_end = offsets[np.searchsorted(offsets, lead, side="right")]
    wide = data[lead] >= 0xF0
    three, four = lead[~wide & (lead + 2 < doc_end)], lead[wide & (lead + 3 < doc_end)]
    b = [data[three + k].astype(np.int64) & 0x3F for k in range(3)]
    cp3 = ((b[0] & 0x0F) << 12) | (b[1] << 6) | b[2]
    cls3 = _SCRIPT[cp3]
    b = [data[four + k].astype(np.int64) & 0x3F for k in range(4)]
    cp4 = ((b[0] & 0x07) << 18) | (b[1] << 12) | (b[2] << 6) | b[3]
    ideo4 = (cp4 >= 0x20000) & (cp4 < 0x40000)
    mask = np.zeros(data.size, dtype=bool)
    for starts, width in ((three[cls3 > 0], 3), (four[ideo4], 4)):
        for k in range(width):
            mask[starts + k] = True
    pos = np.concatenate([three[cls3 == 1], four[ideo4]])
    lens = np.concatenate([np.full(int((cls3 == 1).sum()), 3), np.full(int(ideo4.sum()), 4)])
    cps = np.concatenate([cp3[cls3 == 1], cp4[ideo4]])
    order = np.argsort(pos, kind="stable")
    return mask, pos[order], lens[order], cps[order]


def _cjk_entries(
    pos: np.ndarray, lens: np.ndarray, cps: np.ndarray, offsets: np.ndarray, spec: HashSpec
) -> tuple[np.ndarray, np.ndarray]:
    """(document index, column) of every character n-gram inside a run of adjacent unspaced-script chars."""
    doc = np.searchsorted(offsets, pos, side="right") - 1
    joined = (pos[1:] == pos[:-1] + lens[:-1]) & (doc[1:] == doc[:-1])
    run = np.concatenate([np.zeros(1, np.int64), np.cumsum(~joined)])
    val = cps.astype(np.uint64) + np.uint64(1)
    docs, cols = [], []
    for n in range(spec.cjk_ngrams[0], spec.cjk_ngrams[1] + 1):
        m = pos.size - n + 1
        if m <= 0:
            continue
        h = np.zeros(m, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for k in range(n):
                h += val[k : k + m] * _POW[k]
        ok = run[n - 1 :] == run[:m]
        docs.append(doc[:m][ok])
        cols.append(_bucket(h[ok], _SALTS["z"] + n, spec.word_bits))
    return (np.concatenate(docs), np.concatenate(cols)) if docs else (np.zeros(0, int), np.zeros(0, int))


def count_matrix(docs: Any, metas: Any | None, spec: HashSpec) -> sp.csr_matrix:
    """Raw n-gram counts of a batch as CSR (rows = documents, sorted column indices)."""
    doc_arr = to_arrow_strings(docs)
    n_docs = len(doc_arr)
    data, offsets = _buffers(doc_arr)
    isword = _WORD[data]
    parts = []
    if spec.cjk_ngrams[0]:
        mask, pos, lens, cps = _unspaced_chars(data, offsets)
        isword &= ~mask
        parts.append(_cjk_entries(pos, lens, cps, offsets, spec))
    parts.append(_word_entries(data, offsets, isword, spec, meta=False))
    if spec.char_ngrams[0]:
        parts.append(_char_entries(data, offsets, spec))
    if metas is not None:
        mdata, moffsets = _buffers(to_arrow_strings(metas))
        parts.append(_word_entries(mdata, moffsets, _NONSPACE[mdata], spec, meta=True))
    rows = np.concatenate([p[0] for p in parts])
    cols = np.concatenate([p[1] for p in parts])
    key = (rows.astype(np.int64) << np.int64(32)) | cols
    key.sort()
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    at = np.flatnonzero(first)
    counts = np.diff(np.append(at, key.size)).astype(np.float32)
    uniq = key[at]
    indptr = np.searchsorted(uniq >> np.int64(32), np.arange(n_docs + 1)).astype(np.int64)
    indices = (uniq & np.int64(0xFFFFFFFF)).astype(np.int32)
    return sp.csr_matrix((counts, indices, indptr), shape=(n_docs, spec.n_columns))


# -- the slow twin, for explanations ----------------------------------------------------------------------


def _py_hash(token: bytes) -> int:
    return (
        sum((int(_LOWER[b]) + 1) * pow(int(_BASE), k, 1 << 64) for k, b in enumerate(token[:_MAXLEN]))
        & _MASK64
    )


def _py_bucket(h: int, salt: int, bits: int) -> int:
    return (((h ^ salt) * int(_MIX)) & _MASK64) >> (64 - bits)


def _py_tokens(text: bytes, table: np.ndarray, min_len: int) -> list[bytes]:
    out, cur = [], bytearray()
    for b in text:
        if table[b]:
            cur.append(int(_LOWER[b]))
        elif cur:
            out.append(bytes(cur))
            cur = bytearray()
    if cur:
        out.append(bytes(cur))
    return [t for t in out if len(t) >= min_len]


def _py_script(ch: str) -> int:
    """0 other, 1 unspaced script, 2 CJK punctuation: what `_unspaced_chars` decodes from the bytes."""
    o = ord(ch)
    return int(_SCRIPT[o]) if o < 0x10000 else int(0x20000 <= o < 0x40000)


def _py_split(doc: str, cjk: bool) -> tuple[bytes, list[str]]:
    """(the text for word tokens, with unspaced chars and CJK punctuation made spaces; the runs of unspaced chars)."""
    if not cjk:
        return doc.encode("utf-8"), []
    words, runs, run = [], [], []
    for ch in doc:
        cls = _py_script(ch)
        if cls == 1:
            run.append(ch)
        elif run:
            runs.append("".join(run))
            run = []
        words.append(" " if cls else ch)
    if run:
        runs.append("".join(run))
    return "".join(words).encode("utf-8"), runs


def _py_cjk_ngrams(runs: list[str], spec: HashSpec) -> Iterator[tuple[int, str]]:
    for run in runs:
        for n in range(spec.cjk_ngrams[0], spec.cjk_ngrams[1] + 1):
            for i in range(len(run) - n + 1):
                gram = run[i : i + n]
                h = sum((ord(c) + 1) * pow(int(_BASE), k, 1 << 64) for k, c in enumerate(gram)) & _MASK64
                yield _py_bucket(h, _SALTS["z"] + n, spec.word_bits), gram


def ngram_texts(doc: str, meta: str, spec: HashSpec) -> Iterator[tuple[int, str]]:
    """(column, n-gram text) for every word n-gram, unspaced-script n-gram and meta token of one document
    (char n-grams left out)."""
    raw, runs = _py_split(doc, bool(spec.cjk_ngrams[0]))
    tokens = _py_tokens(raw, _WORD, 2)
    hashes = [_py_hash(t) for t in tokens]
    for t, h in zip(tokens, hashes):
        yield _py_bucket(h, _SALTS["w1"], spec.word_bits), t.decode("utf-8", "replace")
    if spec.word_ngrams >= 2:
        for i in range(len(tokens) - 1):
            pair = (hashes[i] * int(_PAIR) + hashes[i + 1]) & _MASK64
            text = f"{tokens[i].decode('utf-8', 'replace')} {tokens[i + 1].decode('utf-8', 'replace')}"
            yield _py_bucket(pair, _SALTS["w2"], spec.word_bits), text
    yield from _py_cjk_ngrams(runs, spec)
    for t in _py_tokens(meta.encode("utf-8"), _NONSPACE, 1):
        yield spec.meta_offset + _py_bucket(_py_hash(t), _SALTS["m"], spec.meta_bits), t.decode("utf-8")


def columns_as_docs(X: Any) -> tuple[Sequence[Any] | pa.Array, Sequence[Any] | pa.Array | None]:
    """(docs, metas) from a list of strings, an (n, 2) object array, or an Arrow table/batch."""
    if isinstance(X, pa.Table | pa.RecordBatch):
        names = X.schema.names
        return X.column("doc"), (X.column("meta") if "meta" in names else None)
    arr = np.asarray(X, dtype=object)
    if arr.ndim == 2:
        return list(arr[:, 0]), list(arr[:, 1]) if arr.shape[1] > 1 else None
    return list(arr), None
