"""The 20 Newsgroups data of the newsgroups export, loaded with ``fetch_20newsgroups``.

Offline, the data comes from a local copy of the official archive (``20news-bydate.tar.gz``),
configured with the ``TRITONGATE_NEWSGROUPS_ARCHIVE`` environment variable or the CLI's
``--archive`` option. :func:`prepare_sklearn_cache` checks that archive against the official one
and turns it into the cache file that sklearn's own download step writes, so that
``fetch_20newsgroups`` itself loads the data (``download_if_missing=False``): the dataset is
exactly what an online run would see. Without an archive, sklearn's cache or a download is used;
:class:`DataUnavailableError` says how to configure an archive when neither works.
"""

from __future__ import annotations

import codecs
import json
import os
import pickle
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sklearn.datasets import _twenty_newsgroups, fetch_20newsgroups, load_files
from sklearn.datasets._base import _pkl_filepath
from sklearn.utils import Bunch

from export.errors import DataUnavailableError, ExportError
from export.provenance import file_sha256
from serving.specs import NEWSGROUPS_CATEGORIES

ARCHIVE_ENV_VAR: Final = "TRITONGATE_NEWSGROUPS_ARCHIVE"
ARCHIVE_CLI_OPTION: Final = "tritongate export newsgroups --archive PATH"
DATASET_NAME: Final = "20newsgroups-bydate"
RANDOM_STATE: Final = 0  # the book's fetch_20newsgroups(..., random_state=0)

# sklearn's own metadata for the official archive and its cache
# (sklearn/datasets/_twenty_newsgroups.py).
OFFICIAL_ARCHIVE: Final = _twenty_newsgroups.ARCHIVE
OFFICIAL_DOCUMENT_COUNTS: Final = {"train": 11_314, "test": 7_532}
OFFICIAL_CATEGORY_COUNT: Final = 20
SUBSET_FOLDERS: Final = {
    "train": _twenty_newsgroups.TRAIN_FOLDER,
    "test": _twenty_newsgroups.TEST_FOLDER,
}
CACHE_SOURCE_SUFFIX: Final = ".source.json"


@dataclass(frozen=True)
class ArchiveInfo:
    """A local copy of the 20 Newsgroups archive and how it compares with the official one."""

    path: Path
    sha256: str
    documents: dict[str, int]  # per subset, all categories in the archive
    categories: int

    @property
    def official_sha256(self) -> str:
        return OFFICIAL_ARCHIVE.checksum

    @property
    def matches_official_sha256(self) -> bool:
        return self.sha256 == self.official_sha256

    @property
    def matches_official_counts(self) -> bool:
        return (
            self.categories == OFFICIAL_CATEGORY_COUNT
            and self.documents == OFFICIAL_DOCUMENT_COUNTS
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "official_sha256": self.official_sha256,
            "matches_official_sha256": self.matches_official_sha256,
            "documents": dict(self.documents),
            "categories": self.categories,
            "matches_official_document_counts": self.matches_official_counts,
        }


@dataclass(frozen=True)
class NewsgroupsData:
    """The book's train and test splits plus where they came from."""

    train: Bunch
    test: Bunch
    source: dict[str, Any]


def sklearn_cache_path(data_home: Path) -> Path:
    """The cache file ``fetch_20newsgroups(data_home=...)`` reads (``20news-bydate_py3.pkz``)."""
    return Path(_pkl_filepath(str(data_home), _twenty_newsgroups.CACHE_NAME))


def _describe_checksum(info: ArchiveInfo) -> str:
    if info.matches_official_sha256:
        return f"sha256 {info.sha256} matches the official archive (sklearn's ARCHIVE.checksum)"
    counts = (
        "the official document counts"
        if info.matches_official_counts
        else "NOT the official document counts"
    )
    return (
        f"WARNING: sha256 {info.sha256} differs from the official archive's "
        f"{info.official_sha256} (sklearn's ARCHIVE.checksum): treating it as a repack; its layout "
        f"is sklearn's ({info.categories} categories, {info.documents['train']} train / "
        f"{info.documents['test']} test documents: {counts})"
    )


def _load_subsets(root: Path, archive: Path) -> dict[str, Bunch]:
    """``load_files`` per subset of an extracted archive, as sklearn's download step does."""
    subsets = {}
    for subset, folder in SUBSET_FOLDERS.items():
        if not (root / folder).is_dir():
            raise DataUnavailableError(
                f"{archive} is not a 20news-bydate archive: it has no top-level {folder}/ folder"
            )
        subsets[subset] = load_files(root / folder, encoding="latin1")
    return subsets


def _check_categories(
    subsets: Mapping[str, Bunch], archive: Path, categories: Sequence[str]
) -> None:
    for subset, bunch in subsets.items():
        missing = [name for name in categories if name not in bunch.target_names]
        if missing:
            raise DataUnavailableError(
                f"{archive}: the {subset} split lacks categories {missing} "
                f"(found {list(bunch.target_names)})"
            )


