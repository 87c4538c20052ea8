"""Export of the YOLOS object detector (hustvl/yolos-tiny architecture) to ONNX.

Weights come from a Hugging Face hub id, a local directory, or ``random-init`` (the same
architecture with seeded random weights, for machines without hub access: its detections are
meaningless, and the provenance says so). The export runs optimum-onnx on CPU in fp32, checks the
graph against PyTorch at the served input size for several batch sizes, and runs a parity gate on
real photos: the serving pipeline (:mod:`serving.detection` + ONNX Runtime) against transformers'
``YolosImageProcessor`` + PyTorch. Only then is the model written into the Triton repository.

torch, transformers, optimum and onnxruntime are imported inside the functions that need them,
so importing this module stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import socket
import tempfile
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from export.errors import DataUnavailableError, ExportError, ParityError
from export.repository import ExportedModel, check_onnx_against_spec, write_model
from serving.detection import (
    boxes_to_pixels,
    class_scores,
    decode_image,
    postprocess,
    preprocess,
)
from serving.specs import (
    YOLOS,
    YOLOS_DETECTION_TOKENS,
    YOLOS_INPUT_HEIGHT,
    YOLOS_INPUT_WIDTH,
    YOLOS_NUM_CLASSES,
)

if TYPE_CHECKING:
    from transformers import YolosConfig, YolosForObjectDetection, YolosImageProcessor

DEFAULT_HUB_ID: Final = "hustvl/yolos-tiny"
RANDOM_INIT: Final = "random-init"
DEFAULT_RANDOM_INIT_SEED: Final = 0
RANDOM_WEIGHTS_NOTE: Final = "random weights: detections are meaningless"

# Parity tolerances between the serving pipeline and transformers + PyTorch.
BOX_TOLERANCE_PX: Final = 1.0
SCORE_TOLERANCE: Final = 1e-3
# A label may differ only where the reference's two best classes are this close (a numerical tie).
LABEL_TIE_TOLERANCE: Final = 1e-5
# ONNX Runtime against PyTorch on the same input tensor (raw logits and boxes).
ONNX_TOLERANCE: Final = 1e-4
ONNX_CHECK_BATCH_SIZES: Final = (1, 8)
# The automatic parity threshold never exceeds the usual serving threshold.
MAX_AUTO_PARITY_THRESHOLD: Final = 0.5
HUB_PROBE_TIMEOUT_S: Final = 3.0
# PyTorch threads for the reference forward passes: on small shared VMs torch's intra-op pool
# spin-waits (2 threads measured 5x slower than 1 at batch 1 on 2 cores).
REFERENCE_TORCH_THREADS: Final = 1

# id → label of hustvl/yolos-tiny's config: COCO's 91 category ids, "N/A" for the unused ones.
COCO_ID2LABEL: Final[dict[int, str]] = {
    0: "N/A",
    1: "person",
    2: "bicycle",
    3: "car",
    4: "motorcycle",
    5: "airplane",
    6: "bus",
    7: "train",
    8: "truck",
    9: "boat",
    10: "traffic light",
    11: "fire hydrant",
    12: "N/A",
    13: "stop sign",
    14: "parking meter",
    15: "bench",
    16: "bird",
    17: "cat",
    18: "dog",
    19: "horse",
    20: "sheep",
    21: "cow",
    22: "elephant",
    23: "bear",
    24: "zebra",
    25: "giraffe",
    26: "N/A",
    27: "backpack",
    28: "umbrella",
    29: "N/A",
    30: "N/A",
    31: "handbag",
    32: "tie",
    33: "suitcase",
    34: "frisbee",
    35: "skis",
    36: "snowboard",
    37: "sports ball",
    38: "kite",
    39: "baseball bat",
    40: "baseball glove",
    41: "skateboard",
    42: "surfboard",
    43: "tennis racket",
    44: "bottle",
    45: "N/A",
    46: "wine glass",
    47: "cup",
    48: "fork",
    49: "knife",
    50: "spoon",
    51: "bowl",
    52: "banana",
    53: "apple",
    54: "sandwich",
    55: "orange",
    56: "broccoli",
    57: "carrot",
    58: "hot dog",
    59: "pizza",
    60: "donut",
    61: "cake",
    62: "chair",
    63: "couch",
    64: "potted plant",
    65: "bed",
    66: "N/A",
    67: "dining table",
    68: "N/A",
    69: "N/A",
    70: "toilet",
    71: "N/A",
    72: "tv",
    73: "laptop",
    74: "mouse",
    75: "remote",
    76: "keyboard",
    77: "cell phone",
    78: "microwave",
    79: "oven",
    80: "toaster",
    81: "sink",
    82: "refrigerator",
    83: "N/A",
    84: "book",
    85: "clock",
    86: "vase",
    87: "scissors",
    88: "teddy bear",
    89: "hair drier",
    90: "toothbrush",
}

_CONFIG_KEYS: Final = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "patch_size",
    "num_detection_tokens",
    "image_size",
    "use_mid_position_embeddings",
    "num_labels",
)
_VERSIONED_PACKAGES: Final = (
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnx",
    "onnxruntime",
    "numpy",
    "pillow",
)


# --- weights -----------------------------------------------------------------------------------


def yolos_tiny_config(tiny: bool = False) -> YolosConfig:
    """The hustvl/yolos-tiny architecture with its 91 COCO labels.

    ``tiny=True`` keeps the I/O contract (100 detection tokens, 91 labels, 16-pixel patches,
    interpolated position embeddings) with very little compute, for tests.
    """
    from transformers import YolosConfig

    sizes = (
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
        }
        if tiny
        else {
            "hidden_size": 192,
            "num_hidden_layers": 12,
            "num_attention_heads": 3,
            "intermediate_size": 768,
        }
    )
    return YolosConfig(
        **sizes,
        patch_size=16,
        num_detection_tokens=YOLOS_DETECTION_TOKENS,
        use_mid_position_embeddings=False,
        image_size=[800, 1333],
        id2label=dict(COCO_ID2LABEL),
    )


def load_yolos(
    weights: str,
    *,
    random_init_seed: int | None,
    tiny: bool,
    cache_dir: Path | None = None,
) -> tuple[YolosForObjectDetection, dict[str, Any]]:
    """Load a YOLOS detector in eval mode and describe where its weights came from.

    ``weights`` is ``"random-init"`` (``yolos_tiny_config(tiny)`` seeded with
    ``random_init_seed``, default 0), an existing local directory (``save_pretrained`` layout),
    or a hub id. A hub id is first looked up in the local Hugging Face cache (``cache_dir``, default
    the standard one) without network; only if absent is the hub asked. ``tiny`` applies to
    random-init only. Raises :class:`DataUnavailableError` when a hub id can be neither found in
    the cache nor fetched.
    """
    if weights == RANDOM_INIT:
        model, provenance = _random_init(random_init_seed, tiny)
    elif Path(weights).expanduser().is_dir():
        model, provenance = _load_local(Path(weights).expanduser())
    elif weights.startswith((".", "/", "~")):
        raise DataUnavailableError(f"YOLOS weights directory {weights!r} does not exist")
    else:
        model, provenance = _load_hub(weights, cache_dir)
    _check_contract(model, weights)
    model.eval()
    provenance["config"] = {key: getattr(model.config, key) for key in _CONFIG_KEYS}
    provenance["parameters"] = sum(param.numel() for param in model.parameters())
    return model, provenance


def _random_init(seed: int | None, tiny: bool) -> tuple[YolosForObjectDetection, dict[str, Any]]:
    import torch
    from transformers import YolosForObjectDetection

    seed = DEFAULT_RANDOM_INIT_SEED if seed is None else seed
    torch.manual_seed(seed)
    model = YolosForObjectDetection(yolos_tiny_config(tiny))
    # transformers leaves these at zero (a checkpoint overwrites them), which would make all
    # 100 detection tokens identical; the original YOLOS draws them from N(0, 0.02) truncated.
    embeddings = model.vit.embeddings
    with torch.no_grad():
        for parameter in (
            embeddings.cls_token,
            embeddings.detection_tokens,
            embeddings.position_embeddings,
        ):
            torch.nn.init.trunc_normal_(parameter, std=model.config.initializer_range)
    provenance = {
        "source": RANDOM_INIT,
        "seed": seed,
        "tiny": tiny,
        "architecture": f"{DEFAULT_HUB_ID} ({'tiny test variant' if tiny else 'full size'})",
        "init": "transformers' initialisation; cls/detection tokens and position embeddings "
        f"truncated N(0, {model.config.initializer_range})",
        "note": RANDOM_WEIGHTS_NOTE,
    }
    return model, provenance


def _load_local(directory: Path) -> tuple[YolosForObjectDetection, dict[str, Any]]:
    from transformers import YolosForObjectDetection

    if not (directory / "config.json").is_file():
        raise DataUnavailableError(
            f"{directory} has no config.json: expected a transformers save_pretrained directory "
            "(config.json + model.safetensors)"
        )
    model = YolosForObjectDetection.from_pretrained(directory, local_files_only=True)
    weight_files = sorted(
        path for path in directory.iterdir() if path.suffix in {".safetensors", ".bin", ".pt"}
    )
    provenance = {
        "source": "local",
        "local_path": str(directory.resolve()),
        "weights_sha256": {path.name: _sha256(path) for path in weight_files},
        "tiny": False,
    }
    return model, provenance


def _load_hub(
    hub_id: str, cache_dir: Path | None
) -> tuple[YolosForObjectDetection, dict[str, Any]]:
    from transformers import YolosForObjectDetection

    def fetch(local_files_only: bool) -> YolosForObjectDetection:
        return YolosForObjectDetection.from_pretrained(
            hub_id, cache_dir=cache_dir, local_files_only=local_files_only
        )

    try:
        model = fetch(local_files_only=True)
        from_cache = True
    except (OSError, ValueError) as cache_miss:
        if _hub_offline():
            raise _hub_unavailable(hub_id, "HF_HUB_OFFLINE is set") from cache_miss
        if not _hub_reachable():
            raise _hub_unavailable(hub_id, "the hub cannot be reached") from cache_miss
        try:
            model = fetch(local_files_only=False)
        except (OSError, ValueError) as exc:
            raise _hub_unavailable(hub_id, f"download failed: {exc}") from exc
        from_cache = False
    provenance = {
        "source": "hub",
        "hub_id": hub_id,
        "revision": getattr(model.config, "_commit_hash", None),
        "from_local_cache": from_cache,
        "tiny": False,
    }
    return model, provenance


def _hub_unavailable(hub_id: str, reason: str) -> DataUnavailableError:
    return DataUnavailableError(
        f"YOLOS weights {hub_id!r} are not in the local Hugging Face cache and cannot be "
        f"fetched ({reason}). Offline alternatives: a local directory holding a save_pretrained "
        f"copy of {hub_id} (config.json + model.safetensors), or {RANDOM_INIT!r} for the same "
        f"architecture with random weights ({RANDOM_WEIGHTS_NOTE}); with make: "
        f"YOLOS_WEIGHTS=/path/to/dir or YOLOS_WEIGHTS={RANDOM_INIT}."
    )


def _hub_offline() -> bool:
    """Whether the Hugging Face offline switches are on (read now, not at import time)."""
    from huggingface_hub import constants

    switches = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    env_offline = any(
        (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for value in switches
    )
    return bool(constants.HF_HUB_OFFLINE) or env_offline


def _hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """A quick TCP probe of the hub endpoint, so an offline machine fails in seconds rather than
    after huggingface_hub's minute of retries. Behind a proxy the probe is skipped."""
    from huggingface_hub import constants

    if any(
        os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    ):
        return True
    endpoint = urllib.parse.urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def _check_contract(model: YolosForObjectDetection, weights: str) -> None:
    config = model.config
    if config.model_type != "yolos":
        raise ExportError(f"{weights!r} is a {config.model_type!r} model, not YOLOS")
    if (
        config.num_labels != YOLOS_NUM_CLASSES
        or config.num_detection_tokens != YOLOS_DETECTION_TOKENS
    ):
        raise ExportError(
            f"{weights!r} has {config.num_labels} labels and {config.num_detection_tokens} "
            f"detection tokens; serving/specs.py's YOLOS expects {YOLOS_NUM_CLASSES} and "
            f"{YOLOS_DETECTION_TOKENS}"
        )


