import cv2
import pytest
import torch

from lighthead_edge.config import ModelConfig
from lighthead_edge.errors import CheckpointError
from lighthead_edge.modeling.backbones import build_backbone
from lighthead_edge.modeling.checkpoint import load_checkpoint, save_checkpoint
from lighthead_edge.modeling.detector import build_detector
from lighthead_edge.modeling.summary import stage_costs

CLASSES = ["circle", "square", "triangle", "star"]


def test_round_trip_gives_identical_detections(tmp_path, tiny_detector):
    path = save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES, meta={"val": {"AP": 0.5}})
    model, classes, payload = load_checkpoint(path)
    assert classes == CLASSES and payload["meta"]["val"]["AP"] == 0.5
    assert model.config == tiny_detector.config
    x = torch.rand(1, 3, 128, 128) * 255
    with torch.no_grad():
        a, b = tiny_detector(x)[0], model(x)[0]
    torch.testing.assert_close(a["boxes"], b["boxes"])
    # plain weights_only loading works, as the brief requires
    assert torch.load(path, weights_only=True)["classes"] == CLASSES
    assert not list(tmp_path.glob("*.tmp"))


def test_wrong_class_count_is_refused(tmp_path, tiny_detector):
    with pytest.raises(CheckpointError, match="3 class names for a 4-class model"):
        save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES[:3])


@pytest.mark.parametrize(
    "part,value,match",
    [
        ("classes", None, r"its 'classes' must be a list of non-empty names, got None"),
        ("classes", ["circle", "square", "", "star"], r"list of non-empty names"),
        ("classes", ["circle", 2, "triangle", "star"], r"list of non-empty names"),
        ("classes", CLASSES[:3], r"3 class names for a 4-class model"),
        ("config", [], r"its 'config' is a list, not a dict"),
        ("state_dict", [], r"its 'state_dict' is a list"),
        ("meta", ["a"], r"its 'meta' is a list, not a dict"),
        ("meta", {"val": {"AP": "high"}}, r"meta 'val' must map metric names to numbers"),
        ("train", "yes", r"its 'train' is a str, not a dict"),
    ],
)
def test_damaged_parts_are_refused(tmp_path, tiny_detector, part, value, match):
    path = save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES)
    payload = torch.load(path, weights_only=True)
    payload[part] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


def test_a_weight_that_is_not_a_tensor_is_refused(tmp_path, tiny_detector):
    path = save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES)
    payload = torch.load(path, weights_only=True)
    key = next(iter(payload["state_dict"]))
    payload["state_dict"][key] = "not a tensor"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=rf"state_dict entry '{key}' is a str, not a tensor"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "setting,value,match",
    [
        ("backbone", "", r"bad model config: backbone must be named"),
        ("backbone", None, r"bad model config: backbone must be a string, got None"),
        ("backbone", "nope", r"bad model config: .*nope"),
        ("pixel_std", [0.0, 0.0, 0.0], r"pixel_std must be positive numbers"),
        ("score_thresh", "x", r"score_thresh must be a finite number, got 'x'"),
        ("score_thresh", 2.0, r"score_thresh must be in \[0, 1\]"),
        ("rpn_nms_thresh", float("nan"), r"rpn_nms_thresh must be a finite number"),
        ("num_classes", True, r"num_classes must be an integer"),
        ("input_size", [128.5, 128], r"input_size must be 2 integers"),
        ("anchor_scales", [], r"anchor_scales must be positive numbers"),
    ],
)
def test_impossible_config_is_refused(tmp_path, tiny_detector, setting, value, match):
    path = save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES)
    payload = torch.load(path, weights_only=True)
    payload["config"][setting] = value
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content,match",
    [
        (b"hello, I am text", "not a readable lighthead-edge checkpoint"),
        (b"", "not a readable lighthead-edge checkpoint"),
    ],
)
def test_garbage_files(tmp_path, content, match):
    p = tmp_path / "bad.pt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(p)


def test_missing_truncated_and_foreign(tmp_path, tiny_detector):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(cut)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a lighthead-edge checkpoint"):
        load_checkpoint(foreign)