def _write_atomically(path: Path, payload: bytes) -> None:
    """Write via a sibling temporary file so that readers never see a partial file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(payload)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _cache_source_path(cache: Path) -> Path:
    """Where :func:`prepare_sklearn_cache` records which archive a cache was built from."""
    return cache.with_name(cache.name + CACHE_SOURCE_SUFFIX)


def _read_cache_source(cache: Path) -> dict[str, Any] | None:
    """The archive record of a cache prepared from an archive, None if absent or unreadable."""
    source = _cache_source_path(cache)
    if not (cache.exists() and source.exists()):
        return None
    try:
        record = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _cached_archive_info(cache: Path, archive: Path, sha256: str) -> ArchiveInfo | None:
    """The record of an earlier preparation from the same archive bytes, if the cache is intact."""
    record = _read_cache_source(cache)
    if record is None or record.get("sha256") != sha256:
        return None
    return ArchiveInfo(
        path=archive,
        sha256=sha256,
        documents={k: int(v) for k, v in record["documents"].items()},
        categories=int(record["categories"]),
    )


def prepare_sklearn_cache(
    archive: Path,
    data_home: Path,
    categories: Sequence[str] = NEWSGROUPS_CATEGORIES,
    log: Callable[[str], None] = print,
) -> ArchiveInfo:
    """Make ``fetch_20newsgroups(data_home=data_home)`` load ``archive`` without downloading.

    Does what sklearn's download step (``_download_20newsgroups``) does after fetching the file:
    extract the archive, ``load_files(<subset folder>, encoding="latin1")`` for train and test,
    and store ``{"train": ..., "test": ...}`` as a zlib-compressed pickle at sklearn's cache path.
    The sha256 is compared with the official one sklearn knows; a mismatch (a repack) is reported
    and recorded, not fatal, because the loader only depends on the archive's layout, which is
    checked. A cache prepared earlier from the same archive bytes is reused.
    """
    if not archive.is_file():
        raise DataUnavailableError(
            f"20 Newsgroups archive {archive} is not a file: check {ARCHIVE_ENV_VAR} "
            f"or the path given to `{ARCHIVE_CLI_OPTION}`"
        )
    data_home.mkdir(parents=True, exist_ok=True)
    cache = sklearn_cache_path(data_home)
    sha256 = file_sha256(archive)
    info = _cached_archive_info(cache, archive, sha256)
    if info is not None:
        log(f"reusing sklearn's cache {cache}, prepared from this archive")
        log(_describe_checksum(info))
        return info

    log(f"preparing sklearn's cache {cache} from {archive}")
    with tempfile.TemporaryDirectory(dir=data_home, prefix="20news_home.") as extracted:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(extracted, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DataUnavailableError(f"{archive} is not a readable .tar.gz: {error}") from error
        subsets = _load_subsets(Path(extracted), archive)
    _check_categories(subsets, archive, categories)
    info = ArchiveInfo(
        path=archive,
        sha256=sha256,
        documents={name: len(bunch.data) for name, bunch in subsets.items()},
        categories=len(subsets["train"].target_names),
    )
    log(_describe_checksum(info))
    source = _cache_source_path(cache)
    source.unlink(missing_ok=True)  # never let an old record vouch for the new cache
    _write_atomically(cache, codecs.encode(pickle.dumps(subsets), "zlib_codec"))
    record = {
        "archive": str(archive),
        "sha256": sha256,
        "documents": info.documents,
        "categories": info.categories,
    }
    _write_atomically(source, json.dumps(record, indent=2).encode())
    return info


def _fetch(data_home: Path, categories: Sequence[str], download: bool) -> tuple[Bunch, Bunch]:
    return tuple(  # type: ignore[return-value]
        fetch_20newsgroups(
            subset=subset,
            categories=list(categories),
            random_state=RANDOM_STATE,
            data_home=str(data_home),
            download_if_missing=download,
        )
        for subset in ("train", "test")
    )


def _offline_message(data_home: Path, error: BaseException) -> str:
    return (
        f"the 20 Newsgroups dataset is not cached in {data_home} and downloading it from "
        f"{OFFICIAL_ARCHIVE.url} failed ({type(error).__name__}: {error}). Offline, set "
        f"{ARCHIVE_ENV_VAR} to a local copy of {OFFICIAL_ARCHIVE.filename} "
        f"or pass it with `{ARCHIVE_CLI_OPTION}`"
    )


def fetch_newsgroups_data(
    *,
    archive: Path | None,
    data_home: Path,
    categories: Sequence[str] = NEWSGROUPS_CATEGORIES,
    log: Callable[[str], None] = print,
) -> NewsgroupsData:
    """The book's splits via ``fetch_20newsgroups``, from ``archive`` or a download.

    ``fetch_20newsgroups(subset=..., categories=[...], random_state=0, data_home=data_home)``
    for the train and test subsets. With ``archive``, sklearn's cache is prepared from it and
    nothing is downloaded. Without it, sklearn uses its cache in ``data_home`` or downloads the
    official archive; when that fails (offline), :class:`DataUnavailableError` says how to
    configure a local archive.
    """
    source: dict[str, Any] = {"data_home": str(data_home)}
    if archive is not None:
        info = prepare_sklearn_cache(archive, data_home, categories, log)
        source |= {"kind": "archive", "archive": info.as_dict()}
        try:
            train, test = _fetch(data_home, categories, download=False)
        except OSError as error:
            raise ExportError(
                f"fetch_20newsgroups could not read the cache prepared from {archive} in "
                f"{data_home} ({error}); has scikit-learn changed its cache format?"
            ) from error
        return NewsgroupsData(train=train, test=test, source=source)

    cache = sklearn_cache_path(data_home)
    cached = cache.exists()
    if cached:
        log(f"no archive configured: using sklearn's cache {cache}")
    else:
        log(f"no archive configured: downloading {OFFICIAL_ARCHIVE.url} into {data_home}")
    try:
        train, test = _fetch(data_home, categories, download=True)
    except OSError as error:
        raise DataUnavailableError(_offline_message(data_home, error)) from error
    source |= {"kind": "sklearn-cache" if cached else "download", "url": OFFICIAL_ARCHIVE.url}
    prepared_from = _read_cache_source(cache) if cached else None
    if prepared_from is not None:
        source["cache_prepared_from_archive"] = prepared_from
    return NewsgroupsData(train=train, test=test, source=source)
