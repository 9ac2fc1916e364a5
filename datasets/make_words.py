"""Regenerate datasets/words.txt from the Debian word list package `wamerican`.

Source: Debian 12 (bookworm) package `wamerican`, version 2020.12.07-2 (architecture all),
file /usr/share/dict/american-english (104,334 lines). It is built from SCOWL (Spell Checker
Oriented Word Lists) by Kevin Atkinson, size 50 and below, American spelling. The licence
is SCOWL's permissive notice (copy, modify, distribute and sell, keeping the notice); it is
in /usr/share/doc/wamerican/copyright inside the package and is summarised, with the notices
that must travel with copies, in datasets/README.md.

Getting the source without installing anything (the .deb is read in place):

    apt-get update && apt-get download wamerican      # wamerican_2020.12.07-2_all.deb
    dpkg-deb -x wamerican_2020.12.07-2_all.deb wam
    python datasets/make_words.py wam/usr/share/dict/american-english

or, with the package installed (`apt-get install wamerican`), simply

    python datasets/make_words.py                     # reads /usr/share/dict/american-english

Filtering, in this order:
  1. keep lines that are entirely lowercase ASCII letters a-z (this drops proper names and
     abbreviations, which start with a capital, possessives and contractions with an
     apostrophe, and words with accented letters);
  2. deduplicate and sort (plain code-point order, which for a-z is alphabetical);
  3. keep SIZE (20,000) of them, chosen by a seeded hash: every word is ranked by
     sha256(f"{SEED}:{word}") and the SIZE lowest ranks are kept, then sorted again.
     The choice depends on nothing but the word list and the seed (no RNG whose stream
     could change between Python or NumPy versions).

Output: one word per line, "\\n" line endings, a final newline, ASCII. The script prints the
sha256 of its input and of the file it wrote; datasets/README.md records both.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

SOURCE = Path("/usr/share/dict/american-english")
SOURCE_PACKAGE = "wamerican 2020.12.07-2 (Debian 12 bookworm)"
# sha256 of /usr/share/dict/american-english in that package version.
SOURCE_SHA256 = "9f513f1ceadb6a01c5485b7dbdfd5118dc66cd70b59cae2851292112d4066a32"
SIZE = 20_000
SEED = 0

_WORD = re.compile(r"[a-z]+")


def select_words(lines: list[str], size: int = SIZE, seed: int = SEED) -> list[str]:
    """Steps 1-3 above: lowercase a-z words, unique and sorted, a seeded subset of `size`."""
    words = sorted({w for w in (line.strip() for line in lines) if _WORD.fullmatch(w)})
    if len(words) <= size:
        return words
    ranked = sorted(words, key=lambda w: hashlib.sha256(f"{seed}:{w}".encode()).digest())
    return sorted(ranked[:size])


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else SOURCE
    out = Path(argv[2]) if len(argv) > 2 else Path(__file__).resolve().parent / "words.txt"
    if not src.is_file():
        raise SystemExit(f"{src}: not found; install or download the Debian package "
                         "wamerican (see this script's docstring)")
    raw = src.read_bytes()
    src_sha = hashlib.sha256(raw).hexdigest()
    if src_sha != SOURCE_SHA256:
        print(f"warning: {src} is not the {SOURCE_PACKAGE} word list (sha256 {src_sha}); "
              "the output will differ from the shipped words.txt", file=sys.stderr)
    lines = raw.decode("utf-8").splitlines()
    words = select_words(lines)
    data = ("\n".join(words) + "\n").encode("ascii")
    out.write_bytes(data)
    print(f"source {src} ({len(lines)} lines), sha256 {src_sha}")
    print(f"wrote {out}: {len(words)} words, {len(data)} bytes, "
          f"{len(set(''.join(words)))} distinct letters")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
