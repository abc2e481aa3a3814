"""The offline natural-text corpus behind needle haystacks and the in-context-learning score.

The project downloads nothing, so the text ships as package data: ``interp/data/corpus.txt``,
about 115 kB of English prose (roughly 25k SmolLM2 tokens). It was assembled by
:func:`build_corpus_text` from the Python Language Reference as shipped inside every CPython
installation (``pydoc_data.topics``, CPython 3.11, PSF licence): the flowing-prose paragraphs only
(no code blocks, headings, lists or grammar productions), one paragraph per block, separated by a
blank line. ``interp/data/corpus.md`` records the source. Any text can replace it: every function
that reads the corpus accepts ``text=``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

CORPUS_FILE = "corpus.txt"
_MIN_PARAGRAPH = 200
_SKIP_PREFIXES = ("*", "-", "|", ">>>", "Note", "See also", "Changed in", "New in", "Deprecated")


def build_corpus_text() -> str:
    """Re-assemble the corpus from this interpreter's ``pydoc_data.topics`` (documentation only).

    Keeps paragraphs that are unindented running text of at least 200 characters ending with a
    full stop; joins each paragraph's lines; separates paragraphs with a blank line. The shipped
    ``corpus.txt`` was made with CPython 3.11; another Python version gives slightly other text.
    """
    import pydoc_data.topics

    paragraphs = []
    for name in sorted(pydoc_data.topics.topics):
        for block in re.split(r"\n\s*\n", pydoc_data.topics.topics[name]):
            lines = block.split("\n")
            if any(line.startswith(" ") for line in lines) or block.lstrip().startswith(
                _SKIP_PREFIXES
            ):
                continue
            text = re.sub(r"\s+", " ", " ".join(line.strip() for line in lines)).strip()
            if (
                len(text) >= _MIN_PARAGRAPH
                and text.endswith(".")
                and not re.search(r"[=*]{3,}", text)
            ):
                paragraphs.append(text)
    return "\n\n".join(paragraphs) + "\n"


@lru_cache(maxsize=1)
def load_corpus() -> str:
    """The shipped corpus text (``interp/data/corpus.txt``)."""
    return resources.files("interp").joinpath("data", CORPUS_FILE).read_text(encoding="utf-8")
