"""The checkpoints that ship under models/ (issue 19): they are the files SHA256SUMS names, they load, the pruned one
is the smaller network, and the demo refuses a damaged copy with one line before doing any work."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch
from test_cli_errors import assert_one_line_error

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ("neon-mbv2-s.pt", "neon-mbv2-s-pruned.pt")


def test_sha256sums_name_the_shipped_files_and_match():
    listed = dict(reversed(line.split("  ")) for line in (MODELS / "SHA256SUMS").read_text().splitlines())
    assert sorted(listed) == sorted(SHIPPED)
    for name, digest in listed.items():
        assert hashlib.sha256((MODELS / name).read_bytes()).hexdigest() == digest, name
        assert digest in (MODELS / "README.md").read_text(), name
    assert sum((MODELS / n).stat().st_size for n in SHIPPED) <= 15e6  # the size cap, both files together


def test_shipped_models_load_and_the_pruned_one_is_smaller():
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.modeling.summary import stage_costs

    (full, classes, payload), (pruned, pruned_classes, pruned_payload) = (load_checkpoint(MODELS / n) for n in SHIPPED)
    assert classes == pruned_classes == ["Tree"]
    assert full.config.backbone == "mobilenet_v2" and full.config.head_size == "S"
    assert full.config.input_size == (512, 512)
    for p in (payload, pruned_payload):  # the settings that made them travel with them
        assert p["meta"]["storage"]["float16"] > 0 and "train_state" not in p
        assert " --augment aerial " in p["train"]["command"] and p["train"]["settings"]["augment"] == "aerial"
    assert pruned_payload["meta"]["pruned"] and not payload["meta"].get("pruned")
    macs = {n: sum(r.macs for r in stage_costs(m)) for n, m in (("full", full), ("pruned", pruned))}
    assert macs["pruned"] < 0.8 * macs["full"]
    x = torch.zeros(1, 3, 512, 512)
    with torch.no_grad():  # float32 compute from the float16-stored weights
        assert all(p.dtype == torch.float32 for p in full.parameters())
        out = full(x)[0]
    assert out["boxes"].shape[1] == 4 and torch.isfinite(out["boxes"]).all()


def test_demo_refuses_a_damaged_model_before_any_work(cli, tmp_path):
    damaged = tmp_path / "models"
    damaged.mkdir()
    shutil.copy(MODELS / "SHA256SUMS", damaged / "SHA256SUMS")
    data = bytearray((MODELS / SHIPPED[0]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / SHIPPED[0]).write_bytes(bytes(data))
    code, _, err = cli("demo", "--model", damaged / SHIPPED[0], "--out", tmp_path / "demo")
    assert_one_line_error(code, err, "does not match its sha256")
    assert not (tmp_path / "demo").exists()
    code, _, err = cli("demo", "--model", tmp_path / "none.pt", "--out", tmp_path / "demo")
    assert_one_line_error(code, err, "model not found")
    code, _, err = cli("demo", "--model", damaged / SHIPPED[0], "--fine-tune", "--out", tmp_path / "demo")
    assert_one_line_error(code, err, "give --model or --fine-tune, not both")
    assert not (tmp_path / "demo").exists()
