"""The NLTK data that BLEU, GLEU and METEOR need, built from installed packages (it is never downloaded here).

azure-ai-evaluation calls `nltk.download` for any of wordnet, perluniprops, punkt and punkt_tab that `nltk.find`
cannot see, so those metrics run only when all four are present (`missing()` says which are not; the metrics then
report "not evaluated"). `build()` (`python -m monitors.text nltk-data`, run by `make`) assembles them into
`{sys.prefix}/share/nltk_data`, a folder NLTK searches by default (elsewhere: point NLTK_DATA at it):

- corpora/wordnet.zip: WordNet 3.0 from Debian's `wordnet-base` and `wordnet-sense-index` (/usr/share/wordnet;
  WordNet licence), with its `lexnames` table read from the lexnames(5WN) page `wordnet-base` installs;
- misc/perluniprops.zip: the Perl Unicode property tables as `sacremoses` ships them (MIT; NLTK's own copy);
- tokenizers/punkt_tab.zip: NLTK's pickle-free Punkt tables, as the `llama-index-core` wheel ships them (MIT; its
  nltk_cache), read from the wheel file without installing it;
- tokenizers/punkt.zip: the same tables under the retired pickle package's name. NLTK >= 3.9 never loads the
  punkt pickles (CVE-2024-39705); azure-ai-evaluation only checks that this name exists.
"""
from __future__ import annotations

import gzip
import io
import re
import sys
import zipfile
from pathlib import Path

RESOURCES = (("wordnet", "corpora/wordnet.zip"), ("perluniprops", "misc/perluniprops.zip"),
             ("punkt", "tokenizers/punkt.zip"), ("punkt_tab", "tokenizers/punkt_tab.zip"))
WORDNET = Path("/usr/share/wordnet")
LEXNAMES_PAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
WORDNET_FILES = ("adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "data.adj", "data.adv", "data.noun",
                 "data.verb", "index.adj", "index.adv", "index.noun", "index.verb", "index.sense")
PUNKT_IN_WHEEL = "llama_index/core/_static/nltk_cache/tokenizers/punkt_tab.zip"
LLAMA_WHEEL = "llama_index_core-*.whl"  # make downloads the pinned one (Makefile: NLTK_WHEEL)
_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
# The categories of NLTK's perluniprops package (sacremoses ships more, for its own tokenizer).
PERL_CATEGORIES = ("Close_Punctuation", "Currency_Symbol", "IsAlnum", "IsAlpha", "IsLower", "IsN", "IsSc", "IsSo",
                   "IsUpper", "Line_Separator", "Number", "Open_Punctuation", "Punctuation", "Separator", "Symbol")


def default_dir() -> Path:
    return Path(sys.prefix) / "share" / "nltk_data"


def missing() -> list[str]:
    import nltk

    absent = []
    for name, path in RESOURCES:
        try:
            nltk.data.find(path)
        except LookupError:
            absent.append(name)
    return absent


def build(out: Path | None = None, *, wheels: Path | None = None) -> dict[str, str]:
    """Write whichever resources their sources allow; returns resource -> what happened (built / why not)."""
    out = Path(out or default_dir())
    done = {}
    for name, make in (("wordnet", _wordnet), ("perluniprops", _perluniprops), ("punkt_tab", _punkt)):
        try:
            make(out, wheels)
            done[name] = "built"
        except (OSError, ImportError, KeyError, ValueError) as exc:
            done[name] = f"not built: {exc}"
    done["punkt"] = done["punkt_tab"]
    return done


def _write_zip(target: Path, files: dict[str, bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
    staging.replace(target)


def lexnames(page: bytes) -> bytes:
    """The lexnames file (number, name, syntactic category; tab separated) from its man page's table."""
    lines = []
    for number, name in re.findall(r"^(\d\d)\t([a-z]+\.[A-Za-z]+)\s*\t", page.decode("utf-8"), re.M):
        lines.append(f"{number}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n")
    if len(lines) != 45:
        raise ValueError(f"expected WordNet 3.0's 45 lexicographer files in {LEXNAMES_PAGE}, found {len(lines)}")
    return "".join(lines).encode()


def _wordnet(out: Path, wheels: Path | None) -> None:
    if not (WORDNET / "data.noun").exists() or not (WORDNET / "index.sense").exists():
        raise FileNotFoundError(f"{WORDNET} has no WordNet database: apt-get install wordnet-base "
                                "wordnet-sense-index")
    files = {f"wordnet/{name}": (WORDNET / name).read_bytes() for name in WORDNET_FILES}
    files["wordnet/lexnames"] = lexnames(gzip.decompress(LEXNAMES_PAGE.read_bytes()))
    files["wordnet/LICENSE"] = Path("/usr/share/doc/wordnet-base/copyright").read_bytes()
    _write_zip(out / "corpora" / "wordnet.zip", files)


def _perluniprops(out: Path, wheels: Path | None) -> None:
    from sacremoses._data_perluniprops import PERLUNIPROPS

    files = {f"perluniprops/{category}.txt": PERLUNIPROPS[category].strip("\n").encode("utf-8")
             for category in PERL_CATEGORIES}
    files["perluniprops/README"] = b"Perl Unicode property tables, as the sacremoses package ships them (MIT).\n"
    _write_zip(out / "misc" / "perluniprops.zip", files)


def _punkt(out: Path, wheels: Path | None) -> None:
    folder = Path(wheels or Path(sys.prefix) / "wheels")
    found = sorted(folder.glob(LLAMA_WHEEL))
    if not found:
        raise FileNotFoundError(f"no {LLAMA_WHEEL} in {folder}: pip download --no-deps -d {folder} llama-index-core")
    with zipfile.ZipFile(found[-1]) as outer, zipfile.ZipFile(io.BytesIO(outer.read(PUNKT_IN_WHEEL))) as inner:
        tables = {name: inner.read(name) for name in inner.namelist() if not name.endswith("/")}
    _write_zip(out / "tokenizers" / "punkt_tab.zip", tables)
    _write_zip(out / "tokenizers" / "punkt.zip", {"punkt/" + name.removeprefix("punkt_tab/"): data
                                                  for name, data in tables.items()})
