"""Export of the YOLOS object detector (hustvl/yolos-tiny architecture) to ONNX.

:func:`export_yolos` loads the weights (:mod:`export.yolos_weights`: hub id, local directory or
``random-init``), runs optimum-onnx on CPU in fp32 (:func:`export_onnx`), prepends the
pre-processing that lets the served graph take uint8 pixels (:mod:`export.yolos_preprocessing`),
checks the final graph against PyTorch at the served input size for several batch sizes and runs
the parity gate on real photos (:mod:`export.yolos_parity`). Only then is the model written into
the Triton repository, with a provenance record of all of it.

torch, optimum and onnx are imported inside the functions that need them, so importing this
module stays cheap.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from export.errors import DataUnavailableError, ExportError
from export.provenance import package_versions, utc_timestamp
from export.repository import ExportedModel, check_onnx_against_spec, write_model
from export.yolos_parity import ONNX_CHECK_BATCH_SIZES, check_onnx_matches_pytorch, check_parity
from export.yolos_preprocessing import add_preprocessing
from export.yolos_weights import (
    DEFAULT_HUB_ID,
    DEFAULT_RANDOM_INIT_SEED,
    RANDOM_INIT,
    RANDOM_WEIGHTS_NOTE,
    load_yolos,
    model_labels,
)
from serving.specs import (
    YOLOS,
    YOLOS_INPUT_HEIGHT,
    YOLOS_INPUT_WIDTH,
    YOLOS_PIXEL_VALUES,
    ModelSpec,
)

if TYPE_CHECKING:
    from transformers import YolosForObjectDetection

REPORTED_PACKAGES: Final = (
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "pillow",
)

# optimum's graph before the pre-processing is prepended: normalised float32 NCHW in.
OPTIMUM_GRAPH: Final = ModelSpec(YOLOS.name, (YOLOS_PIXEL_VALUES,), YOLOS.outputs)
PREPROCESSING_NOTE: Final = (
    "fit inside 640x480 keeping aspect (bilinear) and pad bottom/right in the API "
    "(serving.detection.preprocess: uint8 pixels + content_size); /255, ImageNet mean/std and "
    "zero padding after normalisation inside the graph (export.yolos_preprocessing)"
)


def export_onnx(model: YolosForObjectDetection, output_dir: Path) -> Path:
    """Export with optimum-onnx (CPU, fp32, task object-detection) into ``output_dir``.

    The graph's input is ``pixel_values`` [batch, 3, height, width] with dynamic axes; the dummy
    input used for tracing has the served size 480x640. Outputs are ``logits`` and
    ``pred_boxes``. Raises :class:`ExportError` if the I/O differs from :data:`OPTIMUM_GRAPH`.
    This is not yet the served graph: see :func:`export_served_onnx`.
    """
    import onnx
    import torch
    from optimum.exporters.onnx import onnx_export_from_model

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Tracing warns about a Python-level channel check in YolosPatchEmbeddings; harmless.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # optimum-onnx 0.1 uses torch's TorchScript-based exporter, which torch 2.13 deprecates.
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
        onnx_export_from_model(
            model,
            output_dir,
            task="object-detection",
            device="cpu",
            do_validation=False,  # check_onnx_matches_pytorch validates at the served size
            height=YOLOS_INPUT_HEIGHT,
            width=YOLOS_INPUT_WIDTH,
            batch_size=2,
        )
    onnx_path = output_dir / "model.onnx"
    if not onnx_path.is_file():
        raise ExportError(f"optimum wrote no model.onnx into {output_dir}")
    try:
        check_onnx_against_spec(onnx.load(str(onnx_path), load_external_data=False), OPTIMUM_GRAPH)
    except ValueError as exc:
        raise ExportError(f"exported graph does not match serving/specs.py: {exc}") from exc
    return onnx_path


def export_served_onnx(model: YolosForObjectDetection, output_dir: Path) -> Path:
    """optimum's export (:func:`export_onnx`) with the uint8 pre-processing prepended, written
    to ``output_dir``/served.onnx: the graph that is checked and served (serving/specs.py's
    ``YOLOS`` interface)."""
    import onnx

    raw_path = export_onnx(model, output_dir)
    try:
        served = add_preprocessing(onnx.load(str(raw_path)))
        check_onnx_against_spec(served, YOLOS)
    except ValueError as exc:
        raise ExportError(f"could not build the served graph: {exc}") from exc
    served_path = Path(output_dir) / "served.onnx"
    onnx.save(served, str(served_path))
    return served_path


def export_yolos(
    repository: Path,
    *,
    weights: str = DEFAULT_HUB_ID,
    random_init_seed: int = DEFAULT_RANDOM_INIT_SEED,
    tiny: bool = False,
    images: Sequence[Path],
    parity_threshold: float | None = None,
    version: int = 1,
    offline_fallback_random_init: bool = False,
    log: Callable[[str], None] = print,
) -> ExportedModel:
    """Load, export, verify and write YOLOS into ``repository``/yolos/``version``.

    ``images`` are the real photos of the parity gate (required). With
    ``offline_fallback_random_init``, unavailable hub weights fall back to random-init (seed
    ``random_init_seed``, ``tiny``), loudly and on record in the provenance.
    """
    if not images:
        raise ExportError(
            "export_yolos needs real photos for its parity gate (images=[...]); none were given"
        )
    started = time.perf_counter()
    log(f"[yolos] loading weights {weights!r}")
    try:
        model, weights_provenance = load_yolos(
            weights, random_init_seed=random_init_seed, tiny=tiny
        )
    except DataUnavailableError as exc:
        if not offline_fallback_random_init or weights == RANDOM_INIT:
            raise
        log(f"[yolos] !!! {exc}")
        log(
            f"[yolos] !!! FALLING BACK TO RANDOM-INIT (seed {random_init_seed}, "
            f"{'tiny' if tiny else 'full size'}): {RANDOM_WEIGHTS_NOTE.upper()}"
        )
        model, weights_provenance = load_yolos(
            RANDOM_INIT, random_init_seed=random_init_seed, tiny=tiny
        )
        weights_provenance["fallback_from"] = weights
        weights_provenance["fallback_reason"] = str(exc)
    random_weights = weights_provenance["source"] == RANDOM_INIT
    if random_weights:
        log(f"[yolos] !!! {RANDOM_WEIGHTS_NOTE}")

    import onnx

    with tempfile.TemporaryDirectory(prefix="tritongate-yolos-") as tmp:
        log(
            "[yolos] exporting to ONNX with optimum (CPU, fp32, object-detection), "
            "prepending the uint8 pre-processing"
        )
        onnx_path = export_served_onnx(model, Path(tmp))
        log(
            f"[yolos] checking ONNX Runtime against PyTorch at batch {list(ONNX_CHECK_BATCH_SIZES)}"
        )
        onnx_check = check_onnx_matches_pytorch(model, onnx_path)
        log(
            f"[yolos]   max abs diff per batch size: {onnx_check['max_abs_diff']}; "
            f"normalised input vs the processor's arithmetic: {onnx_check['input_max_abs_diff']}"
        )
        parity = check_parity(model, onnx_path, images, parity_threshold, log=log)
        onnx_model = onnx.load(str(onnx_path))

    provenance: dict[str, Any] = {
        "model": YOLOS.name,
        "weights": weights_provenance,
        "random_weights": random_weights,
        "input": {
            "tensors": {spec.name: spec.data_type for spec in YOLOS.inputs},
            "height": YOLOS_INPUT_HEIGHT,
            "width": YOLOS_INPUT_WIDTH,
            "preprocessing": PREPROCESSING_NOTE,
        },
        "onnx": {
            "exporter": "optimum.exporters.onnx.onnx_export_from_model",
            "task": "object-detection",
            "dtype": "fp32",
            "opset": max(entry.version for entry in onnx_model.opset_import),
            "pytorch_check": onnx_check,
        },
        "parity": parity,
        "versions": package_versions(REPORTED_PACKAGES),
        "exported_at": utc_timestamp(),
    }
    if random_weights:
        provenance["note"] = RANDOM_WEIGHTS_NOTE
    exported = write_model(
        repository,
        YOLOS,
        onnx_model,
        labels=model_labels(model),
        provenance=provenance,
        version=version,
    )
    log(
        f"[yolos] written to {exported.model_path} (labels {exported.labels_path.name}, "
        f"provenance {exported.provenance_path.name}) in {time.perf_counter() - started:.1f} s"
    )
    return exported
