"""BLEU, GLEU and METEOR on recorded answers, with NLTK data built from installed packages and nothing downloaded."""
from __future__ import annotations

import math
import zipfile

import pytest

from monitors.text.nltk_data import WORDNET, build, lexnames, missing


@pytest.fixture()
def no_downloads(monkeypatch):
    """Any call to nltk.download fails the test: the data must come from the packages."""
    import nltk

    def refuse(*args, **kwargs):
        raise AssertionError(f"nltk.download{args} was called")

    monkeypatch.setattr(nltk, "download", refuse)
    import nltk.downloader

    monkeypatch.setattr(nltk.downloader, "download", refuse)


def test_lexnames_come_from_the_wordnet_manual_page():
    page = ("00\tadj.all\tall adjective clusters\n" + "".join(f"{n:02d}\tnoun.{'x' * n}\tnouns\n" for n in range(1, 44))
            + "44\tadj.ppl\tparticipial adjectives\n").encode()
    table = lexnames(page).decode().splitlines()
    assert table[0] == "00\tadj.all\t3" and table[-1] == "44\tadj.ppl\t3" and table[5] == "05\tnoun.xxxxx\t1"
    with pytest.raises(ValueError, match="45 lexicographer files"):
        lexnames(b"00\tadj.all\tall adjective clusters\n")


@pytest.mark.skipif(not (WORDNET / "index.sense").exists(), reason="Debian's wordnet-base and wordnet-sense-index "
                    "are not installed (.ci/run installs them)")
def test_the_built_folder_scores_answers_like_nltk_documents(tmp_path, monkeypatch, no_downloads):
    import nltk

    from monitors.text.answers import score_answers
    from tests.text.test_answers import RECORDED

    outcome = build(tmp_path / "nltk_data")
    if outcome["punkt_tab"] != "built":
        pytest.skip(f"Punkt tables: {outcome['punkt_tab']} (make downloads the llama-index-core wheel)")
    assert outcome == {"wordnet": "built", "perluniprops": "built", "punkt_tab": "built", "punkt": "built"}
    with zipfile.ZipFile(tmp_path / "nltk_data" / "corpora" / "wordnet.zip") as z:
        assert {"wordnet/lexnames", "wordnet/data.noun", "wordnet/index.sense"} <= set(z.namelist())
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk_data")])
    assert missing() == []
    from nltk.translate.meteor_score import meteor_score

    # NLTK's own documented example: 0.6944 (it needs WordNet's synonyms and stems)
    hypothesis = "It is a guide to action which ensures that the military always obeys the commands of the party"
    reference = "It is a guide to action that ensures that the military will forever heed Party commands"
    assert round(meteor_score([reference.split()], hypothesis.split()), 4) == 0.6944
    scored = score_answers(RECORDED, ("bleu", "gleu", "meteor"))
    for metric in ("bleu", "gleu", "meteor"):
        values = scored.scores[metric]
        assert values[0] > values[1] >= 0 and math.isnan(values[3])  # the right answer scores higher; none: none
        assert scored.not_evaluated[metric] == {"no response or ground truth": 1}
