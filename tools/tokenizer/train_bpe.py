#!/usr/bin/python3
"""Byte-level BPE (GPT-2 style): trainer, encoder and decoder, HuggingFace tokenizer.json I/O.

Train:
  /usr/bin/python3 tools/tokenizer/train_bpe.py --vocab-size 4096 --input data/train.txt --out tokenizer.json

Encode (prints JSON ids) / decode:
  /usr/bin/python3 tools/tokenizer/train_bpe.py --tokenizer tokenizer.json --encode "Hello world"
  /usr/bin/python3 tools/tokenizer/train_bpe.py --tokenizer tokenizer.json --encode-file sample.txt
  /usr/bin/python3 tools/tokenizer/train_bpe.py --tokenizer tokenizer.json --decode 15496 995

Library:
  from train_bpe import Tokenizer
  tok = Tokenizer.from_file("tokenizer.json"); ids = tok.encode(text); text = tok.decode(ids)

--vocab-size counts everything: 256 byte tokens + merges + special tokens. The special tokens
(`<|endoftext|>`, `<|im_start|>`, `<|im_end|>` by default) get the last ids, are listed in
`added_tokens` (special: true) and also appear in model.vocab. Special tokens are matched
literally in the input before pre-tokenization (text between them is encoded on its own).

Pre-tokenizer: the GPT-2 regex on the raw text, then each UTF-8 byte is mapped through GPT-2's
bytes_to_unicode table. Encoding of one pre-token: repeatedly merge the one adjacent pair with
the lowest merge rank (leftmost first on ties) until no pair is in the merge table -- the same
result as HuggingFace `tokenizers` BPE (dropout null) and Microsoft.ML.Tokenizers.

Training: counts the distinct pre-tokens with their frequencies, then merges on those counts
(highest pair count first; ties broken by the lexicographically smallest (left, right) token
strings), with incremental pair-count updates. A merge whose result string already exists
reuses that token (as HuggingFace's trainer does), so len(merges) can exceed
vocab_size - 256 - len(specials) slightly in rare cases; the vocabulary size is exact.
Deterministic: same input and options give byte-identical tokenizer.json.
"""
import argparse
import heapq
import json
import sys
from collections import Counter, defaultdict

try:
    import regex as re  # needs \p{L}; Debian: apt-get install python3-regex
except ImportError:  # pragma: no cover
    sys.exit("train_bpe.py needs the 'regex' module (Debian: apt-get install -y python3-regex)")

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
DEFAULT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {v: k for k, v in BYTE_ENCODER.items()}
PRETOK_RE = re.compile(GPT2_PATTERN)


def byte_alphabet():
    """The 256 byte symbols, sorted by code point (the order HF's trainer gives them)."""
    return sorted(BYTE_ENCODER.values(), key=ord)


def pretokenize(text):
    """GPT-2 regex split, each piece mapped to its byte-level string."""
    return ["".join(BYTE_ENCODER[b] for b in piece.encode("utf-8")) for piece in PRETOK_RE.findall(text)]


def split_specials(text, specials):
    """Split text on literal special tokens -> list of (is_special, str)."""
    if not specials:
        return [(False, text)] if text else []
    pat = re.compile("|".join(re.escape(s) for s in sorted(specials, key=len, reverse=True)))
    out, pos = [], 0
    for m in pat.finditer(text):
        if m.start() > pos:
            out.append((False, text[pos:m.start()]))
        out.append((True, m.group(0)))
        pos = m.end()
    if pos < len(text):
        out.append((False, text[pos:]))
    return out


# --------------------------------------------------------------------------- training

def count_words(paths, specials):
    counts = Counter()
    for p in paths:
        with open(p, encoding="utf-8") as f:
            text = f.read()
        for is_special, part in split_specials(text, specials):
            if not is_special:
                counts.update(pretokenize(part))
    return counts


def train(word_counts, vocab_size, specials=DEFAULT_SPECIALS, verbose=False):
    """Returns (vocab dict token->id, merges list of (a, b))."""
    alphabet = byte_alphabet()
    vocab = {t: i for i, t in enumerate(alphabet)}
    target = vocab_size - len(specials)
    if target < len(alphabet):
        raise ValueError(f"vocab size {vocab_size} is below 256 + {len(specials)} specials")

    words = []   # list of symbol lists
    freqs = []
    for w, c in sorted(word_counts.items()):
        words.append(list(w))
        freqs.append(c)

    pair_counts = defaultdict(int)
    where = defaultdict(set)   # pair -> set of word indices containing it
    for wi, (syms, c) in enumerate(zip(words, freqs)):
        for a, b in zip(syms, syms[1:]):
            pair_counts[(a, b)] += c
            where[(a, b)].add(wi)

    heap = [(-c, p) for p, c in pair_counts.items()]
    heapq.heapify(heap)
    merges = []
    while len(vocab) < target and heap:
        negc, pair = heapq.heappop(heap)
        cur = pair_counts.get(pair, 0)
        if cur <= 0:
            continue
        if -negc != cur:   # stale entry: push the current count back
            heapq.heappush(heap, (-cur, pair))
            continue
        a, b = pair
        new = a + b
        merges.append(pair)
        if new not in vocab:
            vocab[new] = len(vocab)
        changed = set()
        for wi in list(where[pair]):
            syms = words[wi]
            c = freqs[wi]
            i = 0
            out = []
            n = len(syms)
            # remove old pair counts of this word
            for x, y in zip(syms, syms[1:]):
                pair_counts[(x, y)] -= c
                changed.add((x, y))
            while i < n:
                if i < n - 1 and syms[i] == a and syms[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            words[wi] = out
            for x, y in zip(out, out[1:]):
                pair_counts[(x, y)] += c
                where[(x, y)].add(wi)
                changed.add((x, y))
        pair_counts[pair] = 0
        del where[pair]
        for p in changed:
            c = pair_counts.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p))
            elif c == 0 and p in pair_counts:
                del pair_counts[p]
        if verbose and len(merges) % 500 == 0:
            print(f"  {len(merges)} merges, vocab {len(vocab)}, last {a!r}+{b!r} count {cur}", file=sys.stderr)
    for s in specials:
        if s in vocab:
            raise ValueError(f"special token {s!r} collides with a learned token")
        vocab[s] = len(vocab)
    return vocab, merges


