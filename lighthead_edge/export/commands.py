"""``lighthead-edge export``: the click command. Only click is imported here; the work is imported when it runs."""

from __future__ import annotations

from pathlib import Path

import click

from lighthead_edge.cli_types import FRAME_SIZE


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Bundle folder to write (replaced whole).")
@click.option("--format", "formats", default="onnx,openvino", show_default=True,
              help="Comma-separated: onnx (onnxruntime, FP32) and/or openvino (IR FP32 + FP16).")  # fmt: skip
@click.option("--val", "val_json", default=None, help="COCO json: measure AP of torch and of every artifact.")
@click.option("--method", type=click.Choice(["auto", "grid_sample", "gather"]), default="auto", show_default=True,
              help="PS-RoIAlign decomposition; auto picks the faster one per backend.")  # fmt: skip
@click.option("--opset", default=17, show_default=True, type=click.IntRange(17, 20), help="ONNX opset (17 to 20).")
@click.option("--threads", default=None, type=click.IntRange(1, 1024),
              help="Threads for the latency measurement [default: engine's].")  # fmt: skip
@click.option("--frame-size", default=None, type=FRAME_SIZE,
              help="Camera frame size: the graph takes these frames as they are, letterboxes them itself and gives "
                   "boxes in frame pixels (e.g. 1280x720).")  # fmt: skip
@click.option("--layout", type=click.Choice(["native", "detection_output"]), default="native", show_default=True,
              help="detection_output: also write model_detection_output_*.xml, one [1,1,N,7] output and rt_info "
                   "model_info, for DL Streamer's gvadetect and OpenVINO model_api.")  # fmt: skip
@click.option("--ovms", default=None, type=click.Path(file_okay=False),
              help="Also write an OpenVINO Model Server model repository here (DIR/<name>/1/model.xml|.bin, "
                   "DIR/config.json).")  # fmt: skip
@click.option("--ovms-name", default="lighthead", show_default=True, help="Model name OVMS serves (with --ovms).")
@click.option("--rois", default=None, type=click.IntRange(1, 100_000),
              help="Post-NMS RoI slots of the graph (the R-CNN head runs on all of them) [default: the checkpoint's "
                   "rpn_post_nms_top_n_test]; more than the pre-NMS candidates is clipped.")  # fmt: skip
@click.option("--runs", "latency_runs", default=10, show_default=True, type=click.IntRange(1, 100_000),
              help="Timed runs per artifact.")  # fmt: skip
def export_cmd(
    checkpoint: str, out: str, formats: str, val_json: str | None, method: str, opset: int, threads: int | None,
    latency_runs: int, frame_size: tuple[int, int] | None, layout: str, ovms: str | None, ovms_name: str,
    rois: int | None,
) -> None:  # fmt: skip
    """Export CHECKPOINT (a model.pt) to a bundle: ONNX and/or OpenVINO artifacts plus manifest.json.

    The bundle is written atomically: an interrupted export leaves no bundle, and an existing one at --out is only
    replaced once the new one is complete.
    """
    from lighthead_edge.export.bundle import ExportSettings, check_target, export_bundle, parse_formats
    from lighthead_edge.export.handoff import check_ovms_target
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.runtime.runner import remember_bundle

    settings = ExportSettings(
        formats=parse_formats(formats), method=method, opset=opset, val_json=val_json, latency_runs=latency_runs,
        threads=threads, frame_size=frame_size, layout=layout, ovms=ovms, ovms_name=ovms_name, rois=rois,
    )  # fmt: skip
    check_target(Path(out), {"CHECKPOINT": checkpoint, "--val": val_json})  # before the model loads: fails at once
    check_ovms_target(ovms, out)

    def log(message: str) -> None:
        click.echo(message, err=True)

    model, class_names, _ = load_checkpoint(checkpoint)  # a bad checkpoint is the only line on stderr
    log(f"loaded {checkpoint}: {model.config.backbone}-{model.config.head_size}, classes {class_names}")
    bundle = export_bundle(model, class_names, out, settings, source=checkpoint, log=log)
    remember_bundle(bundle)  # `lighthead-edge run` without --model now runs this bundle
