"""Bad input gets one line on stderr and a non-zero exit, never a traceback."""

import json
import re

import pytest


def assert_one_line_error(code, err, match):
    assert code not in (0, None)
    assert "Traceback" not in err
    # progress bars redraw with \r and clear themselves; what stays on screen is the error line
    lines = [line for line in re.split(r"[\r\n]", err) if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and match in lines[0], err


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_detector):
    from lighthead_edge.modeling.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", tiny_detector, ["a", "b", "c", "d"])


def test_missing_checkpoint(cli, tmp_path):
    code, _, err = cli("info", tmp_path / "none.pt")
    assert_one_line_error(code, err, "checkpoint not found")


def test_corrupted_checkpoint(cli, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    code, _, err = cli("eval", bad, "--data", tmp_path / "x.json")
    assert_one_line_error(code, err, "not a readable lighthead-edge checkpoint")


def test_missing_data_file(cli, tmp_path, checkpoint):
    code, _, err = cli("eval", checkpoint, "--data", tmp_path / "missing.json")
    assert_one_line_error(code, err, "missing.json")


def test_non_coco_json(cli, tmp_path, checkpoint):
    p = tmp_path / "list.json"
    p.write_text(json.dumps({"hello": [1, 2, 3]}))
    code, _, err = cli("eval", checkpoint, "--data", p)
    assert_one_line_error(code, err, "list.json")


def test_empty_dataset(cli, tmp_path):
    p = tmp_path / "empty.json"
    p.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    code, _, err = cli("train", "--data", p, "--backbone", "tiny", "--out", tmp_path / "m.pt")
    assert_one_line_error(code, err, "empty.json")
    assert not (tmp_path / "m.pt").exists()


def test_undecodable_image(cli, tmp_path, checkpoint):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    coco = {
        "images": [{"id": 1, "file_name": "broken.jpg", "width": 64, "height": 64}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}, {"id": 4, "name": "d"}],
    }
    (tmp_path / "val.json").write_text(json.dumps(coco))
    code, _, err = cli("eval", checkpoint, "--data", tmp_path / "val.json")
    assert_one_line_error(code, err, "broken.jpg")


def test_checkpoint_of_another_architecture(cli, tmp_path, checkpoint):
    import torch

    payload = torch.load(checkpoint, weights_only=True)
    payload["config"]["backbone"] = "mobilenet_v2"
    torch.save(payload, tmp_path / "other.pt")
    code, _, err = cli("info", tmp_path / "other.pt")
    assert_one_line_error(code, err, "does not match the mobilenet_v2 architecture")


def test_class_mismatch_on_fine_tune(cli, tmp_path, checkpoint, synth_set):
    # synthetic classes are circle/square/... but the checkpoint says a/b/c/d
    code, _, err = cli(
        "train",
        "--data",
        synth_set["train"],
        "--init",
        checkpoint,
        "--iters",
        1,
        "--out",
        tmp_path / "ft.pt",
    )
    assert_one_line_error(code, err, "has classes")


def test_unknown_backbone(cli, tmp_path, synth_set):
    code, _, err = cli("train", "--data", synth_set["train"], "--backbone", "vgg", "--out", tmp_path / "m.pt")
    assert_one_line_error(code, err, "unknown backbone 'vgg'")


def test_info_prints_stage_costs(cli, checkpoint):
    code, out, _ = cli("info", checkpoint)
    assert code == 0
    for stage in ("backbone", "rpn", "thin_map", "rcnn_head", "total"):
        assert stage in out
