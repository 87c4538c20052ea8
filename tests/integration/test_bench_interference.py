"""benchmarks.interference against the exported YOLOS (tiny random-init) on real photos."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.interference import main


def test_the_probe_prints_each_window_and_the_cost_of_the_load(
    exported_repository: Path, photos: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(
        [
            "--repository",
            str(exported_repository),
            "--images",
            str(photos[0].parent),
            "--batch",
            "2",
            "--rounds",
            "1",
            "--window",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    print(out)
    assert "batch 2; load: 600 µs every 10.42 ms at nice 0 (0.058 cores)" in out
    rates = re.findall(r"^round 1 (alone |loaded) +([0-9.]+) items/s", out, re.MULTILINE)
    assert [kind.strip() for kind, _ in rates] == ["alone", "loaded"]
    assert all(float(rate) > 0 for _, rate in rates)
    summary = re.search(
        r"median alone ([0-9.]+), loaded ([0-9.]+) items/s: ([0-9.]+)% of alone", out
    )
    assert summary is not None
    alone, loaded, share = (float(value) for value in summary.groups())
    assert share == pytest.approx(100 * loaded / alone, abs=0.1)


def test_the_probe_needs_photos(exported_repository: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no JPEG photos"):
        main(["--repository", str(exported_repository), "--images", str(tmp_path)])
