"""deploy/docker/export-models.sh, the export job's entry point, run with a stand-in
``tritongate`` that records how it was called: the committed configs land in the repository
volume, offline inputs found under the data directory become settings, arguments pass through."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.deploy_files import setting_names
from tests.stack import COMMITTED_REPOSITORY, PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "deploy" / "docker" / "export-models.sh"
RECORDER = """#!{python}
import json, os, sys
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv[1:], "env": {{k: v for k, v in os.environ.items()
                                             if k.startswith("TRITONGATE_")}}}}, handle)
"""


def _run(tmp_path: Path, data: Path, *args: str, extra: str = "") -> dict[str, object]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "call.json"
    stand_in = bin_dir / "tritongate"
    stand_in.write_text(RECORDER.format(python=sys.executable, record=str(record)))
    stand_in.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TRITONGATE_MODEL_REPOSITORY": str(tmp_path / "models"),
        "EXPORT_CONFIGS_DIR": str(COMMITTED_REPOSITORY),
        "EXPORT_DATA_DIR": str(data),
        "EXPORT_ARGS": extra,
    }
    result = subprocess.run(
        ["sh", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(record.read_text())


def test_configs_are_copied_and_the_export_skips_existing_versions(tmp_path: Path) -> None:
    call = _run(
        tmp_path, tmp_path / "no-data", "--seed", "3", extra="--offline-fallback-random-init"
    )
    repository = tmp_path / "models"
    for model in ("newsgroups", "yolos"):
        for relative in ("config.pbtxt", "configs/cpu.pbtxt"):
            copied = repository / model / relative
            assert copied.read_bytes() == (COMMITTED_REPOSITORY / model / relative).read_bytes()
        assert not any(path.name.isdigit() for path in (repository / model).iterdir())
    assert call["argv"] == [
        "export",
        "all",
        "--repository",
        str(repository),
        "--skip-existing",
        "--offline-fallback-random-init",
        "--seed",
        "3",
    ]
    env = call["env"]
    assert isinstance(env, dict)
    assert "TRITONGATE_NEWSGROUPS_ARCHIVE" not in env and "TRITONGATE_IMAGES_DIR" not in env


def test_offline_inputs_under_the_data_directory_become_settings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "yolos").mkdir()
    (data / "yolos" / "config.json").write_text("{}")
    (data / "20news-bydate.tar.gz").write_bytes(b"archive")
    env = _run(tmp_path, data)["env"]
    assert isinstance(env, dict)
    assert env["TRITONGATE_NEWSGROUPS_ARCHIVE"] == str(data / "20news-bydate.tar.gz")
    assert env["TRITONGATE_IMAGES_DIR"] == str(data / "images")
    assert env["TRITONGATE_YOLOS_WEIGHTS"] == str(data / "yolos")
    assert set(env) <= setting_names()


def test_the_script_is_posix_sh_and_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/bin/sh\n")
    result = subprocess.run(["sh", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    dash = shutil.which("dash")
    if dash:
        assert subprocess.run([dash, "-n", str(SCRIPT)], capture_output=True).returncode == 0