def model_labels(model: YolosForObjectDetection) -> list[str]:
    """Class names by id (the model's own id2label)."""
    return [model.config.id2label[index] for index in range(model.config.num_labels)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- ONNX --------------------------------------------------------------------------------------


def export_onnx(model: YolosForObjectDetection, output_dir: Path) -> Path:
    """Export with optimum-onnx (CPU, fp32, task object-detection) into ``output_dir``.

    The graph's input is ``pixel_values`` [batch, 3, height, width] with dynamic axes; the dummy
    input used for tracing has the served size 480x640. Outputs are ``logits`` and
    ``pred_boxes``. Raises :class:`ExportError` if the I/O differs from serving/specs.py.
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
        check_onnx_against_spec(onnx.load(str(onnx_path), load_external_data=False), YOLOS)
    except ValueError as exc:
        raise ExportError(f"exported graph does not match serving/specs.py: {exc}") from exc
    return onnx_path


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run PyTorch with ``count`` intra-op threads, restoring the previous setting after."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ort_session(onnx_path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def check_onnx_matches_pytorch(
    model: YolosForObjectDetection,
    onnx_path: Path,
    batch_sizes: Sequence[int] = ONNX_CHECK_BATCH_SIZES,
    tolerance: float = ONNX_TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ONNX Runtime and PyTorch on the same random [B, 3, 480, 640] inputs.

    Raises :class:`ParityError` if logits or boxes differ by more than ``tolerance`` or shapes
    differ. Returns the max absolute differences per batch size.
    """
    import torch

    session = _ort_session(onnx_path)
    rng = np.random.default_rng(seed)
    figures: dict[str, Any] = {"tolerance": tolerance, "max_abs_diff": {}}
    for batch in batch_sizes:
        pixels = rng.standard_normal((batch, 3, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH))
        pixels = pixels.astype(np.float32)
        logits, boxes = session.run(["logits", "pred_boxes"], {"pixel_values": pixels})
        with torch.no_grad(), _torch_threads(REFERENCE_TORCH_THREADS):
            reference = model(pixel_values=torch.from_numpy(pixels))
        expected_logits = reference.logits.numpy()
        expected_boxes = reference.pred_boxes.numpy()
        if logits.shape != expected_logits.shape or boxes.shape != expected_boxes.shape:
            raise ParityError(
                f"batch {batch}: ONNX shapes {logits.shape}, {boxes.shape} differ from PyTorch's "
                f"{expected_logits.shape}, {expected_boxes.shape}"
            )
        diff = max(
            float(np.abs(logits - expected_logits).max()),
            float(np.abs(boxes - expected_boxes).max()),
        )
        figures["max_abs_diff"][str(batch)] = diff
        if not diff <= tolerance:
            raise ParityError(
                f"batch {batch}: ONNX Runtime differs from PyTorch by {diff:.3g} (tolerance "
                f"{tolerance:g})"
            )
    return figures


# --- parity gate -------------------------------------------------------------------------------


def reference_processor() -> YolosImageProcessor:
    """transformers' slow YolosImageProcessor configured like :mod:`serving.detection`."""
    from transformers import YolosImageProcessor

    return YolosImageProcessor(
        size={"max_height": YOLOS_INPUT_HEIGHT, "max_width": YOLOS_INPUT_WIDTH},
        do_pad=True,
        pad_size={"height": YOLOS_INPUT_HEIGHT, "width": YOLOS_INPUT_WIDTH},
    )


@dataclass
class _ImageRun:
    """Both pipelines' raw outputs for one photo."""

    name: str
    size: tuple[int, int]  # original (width, height)
    input_max_abs_diff: float
    logits: np.ndarray  # ours, [100, 92]
    pred_boxes: np.ndarray  # ours, [100, 4]
    reference: Any  # transformers' YolosObjectDetectionOutput


def _run_image(
    path: Path, session: Any, processor: YolosImageProcessor, model: YolosForObjectDetection
) -> _ImageRun:
    import torch

    image = decode_image(Path(path).read_bytes())
    pixels = preprocess(image)
    logits, boxes = session.run(["logits", "pred_boxes"], {"pixel_values": pixels[None]})
    inputs = processor(images=image, return_tensors="pt", input_data_format="channels_last")
    with torch.no_grad(), _torch_threads(REFERENCE_TORCH_THREADS):
        reference = model(pixel_values=inputs["pixel_values"])
    input_diff = float(np.abs(inputs["pixel_values"][0].numpy() - pixels).max())
    return _ImageRun(Path(path).name, image.size, input_diff, logits[0], boxes[0], reference)


def _auto_threshold(runs: Sequence[_ImageRun]) -> float:
    """A threshold that leaves about half of every photo's queries as detections.

    Per photo: halfway between its reference's two middle scores (away from both, so that no
    query sits on the threshold); overall: the lowest of those, capped at 0.5. Random weights
    score every query ~1/92, so a fixed threshold would compare nothing.
    """
    midpoints = []
    for run in runs:
        scores = np.sort(class_scores(run.reference.logits[0].numpy())[0])[::-1]
        middle = len(scores) // 2
        midpoints.append(float((scores[middle - 1] + scores[middle]) / 2))
    return min(MAX_AUTO_PARITY_THRESHOLD, *midpoints)


def _compare_image(
    run: _ImageRun,
    processor: YolosImageProcessor,
    labels: Sequence[str],
    threshold: float,
) -> tuple[dict[str, Any], list[str]]:
    """Compare one photo's detections query by query; return its figures and its failures."""
    import torch

    width, height = run.size
    target = [(height, width)]
    reference_all = processor.post_process_object_detection(
        run.reference, threshold=float("-inf"), target_sizes=target
    )[0]
    reference = processor.post_process_object_detection(
        run.reference, threshold=threshold, target_sizes=target
    )[0]
    ours = postprocess(run.logits, run.pred_boxes, run.size, labels, threshold)

    reference_kept = (reference_all["scores"] > threshold).numpy()  # transformers' own test
    our_scores, _ = class_scores(run.logits)
    our_kept = our_scores > threshold
    failures: list[str] = []
    if len(reference["scores"]) != reference_kept.sum() or len(ours) != our_kept.sum():
        raise ExportError(f"{run.name}: kept detections do not follow 'score > threshold'")

    reference_scores = reference_all["scores"].numpy().astype(np.float64)
    borderline = np.flatnonzero(reference_kept != our_kept)
    for query in borderline:
        if abs(reference_scores[query] - threshold) > SCORE_TOLERANCE:
            failures.append(
                f"{run.name}: query {query} kept by only one pipeline (reference score "
                f"{reference_scores[query]:.6f}, threshold {threshold:.6f})"
            )

    probabilities = torch.softmax(run.reference.logits[0], dim=-1).numpy()
    reference_index = {int(query): i for i, query in enumerate(np.flatnonzero(reference_kept))}
    common = np.flatnonzero(reference_kept & our_kept)
    our_index = {int(query): i for i, query in enumerate(np.flatnonzero(our_kept))}
    box_diff = score_diff = 0.0
    label_mismatches = label_ties = 0
    for query in common:
        mine = ours[our_index[int(query)]]
        theirs = reference_index[int(query)]
        their_label = int(reference["labels"][theirs])
        their_box = reference["boxes"][theirs].numpy().astype(np.float64)
        box_diff = max(box_diff, float(np.abs(np.asarray(mine.box) - their_box).max()))
        score_diff = max(score_diff, abs(mine.score - float(reference["scores"][theirs])))
        if mine.label_id != their_label:
            gap = float(probabilities[query, their_label] - probabilities[query, mine.label_id])
            if gap <= LABEL_TIE_TOLERANCE:
                label_ties += 1
            else:
                label_mismatches += 1
                failures.append(
                    f"{run.name}: query {query} labelled {mine.label!r} vs reference "
                    f"{labels[their_label]!r} (probability gap {gap:.3g})"
                )
    if len(common) == 0:
        failures.append(
            f"{run.name}: no detection above threshold {threshold:.6f} in both pipelines, "
            "so nothing was compared; lower the parity threshold"
        )
    if box_diff > BOX_TOLERANCE_PX:
        failures.append(f"{run.name}: boxes differ by {box_diff:.4f} px (> {BOX_TOLERANCE_PX})")
    if score_diff > SCORE_TOLERANCE:
        failures.append(f"{run.name}: scores differ by {score_diff:.3g} (> {SCORE_TOLERANCE})")

    all_boxes = boxes_to_pixels(run.pred_boxes, width, height)
    figures = {
        "image": run.name,
        "size": [width, height],
        "detections_compared": len(common),
        "reference_detections": len(reference["scores"]),
        "pipeline_detections": len(ours),
        "borderline_queries": len(borderline),
        "label_mismatches": label_mismatches,
        "label_ties": label_ties,
        "max_box_diff_px": box_diff,
        "max_score_diff": score_diff,
        "input_max_abs_diff": run.input_max_abs_diff,
        "all_queries_max_box_diff_px": float(
            np.abs(all_boxes - reference_all["boxes"].numpy().astype(np.float64)).max()
        ),
        "all_queries_max_score_diff": float(np.abs(our_scores - reference_scores).max()),
    }
    return figures, failures


def check_parity(
    model: YolosForObjectDetection,
    onnx_path: Path,
    images: Sequence[Path],
    threshold: float | None = None,
    *,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Parity gate: the serving pipeline against transformers + PyTorch on real photos.

    Ours: :func:`serving.detection.decode_image` → ``preprocess`` → ONNX Runtime →
    ``postprocess``. Reference: the same decoded image → :func:`reference_processor` → the
    PyTorch model → ``post_process_object_detection(threshold, target_sizes=[(h, w)])``.
    Detections are compared in query order: same labels (numerical ties excepted), boxes within
    1 px, scores within 1e-3. A query whose reference score lies within 1e-3 of the threshold
    may be kept by one side only. Every photo must yield at least one compared detection;
    ``threshold=None`` picks one low enough for that (see :func:`_auto_threshold`).

    Logs per-photo and overall figures and returns them; raises :class:`ParityError` when any
    photo is over tolerance.
    """
    if not images:
        raise ExportError("the YOLOS parity gate needs at least one photo; none were given")
    session = _ort_session(onnx_path)
    processor = reference_processor()
    labels = model_labels(model)
    runs = [_run_image(Path(path), session, processor, model) for path in images]
    chosen = _auto_threshold(runs) if threshold is None else threshold
    log(f"[yolos] parity on {len(runs)} photos at threshold {chosen:.6f}")
    per_image: list[dict[str, Any]] = []
    failures: list[str] = []
    for run in runs:
        figures, problems = _compare_image(run, processor, labels, chosen)
        per_image.append(figures)
        failures.extend(problems)
        log(
            f"[yolos]   {figures['image']:<24} {figures['detections_compared']:>3} detections  "
            f"max box diff {figures['max_box_diff_px']:.2e} px  "
            f"max score diff {figures['max_score_diff']:.2e}  "
            f"borderline {figures['borderline_queries']}  ties {figures['label_ties']}"
        )
    summary = {
        "threshold": chosen,
        "threshold_chosen_automatically": threshold is None,
        "images": len(runs),
        "detections_compared": sum(item["detections_compared"] for item in per_image),
        "max_box_diff_px": max(item["max_box_diff_px"] for item in per_image),
        "max_score_diff": max(item["max_score_diff"] for item in per_image),
        "max_input_abs_diff": max(item["input_max_abs_diff"] for item in per_image),
        "label_mismatches": sum(item["label_mismatches"] for item in per_image),
        "label_ties": sum(item["label_ties"] for item in per_image),
        "borderline_queries": sum(item["borderline_queries"] for item in per_image),
        "tolerances": {
            "box_px": BOX_TOLERANCE_PX,
            "score": SCORE_TOLERANCE,
            "label_tie": LABEL_TIE_TOLERANCE,
        },
        "per_image": per_image,
        "passed": not failures,
    }
    log(
        f"[yolos] parity overall: {summary['detections_compared']} detections, "
        f"max box diff {summary['max_box_diff_px']:.2e} px, "
        f"max score diff {summary['max_score_diff']:.2e}, "
        f"max input diff {summary['max_input_abs_diff']:.2e}"
    )
    if failures:
        shown = "; ".join(failures[:10])
        more = f" (+{len(failures) - 10} more)" if len(failures) > 10 else ""
        raise ParityError(f"YOLOS parity gate failed: {shown}{more}")
    return summary


# --- the whole export --------------------------------------------------------------------------


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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
    if weights_provenance["source"] == RANDOM_INIT:
        log(f"[yolos] !!! {RANDOM_WEIGHTS_NOTE}")

    import onnx

    with tempfile.TemporaryDirectory(prefix="tritongate-yolos-") as tmp:
        log("[yolos] exporting to ONNX with optimum (CPU, fp32, object-detection)")
        onnx_path = export_onnx(model, Path(tmp))
        log(
            f"[yolos] checking ONNX Runtime against PyTorch at batch {list(ONNX_CHECK_BATCH_SIZES)}"
        )
        onnx_check = check_onnx_matches_pytorch(model, onnx_path)
        log(f"[yolos]   max abs diff per batch size: {onnx_check['max_abs_diff']}")
        parity = check_parity(model, onnx_path, images, parity_threshold, log=log)
        onnx_model = onnx.load(str(onnx_path))

    provenance = {
        "model": YOLOS.name,
        "weights": weights_provenance,
        "random_weights": weights_provenance["source"] == RANDOM_INIT,
        "input": {
            "tensor": "pixel_values",
            "height": YOLOS_INPUT_HEIGHT,
            "width": YOLOS_INPUT_WIDTH,
            "preprocessing": "fit inside 640x480 keeping aspect (bilinear), /255, ImageNet "
            "mean/std, zero-pad bottom/right (serving.detection.preprocess)",
        },
        "onnx": {
            "exporter": "optimum.exporters.onnx.onnx_export_from_model",
            "task": "object-detection",
            "dtype": "fp32",
            "opset": max(entry.version for entry in onnx_model.opset_import),
            "pytorch_check": onnx_check,
        },
        "parity": parity,
        "versions": _package_versions(),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if provenance["random_weights"]:
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
