"""``lighthead-edge serve``: the click command. Only click is imported here; the runtime (and pyzmq) when it runs."""

from __future__ import annotations

import click

from lighthead_edge.cli_types import Finite

THREADS, SCORE = click.IntRange(1, 1024), Finite(0.0, 1.0)


@click.command("serve")
@click.option("--model", default=None, help="Bundle folder [default: $LIGHTHEAD_EDGE_BUNDLE, else the one made last].")
@click.option("--frigate", "endpoint", required=True, metavar="ENDPOINT",
              help="Serve as Frigate NVR's ZMQ detector on this endpoint: ipc://PATH (Frigate's default is "
                   "ipc:///tmp/cache/zmq_detector) or tcp://HOST:PORT.")  # fmt: skip
@click.option("--backend", type=click.Choice(["openvino", "onnxruntime"]), default=None,
              help="Inference engine [default: openvino if installed, else onnxruntime].")  # fmt: skip
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Which artifact of the bundle [default: fp32].")  # fmt: skip
@click.option("--threads", default=None, type=THREADS, help="Inference threads [default: the engine's].")
@click.option("--min-score", default=0.3, type=SCORE, show_default=True, help="Detections below this are not sent.")
@click.option("--labelmap", default=None, metavar="PATH",
              help="Write Frigate's labelmap here ('0 NAME' lines), for its model.labelmap_path.")  # fmt: skip
@click.option("--input-pixel-format", "pixel_format", type=click.Choice(["bgr", "rgb"]), default="bgr",
              show_default=True, help="Frigate's model.input_pixel_format (its requests do not say).")  # fmt: skip
@click.option("--input-dtype", type=click.Choice(["int", "float", "float_denorm"]), default="int",
              show_default=True, help="Frigate's model.input_dtype (uint8, float32 0..1, float32 0..255).")  # fmt: skip
@click.option("--max-requests", default=None, type=click.IntRange(min=1),
              help="Stop after answering this many requests (model checks and bad ones included).")  # fmt: skip
@click.option("--stats-every", default=30.0, type=Finite(0.0), show_default=True,
              help="Seconds between stats lines on stderr (0: only the last one).")  # fmt: skip
def serve_cmd(
    model: str | None, endpoint: str, backend: str | None, precision: str | None, threads: int | None,
    min_score: float, labelmap: str | None, pixel_format: str, input_dtype: str, max_requests: int | None,
    stats_every: float,
) -> None:  # fmt: skip
    """Serve a bundle to Frigate NVR as its ZMQ detector (detectors: {NAME: {type: zmq, endpoint: ENDPOINT}}).

    Frigate sends each region at its model.width x model.height; the bundle letterboxes it to its own input and
    replies with Frigate's [20, 6] rows (class id = labelmap line, score, normalised y_min x_min y_max x_max).
    Stats go to stderr; SIGINT/SIGTERM finish the request in hand, close the socket and remove the ipc socket file.
    """
    from lighthead_edge.runtime.frigate import InputDType, PixelFormat, ServeSettings, serve_frigate

    settings = ServeSettings(
        frigate=endpoint, model=model, backend=backend, precision=precision, threads=threads, min_score=min_score,
        labelmap=labelmap, pixel_format=PixelFormat(pixel_format), input_dtype=InputDType(input_dtype),
        max_requests=max_requests, stats_every=stats_every,
    )  # fmt: skip
    serve_frigate(settings)
