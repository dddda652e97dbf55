"""The default offline corpus: the English fortune-cookie files of Debian's ``fortunes`` + ``fortunes-min``.

Why this corpus: it installs from a package registry with no model hub or dataset hub, it is real and
varied English written by people (quotations from literature and science, poems and song lyrics, jokes,
riddles, definitions, and dialogue such as Star Trek lines and Q/A exchanges), and its licence is
permissive: BSD (fortune-mod, Copyright (c) 1991 The Regents of the University of California; the cookie
collection from Karl Lehenbauer's alt.sources postings), per ``/usr/share/doc/fortunes/copyright``.

Fortunes are short, so consecutive fortunes of one category file are packed into documents of up to
~1,200 characters; ``doc_id`` is ``fortunes:<category>:<n>``, and splits are made by document.
If the package is not installed system-wide, its ``.deb`` is fetched with ``apt-get download`` (no root
needed) and unpacked with ``dpkg -x`` into the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from nla_audit.atomic import atomic_path
from nla_audit.document import pack_texts
from nla_audit.errors import InputError
from nla_audit.paths import cache_dir

SYSTEM_DIR = Path("/usr/share/games/fortunes")
# English categories of the non-offensive ``fortunes`` package; ascii-art is left out (not prose).
CATEGORIES = (
    "art", "computers", "cookie", "definitions", "disclaimer", "drugs", "education", "ethnic", "food",
    "fortunes", "goedel", "humorists", "kids", "knghtbrd", "law", "linux", "linuxcookie", "literature",
    "love", "magic", "medicine", "men-women", "miscellaneous", "news", "paradoxum", "people", "perl",
    "pets", "platitudes", "politics", "pratchett", "riddles", "science", "songs-poems", "sports",
    "startrek", "tao", "translate-me", "wisdom", "work", "zippy",
)
PACKAGES = ("fortunes", "fortunes-min")  # fortunes-min holds the fortunes, literature and riddles files
DOC_CHARS = 1200
# v1 (used to train the shipped NLA) silently lacked fortunes-min's 3 categories; v2 has all 41. Doc ids of the
# other 38 categories are identical, so document splits carry over.
VERSION = 2


def default_corpus_path() -> Path:
    return cache_dir() / "corpora" / f"fortunes-v{VERSION}.jsonl"


def _complete(folder: Path) -> bool:
    """Both packages present: ``fortunes`` (e.g. startrek) and ``fortunes-min`` (fortunes, literature, riddles)."""
    return (folder / "startrek").exists() and (folder / "literature").exists()


def _fortunes_dir() -> Path:
    if _complete(SYSTEM_DIR):
        return SYSTEM_DIR
    local = cache_dir() / "corpora" / "fortunes-deb"
    unpacked = local / "usr" / "share" / "games" / "fortunes"
    if _complete(unpacked):
        return unpacked
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        raise InputError("the default corpus needs Debian's 'fortunes' package, and apt-get/dpkg are not available",
                         fix="pass your own --corpus (JSONL, text, parquet), or install 'fortunes'")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["apt-get", "download", *PACKAGES]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0 and os.geteuid() == 0:  # a fresh machine may have empty package lists
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("fortunes*.deb"))
        if proc.returncode != 0 or len(debs) != len(PACKAGES):
            raise InputError("could not download Debian's 'fortunes' package for the default corpus",
                             fix="run `apt-get update`, or pass your own --corpus")
        local.mkdir(parents=True, exist_ok=True)
        for deb in debs:
            subprocess.run(["dpkg", "-x", str(deb), str(local)], check=True)
    return unpacked


def split_fortunes(raw: str) -> list[str]:
    """Fortune files separate entries with a line holding only '%'."""
    entries = []
    for block in raw.split("\n%\n"):
        text = block.strip("%\n ").replace("\t", "    ")
        if text.strip():
            entries.append(text.rstrip())
    return entries


def pack_documents(entries: list[str], max_chars: int = DOC_CHARS) -> list[str]:
    """Pack consecutive entries into documents of at most ~max_chars, separated by blank lines."""
    return pack_texts(entries, max_chars)


def build_default_corpus(out: Path) -> int:
    src = _fortunes_dir()
    n = 0
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for cat in CATEGORIES:
            path = src / cat
            if not path.exists():
                continue
            raw = path.read_bytes().decode("utf-8", errors="replace")
            for i, text in enumerate(pack_documents(split_fortunes(raw))):
                f.write(json.dumps({"id": f"fortunes:{cat}:{i}", "text": text, "source": cat}) + "\n")
                n += 1
    if n == 0:
        raise InputError(f"no fortune files found in {src}", fix="reinstall the 'fortunes' package")
    return n


def ensure_default_corpus() -> Path:
    """Build the default corpus JSONL once (a few seconds) and return its path."""
    path = default_corpus_path()
    if not path.exists():
        build_default_corpus(path)
    return path
