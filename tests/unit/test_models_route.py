"""The public view of a model's provenance (api/inference/routes/models.py): an allow-list."""

from __future__ import annotations

from api.inference.routes.models import public_provenance


def test_local_weights_show_their_source_but_not_the_directory_or_checksums() -> None:
    stored = {
        "model": "yolos",
        "weights": {
            "source": "local",
            "local_path": "/home/alice/weights/yolos",
            "weights_sha256": {"model.safetensors": "ab" * 32},
            "fallback_from": "/mnt/private/yolos",
            "tiny": False,
        },
        "random_weights": False,
        "versions": {"torch": "2.13.0+cpu", "python": "3.11.7"},
        "exported_at": "2026-01-05T10:12:03+00:00",
        "parity": {"per_image": [{"image": "/srv/photos/dog.jpg"}]},
    }
    assert public_provenance(stored) == {
        "exported_at": "2026-01-05T10:12:03+00:00",
        "random_weights": False,
        "weights": {"source": "local"},
    }


def test_hub_weights_keep_their_id_and_revision() -> None:
    stored = {
        "weights": {"source": "hub", "hub_id": "hustvl/yolos-tiny", "revision": "abc123"},
        "libraries": {"numpy": "1.26.4"},
    }
    assert public_provenance(stored) == {
        "weights": {"source": "hub", "hub_id": "hustvl/yolos-tiny", "revision": "abc123"}
    }


def test_nothing_public_is_none() -> None:
    assert public_provenance(None) is None
    assert public_provenance({}) is None
    assert public_provenance({"libraries": {"numpy": "1.26.4"}, "exported_at": {"odd": 1}}) is None
