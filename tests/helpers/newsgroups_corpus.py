"""A small synthetic 20 Newsgroups corpus in the official archive's format.

Tests use it when the real archive (``TRITONGATE_NEWSGROUPS_ARCHIVE``) is not configured: it has
the layout ``20news-bydate-train/<category>/<id>`` and ``20news-bydate-test/<category>/<id>``
that sklearn's loader reads, for the book's four categories, with news-style headers and
bodies whose topic words tell the classes apart (with shared words so probabilities are not all
0 or 1). The bytes are deterministic for a given seed, so the archive's sha256 is stable.

``EXAMPLES`` holds one short text per category that a model trained on this corpus (and the
book's model trained on the real corpus) classifies as that category.
"""

from __future__ import annotations

import gzip
import io
import random
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from serving.specs import NEWSGROUPS_CATEGORIES

TRAIN_FOLDER: Final = "20news-bydate-train"
TEST_FOLDER: Final = "20news-bydate-test"
ARCHIVE_MTIME: Final = 1_000_000_000  # fixed timestamps keep the archive bytes reproducible

TOPIC_WORDS: Final[dict[str, tuple[str, ...]]] = {
    category: tuple(words.split())
    for category, words in {
        "soc.religion.christian": "church jesus christ faith bible prayer gospel christian "
        "scripture salvation sin grace worship apostle resurrection",
        "talk.religion.misc": "religion cult koresh belief morality atheist spiritual prophet "
        "sect waco doctrine myth occult pagan theology",
        "comp.sys.mac.hardware": "computer cpu memory ram mac apple quadra powerbook scsi "
        "monitor simm motherboard centris floppy drive",
        "sci.crypt": "encryption clipper key cipher nsa escrow pgp rsa des algorithm privacy "
        "wiretap crypto secure chip",
    }.items()
}
_SHARED_TEXT: Final = (
    "the and that this with have from about would there think people question know really "
    "time anyone thanks because point article post read good problem system information "
    "believe work"
)
SHARED_WORDS: Final = tuple(_SHARED_TEXT.split())
EXAMPLES: Final[dict[str, str]] = {
    "soc.religion.christian": "jesus christ church prayer faith",
    "talk.religion.misc": "koresh cult waco religion sect",
    "comp.sys.mac.hardware": "computer cpu memory ram",
    "sci.crypt": "clipper chip encryption key escrow",
}


def _document(category: str, number: int, rng: random.Random) -> str:
    """One post: news headers, a blank line, then a body mixing topic and shared words."""
    topic = TOPIC_WORDS[category]
    words = [
        rng.choice(topic) if rng.random() < 0.35 else rng.choice(SHARED_WORDS)
        for _ in range(rng.randint(25, 70))
    ]
    lines = [" ".join(words[start : start + 10]) for start in range(0, len(words), 10)]
    subject = " ".join(rng.sample(topic, 2) + rng.sample(SHARED_WORDS, 2))
    headers = [
        f"From: user{number}@site{rng.randint(1, 9)}.example.edu (User {number})",
        f"Subject: {subject}",
        f"Organization: Example University {rng.randint(1, 5)}",
        f"Lines: {len(lines)}",
    ]
    return "\n".join([*headers, "", *lines]) + "\n"


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = ARCHIVE_MTIME
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, text: str) -> None:
    payload = text.encode("latin1")
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mode = 0o644
    info.mtime = ARCHIVE_MTIME
    tar.addfile(info, io.BytesIO(payload))


def write_newsgroups_archive(
    path: Path,
    *,
    categories: Sequence[str] = NEWSGROUPS_CATEGORIES,
    train_per_class: int = 40,
    test_per_class: int = 15,
    seed: int = 0,
) -> Path:
    """Write a synthetic ``20news-bydate.tar.gz`` at ``path`` and return ``path``."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    next_id = 10_000
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=ARCHIVE_MTIME) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for folder, per_class in ((TRAIN_FOLDER, train_per_class), (TEST_FOLDER, test_per_class)):
            _add_directory(tar, folder)
            for category in sorted(categories):
                _add_directory(tar, f"{folder}/{category}")
                for _ in range(per_class):
                    _add_file(
                        tar, f"{folder}/{category}/{next_id}", _document(category, next_id, rng)
                    )
                    next_id += 1
    return path
