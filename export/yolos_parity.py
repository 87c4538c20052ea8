"""The YOLOS export's checks: the ONNX graph against PyTorch, and the serving pipeline's parity.

:func:`check_onnx_matches_pytorch` runs the served graph on random uint8 inputs at the served
size for several batch sizes, and PyTorch on the normalised tensor the graph computed from them
(raw logits and boxes). :func:`check_parity` is the gate on real photos: the serving pipeline
(:mod:`serving.detection` + the served graph, whose first nodes normalise) against transformers'
``YolosImageProcessor`` (:func:`reference_processor`) + PyTorch, detection by detection, and the
graph's normalised tensor against the processor's. Both raise :class:`ParityError` beyond their
tolerances. Both read the graph's intermediate ``pixel_values`` by running a copy of it that
also outputs that tensor (:func:`export.yolos_preprocessing.with_pixel_values_output`).

torch, transformers and onnxruntime are imported inside the functions that need them, so
importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from export.errors import ExportError, ParityError
from export.yolos_weights import model_labels
from serving.detection import (
    boxes_to_pixels,
    class_scores,
    decode_image,
    postprocess,
    preprocess,
)
from serving.specs import (
    YOLOS_CONTENT_SIZE,
    YOLOS_INPUT_HEIGHT,
    YOLOS_INPUT_WIDTH,
    YOLOS_PIXEL_VALUES,
    YOLOS_PIXELS,
)

if TYPE_CHECKING:
    from transformers import YolosForObjectDetection, YolosImageProcessor

# Parity tolerances between the serving pipeline and transformers + PyTorch.
BOX_TOLERANCE_PX: Final = 1.0
SCORE_TOLERANCE: Final = 1e-3
# A label may differ only where the reference's two best classes are this close (a numerical tie).
LABEL_TIE_TOLERANCE: Final = 1e-5
# ONNX Runtime against PyTorch on the same input tensor (raw logits and boxes).
ONNX_TOLERANCE: Final = 1e-4
ONNX_CHECK_BATCH_SIZES: Final = (1, 8)
# The graph's normalised tensor against the processor's arithmetic (it is built to be exact).
INPUT_TOLERANCE: Final = 1e-6
_OUTPUTS: Final = ("logits", "pred_boxes", YOLOS_PIXEL_VALUES.name)
# The automatic parity threshold never exceeds the usual serving threshold.
MAX_AUTO_PARITY_THRESHOLD: Final = 0.5
# PyTorch threads for the reference forward passes: on small shared VMs torch's intra-op pool
# spin-waits (2 threads measured 5x slower than 1 at batch 1 on 2 cores).
REFERENCE_TORCH_THREADS: Final = 1


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
    """A CPU session of the served graph at ``onnx_path`` that also outputs ``pixel_values``."""
    import onnx
    import onnxruntime as ort

    from export.yolos_preprocessing import with_pixel_values_output

    model = with_pixel_values_output(onnx.load(str(onnx_path)))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def random_served_inputs(batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random uint8 pixels and content sizes: the first item fills the frame, the others are
    padded at the bottom or on the right (from 1x1 up), like resized photos of other shapes."""
    pixels = rng.integers(0, 256, (batch, YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH, 3), np.uint8)
    sizes = np.empty((batch, 2), dtype=np.int32)
    sizes[0] = (YOLOS_INPUT_HEIGHT, YOLOS_INPUT_WIDTH)
    for index in range(1, batch):
        if index % 2:
            sizes[index] = (rng.integers(1, YOLOS_INPUT_HEIGHT + 1), YOLOS_INPUT_WIDTH)
        else:
            sizes[index] = (YOLOS_INPUT_HEIGHT, rng.integers(1, YOLOS_INPUT_WIDTH + 1))
    return {YOLOS_PIXELS.name: pixels, YOLOS_CONTENT_SIZE.name: sizes}


def check_onnx_matches_pytorch(
    model: YolosForObjectDetection,
    onnx_path: Path,
    batch_sizes: Sequence[int] = ONNX_CHECK_BATCH_SIZES,
    tolerance: float = ONNX_TOLERANCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the served graph on random uint8 inputs and PyTorch on the graph's normalised tensor.

    Raises :class:`ParityError` if logits or boxes differ by more than ``tolerance``, shapes
    differ, or the normalised tensor differs from the processor's arithmetic on the same bytes
    (:func:`export.yolos_preprocessing.normalised_like_processor`) by more than 1e-6. Returns the
    max absolute differences per batch size.
    """
    import torch

    from export.yolos_preprocessing import normalised_like_processor

    session = _ort_session(onnx_path)
    rng = np.random.default_rng(seed)
    figures: dict[str, Any] = {
        "tolerance": tolerance,
        "max_abs_diff": {},
        "input_tolerance": INPUT_TOLERANCE,
        "input_max_abs_diff": {},
    }
    for batch in batch_sizes:
        feeds = random_served_inputs(batch, rng)
        logits, boxes, pixel_values = session.run(list(_OUTPUTS), feeds)
        expected_input = normalised_like_processor(
            feeds[YOLOS_PIXELS.name], feeds[YOLOS_CONTENT_SIZE.name]
        )
        input_diff = float(np.abs(pixel_values - expected_input).max())
        figures["input_max_abs_diff"][str(batch)] = input_diff
        if not input_diff <= INPUT_TOLERANCE:
            raise ParityError(
                f"batch {batch}: the graph's normalised input differs from the processor's "
                f"arithmetic by {input_diff:.3g} (tolerance {INPUT_TOLERANCE:g})"
            )
        with torch.no_grad(), _torch_threads(REFERENCE_TORCH_THREADS):
            reference = model(pixel_values=torch.from_numpy(pixel_values))
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

    image = decode_image(path.read_bytes())
    logits, boxes, pixel_values = session.run(list(_OUTPUTS), preprocess(image))
    inputs = processor(images=image, return_tensors="pt", input_data_format="channels_last")
    with torch.no_grad(), _torch_threads(REFERENCE_TORCH_THREADS):
        reference = model(pixel_values=inputs["pixel_values"])
    input_diff = float(np.abs(inputs["pixel_values"][0].numpy() - pixel_values[0]).max())
    return _ImageRun(path.name, image.size, input_diff, logits[0], boxes[0], reference)


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
    # Both post-processings keep query order: a kept query's position is the number kept before it.
    reference_position = np.cumsum(reference_kept) - 1
    our_position = np.cumsum(our_kept) - 1
    common = np.flatnonzero(reference_kept & our_kept)
    box_diff = score_diff = 0.0
    label_mismatches = label_ties = 0
    for query in common:
        mine = ours[our_position[query]]
        theirs = int(reference_position[query])
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

    Ours: :func:`serving.detection.decode_image` → ``preprocess`` (resize, uint8) → the served
    graph in ONNX Runtime (normalisation inside) → ``postprocess``. Reference: the same decoded
    image → :func:`reference_processor` → the PyTorch model →
    ``post_process_object_detection(threshold, target_sizes=[(h, w)])``. The graph's normalised
    tensor is compared with the processor's (``max_input_abs_diff``, recorded).
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
