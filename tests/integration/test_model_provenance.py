"""What anonymous callers learn from ``GET /models``: where the weights came from and when, not
the exporting host's paths, checksums or exact library versions (api/inference/routes/models.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from serving.model_repository import read_provenance
from tests.integration.api_client import app_settings, running_app


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _private_values(provenance: dict[str, Any]) -> set[str]:
    """What the repository's provenance.json holds that the public view must not show: host
    paths (absolute, or under the exporter's work directory), library versions, checksums."""
    versions = {**provenance.get("libraries", {}), **provenance.get("versions", {})}
    found = {str(version) for version in versions.values()}
    for text in _strings(provenance):
        if text.startswith(("/", ".tritongate", "~")) or "/tmp" in text:
            found.add(text)
    dataset = provenance.get("dataset", {})
    for checksum in _strings(dataset.get("archive", {})):
        if len(checksum) == 64:
            found.add(checksum)
    return found


def test_anonymous_model_listing_hides_host_paths_and_library_versions(
    exported_repository: Path,
) -> None:
    async def check() -> tuple[dict[str, Any], str]:
        settings = app_settings(
            exported_repository, inference_backend="onnxruntime", inference_auth="required"
        )
        async with running_app(settings) as (_, client):
            listing = await client.get("/models")
            one = await client.get("/models/newsgroups")
            assert listing.status_code == one.status_code == 200
            return listing.json(), listing.text + one.text

    listing, text = asyncio.run(check())
    models = {model["name"]: model for model in listing["models"]}
    private: set[str] = set()
    for name in models:
        stored = read_provenance(exported_repository / name, 1)
        private |= _private_values(stored)
        public = models[name]["provenance"]
        assert public["exported_at"] == stored["exported_at"]
        for hidden in ("libraries", "versions", "artifacts", "parity", "onnx", "input"):
            assert hidden not in public, (name, hidden)
    assert any(value.startswith("/") for value in private), "the export wrote host paths"
    assert sum(value[:1].isdigit() for value in private) >= 5, "the export wrote versions"
    leaked = sorted(value for value in private if value in text)
    assert not leaked, f"/models shows {leaked}"
    for library in ("onnxruntime", "numpy", "scikit-learn", "torch", "transformers"):
        assert f'"{library}"' not in text

    # What a user needs stays: the weights' source, random_weights, the data and accuracy.
    yolos, newsgroups = models["yolos"], models["newsgroups"]
    assert yolos["random_weights"] is True and yolos["provenance"]["random_weights"] is True
    assert yolos["provenance"]["weights"]["source"] == "random-init"
    assert "seed" in yolos["provenance"]["weights"]
    assert newsgroups["provenance"]["dataset"]["name"] == "20newsgroups-bydate"
    assert 0.0 < newsgroups["provenance"]["metrics"]["accuracy"] <= 1.0
    json.dumps(listing)  # plain JSON throughout
