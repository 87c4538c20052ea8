"""export.repository: ONNX graphs are checked against the declared tensors before they land."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from export.repository import check_onnx_against_spec, write_model
from serving.model_config import ModelConfigError
from serving.model_repository import model_versions, read_labels, read_provenance
from serving.specs import YOLOS
from tests.stack import copy_committed_configs


def _yolos_like(
    input_name: str = "pixels",
    elem_type: int = TensorProto.UINT8,
    batch: str | int = "batch",
    logits_classes: int = 92,
) -> onnx.ModelProto:
    """A graph with YOLOS's I/O (values are irrelevant to the checks)."""
    pixels = helper.make_tensor_value_info(input_name, elem_type, [batch, 480, 640, 3])
    size = helper.make_tensor_value_info("content_size", TensorProto.INT32, [batch, 2])
    logits = helper.make_tensor_value_info(
        "logits", TensorProto.FLOAT, [batch, 100, logits_classes]
    )
    boxes = helper.make_tensor_value_info("pred_boxes", TensorProto.FLOAT, [batch, 100, 4])
    nodes = [
        helper.make_node("Identity", [input_name], ["logits"]),
        helper.make_node("Identity", ["content_size"], ["pred_boxes"]),
    ]
    graph = helper.make_graph(nodes, "yolos_like", [pixels, size], [logits, boxes])
    return helper.make_model(graph)


def test_matching_graph_passes() -> None:
    check_onnx_against_spec(_yolos_like(), YOLOS)


def test_symbolic_item_dims_pass() -> None:
    model = _yolos_like()
    for dim in model.graph.input[0].type.tensor_type.shape.dim[1:]:
        dim.dim_param = "any"
    check_onnx_against_spec(model, YOLOS)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (_yolos_like(input_name="images"), "graph lacks input 'pixels'"),
        (_yolos_like(elem_type=TensorProto.FLOAT), "ONNX element type FLOAT, expected UINT8"),
        (_yolos_like(batch=1), "batch dimension is fixed at 1"),
        (_yolos_like(logits_classes=81), "axis 2 is 81, expected 92"),
    ],
)
def test_mismatching_graph_is_refused(model: onnx.ModelProto, expected: str) -> None:
    with pytest.raises(ModelConfigError, match=expected):
        check_onnx_against_spec(model, YOLOS)


def _repository_copy(tmp_path: Path) -> Path:
    return copy_committed_configs(tmp_path / "repo", models=("yolos",))


def test_write_model_lays_out_the_version_labels_and_provenance(tmp_path: Path) -> None:
    repository = _repository_copy(tmp_path)
    exported = write_model(repository, YOLOS, _yolos_like(), ["a", "b"], {"source": "test"}, 3)
    assert exported.model_path == repository / "yolos" / "3" / "model.onnx"
    assert model_versions(repository / "yolos") == [3]
    assert read_labels(repository / "yolos") == ["a", "b"]
    assert read_provenance(repository / "yolos", 3) == {"source": "test"}


def test_write_model_refuses_a_bad_graph_before_writing(tmp_path: Path) -> None:
    repository = _repository_copy(tmp_path)
    with pytest.raises(ModelConfigError):
        write_model(repository, YOLOS, _yolos_like(input_name="x"), ["a"], {})
    assert model_versions(repository / "yolos") == []


def test_write_model_needs_the_committed_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="committed configs"):
        write_model(tmp_path, YOLOS, _yolos_like(), ["a"], {})
