"""``lighthead-edge run``: the click command. Only click is imported here; the runtime is imported when it runs."""

from __future__ import annotations

import click

from lighthead_edge.cli_types import Finite

INDEX = click.IntRange(0, 2**31 - 1)
PIXELS = click.IntRange(1, 65535)
POSITIVE = Finite(0.0, min_open=True)
THREADS, NIREQ, SCORE = click.IntRange(1, 1024), click.IntRange(1, 64), Finite(0.0, 1.0)


class RawSize(click.ParamType):
    """``WxH`` (standard input) or ``WxH@PATH`` (a named pipe or file), each side 1..16384: a malformed size is a bad
    option value (exit 2), checked as the option is parsed; a good size that the stream then doesn't match is the
    source's error (exit 6)."""

    name = "WxH[@PATH]"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        from lighthead_edge.runtime.sources import SourceError, parse_raw_target

        try:
            width, height, path = parse_raw_target(str(value))
        except SourceError as exc:
            self.fail(str(exc).removeprefix("--stdin-raw "), param, ctx)
        return f"{width}x{height}" + (f"@{path}" if path else "")


@click.command("run")
@click.option("--model", default=None, help="Bundle folder [default: $LIGHTHEAD_EDGE_BUNDLE, else the one made last].")
@click.option("--camera", multiple=True, type=INDEX, help="Camera index (V4L2 / OpenCV); repeatable.")
@click.option("--width", default=None, type=PIXELS, help="Camera: requested frame width.")
@click.option("--height", default=None, type=PIXELS, help="Camera: requested frame height.")
@click.option("--fps", default=None, type=POSITIVE,
              help="Camera: requested rate; --stdin-raw: the nominal rate (for --save).")  # fmt: skip
@click.option(
    "--video", multiple=True, help="Video file (anything OpenCV decodes); every frame is processed; repeatable."
)
@click.option("--loop", is_flag=True, help="Video: start again at the end.")
@click.option("--url", multiple=True, help="Stream URL: rtsp://, http(s):// (e.g. MJPEG), file://; repeatable.")
@click.option("--images", multiple=True, type=click.Path(file_okay=False),
              help="Folder of images, in name order; repeatable.")  # fmt: skip
@click.option(
    "--sources",
    "source_list",
    default=None,
    type=click.Path(dir_okay=False),
    help="A file of sources, one per line (URL, video, image folder, camera index; # comments).",
)
@click.option("--stdin-raw", "stdin_raw", multiple=True, type=RawSize(), metavar="WxH[@FIFO]",
              help="Raw bgr24 frames of this size on stdin (ffmpeg -f rawvideo -pix_fmt bgr24 -, fdsink), or with "
                   "@FIFO from a named pipe or file; repeatable (one may read stdin).")  # fmt: skip
@click.option("--reconnect", is_flag=True, help="Camera/URL: reopen a dropped stream with exponential backoff.")
@click.option("--backend", type=click.Choice(["openvino", "onnxruntime"]), default=None,
              help="Inference engine [default: openvino if installed, else onnxruntime].")  # fmt: skip
@click.option("--device", default="CPU", show_default=True, help="Engine device (OpenVINO: CPU, GPU, ...).")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None,
              help="Which artifact of the bundle [default: fp32].")  # fmt: skip
@click.option("--threads", default=None, type=THREADS, help="Inference threads [default: the engine's].")
@click.option("--nireq", default=None, type=NIREQ, help="Inference requests in flight [default: max(2, engine's)].")
@click.option("--hint", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True)
@click.option("--drop/--no-drop", default=None,
              help="Keep only the newest frame [default: yes for camera/URL/stdin, no for files].")  # fmt: skip
@click.option(
    "--save",
    default=None,
    help="Annotated video (.mp4: mp4v, .avi: MJPG); several sources: a path with {source}, one each.",
)
@click.option("--jsonl", default=None, metavar="PATH|-",
              help="One JSON object per frame; '-' for stdout; several sources: lines carry \"source\", or a path "
                   "with {source} makes one file each.")  # fmt: skip
@click.option("--show", is_flag=True, help="Show a window, where a display exists.")
@click.option("--max-frames", default=None, type=click.IntRange(min=1), help="Stop after reading this many frames.")
@click.option("--duration", default=None, type=POSITIVE, help="Stop after this many seconds.")
@click.option(
    "--min-score", default=0.3, type=SCORE, show_default=True, help="Detections below this are not written or drawn."
)
@click.option(
    "--stats-every",
    default=5.0,
    type=Finite(0.0),
    show_default=True,
    help="Seconds between stats lines on stderr (0: none).",
)
@click.option("--summary-json", default=None, help="Also write the final summary as JSON here.")
@click.option("--verbose", is_flag=True, help="Let OpenCV/FFmpeg print their own warnings.")
def run_cmd(
    model: str | None, camera: tuple[int, ...], width: int | None, height: int | None, fps: float | None,
    video: tuple[str, ...], loop: bool, url: tuple[str, ...], images: tuple[str, ...], source_list: str | None,
    stdin_raw: tuple[str, ...], reconnect: bool,
    backend: str | None, device: str, precision: str | None, threads: int | None, nireq: int | None, hint: str,
    drop: bool | None, save: str | None, jsonl: str | None, show: bool, max_frames: int | None,
    duration: float | None, min_score: float, stats_every: float, summary_json: str | None, verbose: bool,
) -> None:  # fmt: skip
    """Run a bundle on cameras, streams, videos, image folders or raw stdin; write annotated videos and/or JSONL.

    Sources: --camera N, --video PATH, --url URL, --images DIR (each repeatable), --sources FILE, --stdin-raw
    WxH (stdin) or WxH@FIFO (repeatable).
    Several sources share one compiled model: the engine takes their newest frames in turn, each source has its own
    stats, and one that stalls or reconnects holds back no other. Stats go to stderr every few seconds and a summary
    at the end; SIGINT/SIGTERM finish the frames in flight and close the files.
    """
    from lighthead_edge.runtime.runner import RunSettings, read_source_list, run_video
    from lighthead_edge.runtime.sources import SourceKind, SourceSpec

    options = {"width": width, "height": height, "fps": fps, "loop": loop, "reconnect": reconnect}
    given = ((SourceKind.CAMERA, camera), (SourceKind.VIDEO, video), (SourceKind.URL, url),
             (SourceKind.IMAGES, images), (SourceKind.STDIN_RAW, stdin_raw))  # fmt: skip
    specs = [SourceSpec(kind, str(target), **options) for kind, targets in given for target in targets]
    errors: list[str] = []
    if source_list is not None:
        listed, errors = read_source_list(source_list, **options)
        specs += listed
    settings = RunSettings(
        sources=tuple(specs), source_errors=tuple(errors), model=model, backend=backend, device=device,
        threads=threads, precision=precision, nireq=nireq, hint=hint, drop=drop, save=save, jsonl=jsonl, show=show,
        max_frames=max_frames, duration=duration, min_score=min_score, stats_every=stats_every,
        summary_json=summary_json, verbose=verbose,
    )  # fmt: skip
    run_video(settings)
