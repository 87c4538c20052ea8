"""What the book baseline loads: the same models TritonGate serves, in the book's formats.

* Text: the export's own ``newsgroups_model.joblib`` (the scikit-learn pipeline the ONNX model
  was converted from).
* Detection: a ``save_pretrained`` directory of the *same* YOLOS weights the repository's ONNX
  model was exported from, as its provenance records them (random-init with its seed and size, a
  local directory, or a hub id), plus the image processor configured to the same 640 × 480 frame
  as :mod:`serving.detection` (``export.yolos_parity.reference_processor``), so both designs do
  the same compute per image. It is written once per weights source and reused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from benchmarks.inputs import yolos_weights_provenance

SOURCE_FILE: Final = "tritongate-bench-source.json"


class BookAssetsError(RuntimeError):
    """The book baseline's model files cannot be found or made."""


def weights_source(repository: Path) -> dict[str, Any]:
    """How to load the repository's YOLOS weights with ``export.yolos_weights.load_yolos``."""
    weights = yolos_weights_provenance(repository)
    source = weights.get("source")
    if source == "random-init":
        return {
            "weights": "random-init",
            "seed": int(weights.get("seed", 0)),
            "tiny": bool(weights.get("tiny", False)),
        }
    if source == "local" and weights.get("local_path"):
        return {"weights": str(weights["local_path"]), "seed": None, "tiny": False}
    if source == "hub" and weights.get("hub_id"):
        return {"weights": str(weights["hub_id"]), "seed": None, "tiny": False}
    raise BookAssetsError(
        f"the YOLOS export in {repository} does not record where its weights came from "
        "(yolos/<version>/provenance.json); re-export it with `tritongate export yolos`"
    )


def prepare_book_yolos(repository: Path, directory: Path) -> tuple[Path, dict[str, Any]]:
    """A ``save_pretrained`` directory of the repository's YOLOS weights; and their source."""
    source = weights_source(repository)
    marker = directory / SOURCE_FILE
    if marker.exists():
        try:
            if json.loads(marker.read_text()) == source:
                return directory, source
        except ValueError:
            pass
    from export.yolos_parity import reference_processor
    from export.yolos_weights import load_yolos

    model, _ = load_yolos(source["weights"], random_init_seed=source["seed"], tiny=source["tiny"])
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    reference_processor().save_pretrained(directory)
    marker.write_text(json.dumps(source))
    return directory, source
