"""Fixtures shared by the integration and end-to-end tests: real exports and a real local
tritonserver (registered for every test folder by tests/conftest.py; built only when used).

Data comes from configuration: ``TRITONGATE_NEWSGROUPS_ARCHIVE`` (the official 20 Newsgroups
archive) and ``TRITONGATE_IMAGES_DIR`` (real photos); the Makefile sets both when
``../shared/data`` exists. Without them the fixtures build a small corpus and sample images, so
the suite still runs everywhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.launcher import LocalTriton
from serving.settings import ServingSettings
from tests.helpers.newsgroups_corpus import write_newsgroups_archive

PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMMITTED_REPOSITORY = PROJECT_ROOT / "model_repository"


def copy_committed_configs(target: Path, models: tuple[str, ...] = ("newsgroups", "yolos")) -> Path:
    """A model repository holding only the committed configs of ``models``."""
    for model in models:
        shutil.copytree(
            COMMITTED_REPOSITORY / model,
            target / model,
            ignore=lambda directory, names: [n for n in names if n.isdigit() or n.endswith(".txt")],
        )
    return target


@pytest.fixture(scope="session")
def newsgroups_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("TRITONGATE_NEWSGROUPS_ARCHIVE")
    if configured and Path(configured).is_file():
        return Path(configured)
    return write_newsgroups_archive(tmp_path_factory.mktemp("20news") / "20news-bydate.tar.gz")


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos when configured, else generated sample images."""
    found = ServingSettings().parity_images()
    if found:
        return found
    from export.sample_images import write_sample_images

    return write_sample_images(tmp_path_factory.mktemp("samples"))


@pytest.fixture(scope="session")
def exported_repository(
    tmp_path_factory: pytest.TempPathFactory, newsgroups_archive: Path, photos: list[Path]
) -> Path:
    """Both models exported (YOLOS: tiny random-init) into a copy of the committed repository."""
    from export.newsgroups import export_newsgroups
    from export.yolos import export_yolos

    work = tmp_path_factory.mktemp("export")
    repository = copy_committed_configs(work / "model_repository")
    export_newsgroups(
        repository,
        archive=newsgroups_archive,
        data_home=work / "data",
        artifacts_dir=work / "artifacts",
    )
    export_yolos(
        repository,
        weights="random-init",
        random_init_seed=0,
        tiny=True,
        images=photos[:3],
    )
    return repository


@pytest.fixture(scope="session")
def triton(
    exported_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTriton]:
    """A real tritonserver serving the exported repository with the CPU configs."""
    server = LocalTriton(exported_repository, tmp_path_factory.mktemp("triton"), config_name="cpu")
    server.start()
    yield server
    server.stop()
