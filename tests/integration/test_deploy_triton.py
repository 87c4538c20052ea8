"""What the GPU deployment assumes of Triton, checked on the real local tritonserver (2.51.0,
the server of the 24.10 image): the probe endpoints, the metrics the Triton autoscaler's
prometheus-adapter rule reads, and exported models within what the image's ONNX Runtime (1.19.2)
loads."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import onnx
import pytest
import yaml

from serving.launcher import LocalTriton
from tests.integration.prometheus_text import family_names
from tests.stack import PROJECT_ROOT

# ONNX Runtime 1.19 (Triton 24.10's onnxruntime backend) implements IR version 10, ONNX opsets
# up to 21 and ai.onnx.ml up to 4 (ONNX 1.16).
ORT_1_19_LIMITS = {"ir_version": 10, "": 21, "ai.onnx": 21, "ai.onnx.ml": 4, "com.microsoft": 1}


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return int(reply.status)


def test_the_probe_endpoints_exist_and_answer(triton: LocalTriton) -> None:
    triton_yaml = (PROJECT_ROOT / "deploy" / "k8s" / "triton.yaml").read_text()
    (deployment, _) = (doc for doc in yaml.safe_load_all(triton_yaml))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert _status(f"{triton.http_url}{path}") == 200, path


def test_the_autoscaling_metrics_are_exported(triton: LocalTriton) -> None:
    with urllib.request.urlopen(triton.metrics_url, timeout=10) as reply:
        families = family_names(reply.read().decode())
    assert {"nv_inference_queue_duration_us", "nv_inference_request_success"} <= families


@pytest.mark.parametrize("model", ["newsgroups", "yolos"])
def test_exports_load_on_the_images_onnx_runtime(exported_repository: Path, model: str) -> None:
    (path,) = (exported_repository / model).glob("*/model.onnx")
    graph = onnx.load(str(path), load_external_data=False)
    assert graph.ir_version <= ORT_1_19_LIMITS["ir_version"]
    for opset in graph.opset_import:
        domain = opset.domain or ""
        assert domain in ORT_1_19_LIMITS, f"{model}: opset domain {domain!r}"
        assert opset.version <= ORT_1_19_LIMITS[domain], f"{model}: {domain} {opset.version}"
