"""Regenerate ``tiny_synth_128.pt``, the small trained detector the export and runtime tests share.

    .venv/bin/python tests/export/data/make_tiny.py [--iters 150]

It is committed rather than trained in a fixture because even this small model needs a few minutes of CPU to give
confident, well-separated scores (parity is only meaningful on real detections), and the test suite has a budget of
about three minutes. A tiny backbone at 128x128 with a narrow RPN, k = 7 and fc-256 keeps the file near 3 MB; the
thin map keeps the paper's alpha = 10, p = 7 (490 channels), so PS-RoIAlign runs at its real shape.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from lighthead_edge.config import LossSettings, ModelConfig, TrainConfig
from lighthead_edge.data.synth import generate_dataset
from lighthead_edge.train import train

HERE = Path(__file__).parent
CHECKPOINT = HERE / "tiny_synth_128.pt"
SIZE = 128
MODEL_CONFIG = ModelConfig(
    backbone="tiny", input_size=(SIZE, SIZE), rpn_channels=64, kernel_size=7, fc_dim=256,
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=128, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(tmp, 96, 16, size=(SIZE, SIZE), seed=0, progress=False)
        tcfg = TrainConfig(
            iters=args.iters, batch_size=4, optimizer="adamw", lr=1e-3, warmup_iters=20, threads=args.threads,
            losses=LossSettings(roi_batch_size=64, rpn_batch_size=128),
        )  # fmt: skip
        result = train(
            train_json=data["train"], val_json=data["val"], out=Path(tmp) / "model.pt", model_config=MODEL_CONFIG,
            train_config=tcfg, progress_bar=False,
        )  # fmt: skip
        shutil.move(Path(tmp) / "model.pt", CHECKPOINT)  # /tmp may be another file system
    print(f"wrote {CHECKPOINT} ({result.best_metrics.get('AP', float('nan')):.3f} AP on its val split)")


if __name__ == "__main__":
    main()
