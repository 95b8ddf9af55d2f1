"""CLIP's byte-pair tokenizer without torch or open_clip imported.

Text-only work (adding an attribute, a search, a taste refit) runs the exported text tower on a
CPU runtime (photosense.scoring.backends); importing open_clip just to tokenize would bring in
torch and torchvision (seconds and hundreds of MB). This reads the same merges file open_clip
ships (``bpe_simple_vocab_16e6.txt.gz``, found without importing the package) and produces the
same token ids as ``open_clip.get_tokenizer(...)`` for CLIP models with the standard
tokenizer: text cleaned with ftfy and HTML unescaping, whitespace collapsed, lower-cased; split
by CLIP's pattern; each piece byte-encoded and merged by rank; ``<start_of_text>`` and
``<end_of_text>`` around it; cut to the context length with the end token kept last.
An exported text tower is used only after these ids were compared with open_clip's own.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import itertools
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_MERGES = 49152 - 256 - 2
_SPECIAL = ("<start_of_text>", "<end_of_text>")


def vocab_path() -> Path | None:
    """open_clip's merges file, located without importing open_clip (None when absent)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / VOCAB_FILE
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """Every byte as a printable character: the printable Latin-1 ones as themselves, the
    others (controls, space) shifted past 255, as GPT-2 and CLIP do."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ClipTokenizer:
    """Token ids for CLIP's text tower, as open_clip's standard tokenizer makes them."""

    def __init__(self, merges_file: Path | None = None, context_length: int = 77):
        import regex

        path = merges_file or vocab_path()
        if path is None:
            raise FileNotFoundError(f"{VOCAB_FILE} not found (is open_clip_torch installed?)")
        with gzip.open(path) as fp:
            lines = fp.read().decode("utf-8").split("\n")[1:_MERGES + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = list(_byte_alphabet().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + list(_SPECIAL)
        self.ids = {piece: i for i, piece in enumerate(vocab)}
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.start, self.end = self.ids[_SPECIAL[0]], self.ids[_SPECIAL[1]]
        self.context_length = context_length
        self._pattern = regex.compile(
            "|".join(_SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)
        self._space = regex.compile(r"\s+")
        self._merged: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def clean(self, text: str) -> str:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self._space.sub(" ", text).strip().lower()

    def _merge(self, piece: str) -> list[int]:
        """The ids of one byte-encoded piece: merge the best-ranked adjacent pair until none
        of the pairs left is a known merge."""
        with self._lock:
            cached = self._merged.get(piece)
        if cached is not None:
            return cached
        if piece in _SPECIAL:
            out = [self.ids[piece]]
        else:
            word = [*piece[:-1], piece[-1] + "</w>"]
            while len(word) > 1:
                pairs = set(itertools.pairwise(word))
                best = min(pairs, key=lambda p: self.ranks.get(p, _MERGES + 1))
                if best not in self.ranks:
                    break
                joined, i = [], 0
                while i < len(word):
                    if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                        joined.append(word[i] + word[i + 1])
                        i += 2
                    else:
                        joined.append(word[i])
                        i += 1
                word = joined
            out = [self.ids[w] for w in word]
        with self._lock:
            self._merged[piece] = out
        return out

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without the start and end tokens."""
        alphabet = _byte_alphabet()
        out: list[int] = []
        for piece in self._pattern.findall(self.clean(text)):
            out.extend(self._merge("".join(alphabet[b] for b in piece.encode("utf-8"))))
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        """(N, context length) int64 ids, zero-padded, the end token last when cut."""
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.start, *self.encode(text), self.end][:self.context_length]
            ids[-1] = self.end
            out[row, :len(ids)] = ids
        return out
