"""benchmarks.runner against a remote "deployment" that is a fake HTTP server (no Triton).

Only what can be measured remotely runs: the API series of the text scenario and the generator's
ceiling; everything else is listed as skipped, and the credential reaches the server but never
the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import machine
from benchmarks.runner import BenchOptions, run_benchmarks
from tests.unit.benchmarks.fake_http_server import FakeHttpServer, json_directed

SECRET = "tg_secret_key_123"


def test_remote_run_measures_the_deployment_and_skips_local_baselines(tmp_path: Path) -> None:
    out = tmp_path / "report"
    with FakeHttpServer(json_directed) as server:
        directory = run_benchmarks(
            BenchOptions(
                scenarios=("text", "batching"),
                url=server.url,
                api_key=SECRET,
                duration=0.3,
                warmup=0.1,
                concurrency=(1, 2),
                repository=tmp_path / "no-repository",
                work_dir=tmp_path / "work",
                output_dir=out,
                progress=False,
            ),
            log=lambda _message: None,
        )
        received = list(server.received)
    assert directory == out
    predictions = [r for r in received if r.path == "/prediction"]
    assert predictions and all(r.headers.get("x-api-key") == SECRET for r in predictions)
    assert all(json.loads(r.body)["text"] for r in predictions)  # the built-in texts

    report = json.loads((out / "report.json").read_text())
    scenarios = {s["key"]: s for s in report["scenarios"]}
    assert list(scenarios) == ["generator", "text", "batching"]
    text = scenarios["text"]
    assert {(m["series"], m["concurrency"]) for m in text["measurements"]} == {
        ("api", 1),
        ("api", 2),
    }
    assert all(m["result"]["errors"] == 0 for m in text["measurements"])
    assert len(text["skipped"]) == 4 and scenarios["batching"]["skipped"]
    assert [c["status"] for c in text["checks"]] == ["NOT MEASURED", "NOT MEASURED"]
    assert scenarios["generator"]["measurements"][0]["result"]["throughput_rps"] > 1000
    assert report["configuration"]["options"]["api_key"] == "set (redacted)"
    assert report["inputs"]["texts"]["kind"] == "built-in"
    for path in out.iterdir():
        assert SECRET not in path.read_bytes().decode("utf-8", "replace"), path.name
    markdown = (out / "report.md").read_text()
    assert "**Skipped**" in markdown and "remote deployment (--url)" in markdown
    assert (out / "text-throughput.png").exists()


def test_machine_description() -> None:
    info = machine.machine_info()
    assert info["cores"] >= 1 and info["name"].endswith(f"-{info['cores']}cpu")
    assert info["packages"]["fastapi"] and info["python"].startswith("3.")
    assert set(info["git"]) == {"commit", "short_commit", "branch", "dirty"}
    assert isinstance(info["gpus"], list)
    assert machine.slug("My Host_01.local") == "my-host-01-local"
    assert "cores" in machine.describe(info)
