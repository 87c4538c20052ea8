"""YOLOS weights for the export: where they come from and what they must look like.

Weights come from a Hugging Face hub id (the local Hugging Face cache first, then the hub), a
local ``save_pretrained`` directory, or ``random-init`` (the hustvl/yolos-tiny architecture with
seeded random weights, for machines without hub access: its detections are meaningless, and the
provenance says so). :func:`load_yolos` returns the model together with that provenance, and
checks it against the I/O contract of serving/specs.py (91 COCO labels, 100 detection tokens).

torch and transformers are imported inside the functions that need them, so importing this
module stays cheap.
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from export.errors import DataUnavailableError, ExportError
from export.provenance import file_sha256
from serving.specs import YOLOS_DETECTION_TOKENS, YOLOS_NUM_CLASSES

if TYPE_CHECKING:
    from transformers import YolosConfig, YolosForObjectDetection

DEFAULT_HUB_ID: Final = "hustvl/yolos-tiny"
RANDOM_INIT: Final = "random-init"
DEFAULT_RANDOM_INIT_SEED: Final = 0
RANDOM_WEIGHTS_NOTE: Final = "random weights: detections are meaningless"
HUB_PROBE_TIMEOUT_S: Final = 3.0

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
        "weights_sha256": {path.name: file_sha256(path) for path in weight_files},
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