def test_checkpoint_of_another_architecture(tmp_path, tiny_detector):
    payload = torch.load(save_checkpoint(tmp_path / "m.pt", tiny_detector, CLASSES), weights_only=True)
    payload["config"]["backbone"] = "mobilenet_v2"  # weights of a tiny net under a mobilenet config
    torch.save(payload, tmp_path / "swapped.pt")
    with pytest.raises(CheckpointError, match="does not match the mobilenet_v2 architecture"):
        load_checkpoint(tmp_path / "swapped.pt")
    payload["config"]["backbone"] = "tiny"
    payload["config"]["head_size"] = "L"  # C_mid 256 against stored 64
    torch.save(payload, tmp_path / "head.pt")
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_checkpoint(tmp_path / "head.pt")


def test_pretrained_file_of_another_network(tmp_path):
    torch.save(build_backbone("tiny").state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(CheckpointError, match="does not fit backbone MobileNetV2Features"):
        build_backbone("mobilenet_v2", pretrained=tmp_path / "tiny.pth")


def test_stage_costs_match_the_formula():
    cfg = ModelConfig(num_classes=3, input_size=(256, 256))
    rows = {r.stage: r for r in stage_costs(build_detector(cfg))}
    h = w = 256 // 16
    cin, mid, out, k = 96, 64, 490, 15
    thin = 2 * h * w * (cin * mid * k + mid * out * k)
    assert rows["thin_map"].macs == pytest.approx(thin, rel=0.01)
    assert rows["rcnn_head"].macs == pytest.approx(300 * (490 * 2048 + 2048 * 4 + 2048 * 4), rel=0.01)
    assert set(rows) == {"backbone", "rpn", "thin_map", "rcnn_head"}


def test_compact_checkpoint_halves_the_weights_and_loads_as_float32(tmp_path, synth_set):
    """``save_compact`` (the checkpoints shipped under models/): big weights in float16, BN statistics and biases in
    float32, no training state; it loads into a float32 model whose detections match the original's."""
    from exported import CHECKPOINT

    from lighthead_edge.modeling.checkpoint import HALF_MIN_ELEMENTS, read_checkpoint, save_compact

    original, _, payload = load_checkpoint(CHECKPOINT)
    full = tmp_path / "full.pt"
    torch.save({**payload, "train_state": {"epoch": torch.tensor(3)}}, full)
    storage = save_compact(full, tmp_path / "compact.pt")
    stored = read_checkpoint(tmp_path / "compact.pt")
    assert "train_state" not in stored and stored["meta"]["storage"] == storage
    state = stored["state_dict"]
    halves = {k for k, v in state.items() if v.dtype == torch.float16}
    assert halves == {k for k, v in state.items() if v.is_floating_point() and v.numel() >= HALF_MIN_ELEMENTS}
    assert storage["float16"] == len(halves) > 0 and storage["float32"] == len(state) - len(halves)
    assert all(state[k].dtype == torch.float32 for k in state if k.endswith("running_var"))
    assert (tmp_path / "compact.pt").stat().st_size < 0.6 * CHECKPOINT.stat().st_size
    model, classes, _ = load_checkpoint(tmp_path / "compact.pt")
    assert all(p.dtype == torch.float32 for p in model.parameters()) and classes == list(payload["classes"])
    for k, v in model.state_dict().items():  # each weight is the original rounded to float16, nothing else
        torch.testing.assert_close(
            v, payload["state_dict"][k].half().float() if k in halves else payload["state_dict"][k]
        )
    from lighthead_edge.data.cocojson import image_paths

    image = cv2.imread(str(image_paths(synth_set["val"])[0]))[:, :, ::-1]  # a 128x128 scene, RGB
    x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        a, b = original(x)[0], model(x)[0]
    assert len(a["scores"]) >= 5
    torch.testing.assert_close(b["scores"][:20], a["scores"][:20], atol=2e-3, rtol=0)  # sorted by score
    from lighthead_edge.ops.boxes import box_iou

    assert bool((box_iou(a["boxes"][:5], b["boxes"]).max(dim=1).values > 0.98).all())  # the top 5 found again
