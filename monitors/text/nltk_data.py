"""Whether the NLTK data that BLEU, GLEU and METEOR need is on this machine (it is never downloaded here).

azure-ai-evaluation calls `nltk.download` for any of these that `nltk.find` cannot see; with no network
that fails, so those metrics are skipped (and counted as not evaluated) unless every resource is present,
e.g. in a folder named by NLTK_DATA.
"""
from __future__ import annotations

RESOURCES = (("wordnet", "corpora/wordnet.zip"), ("perluniprops", "misc/perluniprops.zip"),
             ("punkt", "tokenizers/punkt.zip"), ("punkt_tab", "tokenizers/punkt_tab.zip"))


def missing() -> list[str]:
    import nltk

    absent = []
    for name, path in RESOURCES:
        try:
            nltk.data.find(path)
        except LookupError:
            absent.append(name)
    return absent