def to_hf_json(vocab, merges, specials):
    added = [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s in specials]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


# --------------------------------------------------------------------------- encoding

class Tokenizer:
    def __init__(self, vocab, merges, specials):
        self.vocab = dict(vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        self.ranks = {tuple(m): r for r, m in reversed(list(enumerate(merges)))}
        self.specials = list(specials)
        self.cache = {}

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        m = j["model"]
        merges = [tuple(x.split(" ")) if isinstance(x, str) else tuple(x) for x in m["merges"]]
        vocab = dict(m["vocab"])
        specials = []
        for t in j.get("added_tokens", []):
            vocab.setdefault(t["content"], t["id"])
            specials.append(t["content"])
        return cls(vocab, merges, specials)

    @property
    def vocab_size(self):
        return max(self.id_to_token) + 1

    def token_to_id(self, t):
        return self.vocab[t]

    def _bpe(self, word):
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        syms = list(word)
        ranks = self.ranks
        while len(syms) > 1:
            best, best_i = None, -1
            for i in range(len(syms) - 1):
                r = ranks.get((syms[i], syms[i + 1]))
                if r is not None and (best is None or r < best):
                    best, best_i = r, i
            if best is None:
                break
            # merge only this (leftmost, lowest-rank) occurrence, then look again: exactly
            # the order of HuggingFace's priority queue (rank, then position)
            syms[best_i:best_i + 2] = [syms[best_i] + syms[best_i + 1]]
        ids = [self.vocab[s] for s in syms]
        if len(self.cache) < 500000:
            self.cache[word] = ids
        return ids

    def encode(self, text, allow_special=True):
        ids = []
        parts = split_specials(text, self.specials if allow_special else [])
        for is_special, part in parts:
            if is_special:
                ids.append(self.vocab[part])
            else:
                for w in pretokenize(part):
                    ids.extend(self._bpe(w))
        return ids

    def decode(self, ids):
        toks = [self.id_to_token[i] for i in ids]
        out = bytearray()
        for t in toks:
            if t in self.specials:
                out += t.encode("utf-8")
            else:
                out += bytes(BYTE_DECODER[ch] for ch in t)
        return out.decode("utf-8", errors="replace")


def encode(text, tokenizer_path):
    """Convenience: encode text with the tokenizer.json at tokenizer_path."""
    return Tokenizer.from_file(tokenizer_path).encode(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", nargs="+", help="training text file(s), UTF-8")
    ap.add_argument("--vocab-size", type=int, default=4096, help="total vocab incl. specials (default 4096)")
    ap.add_argument("--out", help="output tokenizer.json path")
    ap.add_argument("--special-tokens", nargs="*", default=DEFAULT_SPECIALS)
    ap.add_argument("--tokenizer", help="existing tokenizer.json (for --encode/--decode)")
    ap.add_argument("--encode", help="encode this string, print ids as JSON")
    ap.add_argument("--encode-file", help="encode this file, print ids as JSON")
    ap.add_argument("--decode", nargs="+", type=int, help="decode these ids")
    args = ap.parse_args()

    if args.tokenizer:
        tok = Tokenizer.from_file(args.tokenizer)
        if args.encode is not None:
            print(json.dumps(tok.encode(args.encode)))
        if args.encode_file:
            with open(args.encode_file, encoding="utf-8") as f:
                print(json.dumps(tok.encode(f.read())))
        if args.decode:
            sys.stdout.write(tok.decode(args.decode) + "\n")
        return
    if not (args.input and args.out):
        ap.error("training needs --input and --out (or use --tokenizer with --encode/--decode)")
    import time
    t0 = time.time()
    wc = count_words(args.input, args.special_tokens)
    print(f"{len(wc)} distinct pre-tokens, {sum(wc.values())} total ({time.time() - t0:.1f}s)", file=sys.stderr)
    vocab, merges = train(wc, args.vocab_size, args.special_tokens, verbose=True)
    j = to_hf_json(vocab, merges, args.special_tokens)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=2)
        f.write("\n")
    print(f"wrote {args.out}: vocab {len(vocab)}, merges {len(merges)} ({time.time() - t0:.1f}s)", file=sys.stderr)


if __name__ == "__main__":
    main()
