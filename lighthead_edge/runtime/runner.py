"""``lighthead-edge run``: a bundle on a camera, stream, video, image folder or raw stdin, with outputs, a periodic
stats line, a final summary and clean shutdown on SIGINT/SIGTERM. numpy + OpenCV + one engine; never torch.

The bundle is ``--model``, or else the one made last: ``$LIGHTHEAD_EDGE_BUNDLE`` if set, otherwise the path that
:func:`remember_bundle` stored in ``$XDG_CACHE_HOME/lighthead-edge/last_bundle`` (``~/.cache/...``). ``export``,
``quantize`` and the demo call :func:`remember_bundle` with what they wrote.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.bundle import BundleError
from lighthead_edge.runtime.sources import IMAGE_SUFFIXES, SourceKind, SourceSpec, open_source, quiet_opencv
from lighthead_edge.runtime.stats import Summary

Log = Callable[[str], None]
BUNDLE_ENV = "LIGHTHEAD_EDGE_BUNDLE"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- last bundle
def _pointer_file() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "lighthead-edge" / "last_bundle"


def remember_bundle(path: str | Path) -> None:
    """Make ``path`` the bundle that ``lighthead-edge run`` uses without ``--model`` (written atomically; an
    unwritable cache folder only costs the convenience, so it is ignored)."""
    from lighthead_edge.runtime.outputs import OutputError, write_atomic

    with suppress(OutputError):
        write_atomic(_pointer_file(), str(Path(path).resolve()) + "\n", "the last-bundle pointer")


def last_bundle() -> Path | None:
    """``$LIGHTHEAD_EDGE_BUNDLE``, else the remembered bundle, else None."""
    if os.environ.get(BUNDLE_ENV):
        return Path(os.environ[BUNDLE_ENV])
    try:
        text = _pointer_file().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text) if text else None


def resolve_bundle(model: str | Path | None) -> Path:
    """``model``, or the last bundle; a one-line :class:`BundleError` when there is none."""
    if model:
        return Path(model)
    found = last_bundle()
    if found is None:
        raise BundleError(
            "no --model given and no bundle made yet; pass --model BUNDLE (a folder written by `lighthead-edge "
            f"export`), set {BUNDLE_ENV}, or run `lighthead-edge demo` first"
        )
    if not found.is_dir():
        raise BundleError(f"the last bundle {found} no longer exists; pass --model BUNDLE")
    return found


# ------------------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class RunSettings:
    """Everything ``lighthead-edge run`` takes (see its ``--help``)."""

    source: SourceSpec
    model: str | None = None
    backend: str | None = None  # None: OpenVINO if installed, else ONNX Runtime
    device: str = "CPU"
    threads: int | None = None
    precision: str | None = None
    nireq: int | None = None
    hint: str = "latency"
    drop: bool | None = None  # None: drop stale frames of live sources only
    save: str | None = None
    jsonl: str | None = None
    show: bool = False
    max_frames: int | None = None
    duration: float | None = None
    min_score: float = 0.3
    stats_every: float = 5.0
    summary_json: str | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.duration is not None and self.duration <= 0:
            raise ConfigError("--duration must be > 0 seconds")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be >= 1")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError("--min-score must be in [0, 1]")


# -------------------------------------------------------------------------------------------------------- signals
@contextmanager
def graceful_signals(stop: Callable[[str], None], log: Log) -> Iterator[None]:
    """SIGINT/SIGTERM call ``stop(name)`` once (the run then finishes its frames in flight and closes its files); a
    second SIGINT interrupts at once. Only the main thread can install handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[str] = []

    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if seen and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not seen:
            seen.append(name)
            log(f"{name}: finishing the frames in flight (Ctrl-C again to abort)")
            # stop() takes locks: run it on a thread, never inside the handler on a thread that may hold them
            threading.Thread(target=stop, args=(name,), daemon=True).start()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _StatsPrinter:
    """Writes the stats line every ``every`` seconds from its own thread, so it keeps coming while a stream is down."""

    def __init__(self, line: Callable[[], str], every: float, log: Log) -> None:
        self._line, self._every, self._log = line, every, log
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lighthead-stats", daemon=True)

    def _loop(self) -> None:
        while not self._done.wait(self._every):
            self._log(self._line())

    def __enter__(self) -> _StatsPrinter:
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


class _Stopper:
    """Holds a stop request that may come (from a signal) before the pipeline exists."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self.pipeline: Any = None

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        if self.pipeline is not None:
            self.pipeline.stop(reason)

    def attach(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        if self.reason:
            pipeline.stop(self.reason)


# --------------------------------------------------------------------------------------------------------- paths
def _identity(path: Path) -> set[object]:
    """What makes two paths one file: the resolved path, and the device and inode of a file that exists."""
    keys: set[object] = {str(path.resolve())}
    try:
        stat = path.stat()
        keys.add((stat.st_dev, stat.st_ino))
    except OSError:
        pass
    return keys


def _inputs(spec: SourceSpec, bundle: Path) -> Iterator[tuple[str, Path]]:
    """(what it is, path) of every file the run reads."""
    if spec.kind is SourceKind.VIDEO:
        yield "the --video input", Path(spec.target)
    elif spec.kind is SourceKind.URL and urlsplit(spec.target).scheme.lower() == "file":
        yield "the --url input", Path(url2pathname(urlsplit(spec.target).path))
    elif spec.kind is SourceKind.IMAGES and Path(spec.target).is_dir():
        for file in Path(spec.target).iterdir():
            if file.suffix.lower() in IMAGE_SUFFIXES:
                yield "an --images input", file
    if bundle.is_dir():
        for file in bundle.rglob("*"):
            yield f"a file of the bundle {bundle}", file


def check_paths(settings: RunSettings, bundle: Path) -> None:
    """Before anything is opened: no output is an input (the video, an image, a bundle file) or another output (a
    one-line :class:`ConfigError` naming both), and each output can be written (:class:`OutputError`)."""
    from lighthead_edge.runtime.outputs import check_writable

    outputs = [(option, Path(path)) for option, path in
               (("--save", settings.save), ("--jsonl", settings.jsonl), ("--summary-json", settings.summary_json))
               if path and path != "-"]  # fmt: skip
    if not outputs:
        return
    taken: dict[object, str] = {}
    for name, path in _inputs(settings.source, bundle):
        taken.update(dict.fromkeys(_identity(path), f"{name} {path}"))
    for option, path in outputs:
        keys = _identity(path)
        clash = next((taken[key] for key in keys if key in taken), None)
        if clash is not None:
            raise ConfigError(f"{option} {path} is {clash}; an input is never an output: write it elsewhere")
        taken.update(dict.fromkeys(keys, f"also the {option} output"))
    for option, path in outputs:
        check_writable(path, option, file_only=option == "--save")  # a video needs a file (seeks, one rename)


# ----------------------------------------------------------------------------------------------------------- run
class _Outputs:
    """The sinks that ``settings`` asks for. Opened only once the source is open and the bundle loaded, so a failed
    start leaves every old output as it was; leaving the ``with`` finalizes them (the first failure is raised)."""

    def __init__(self, settings: RunSettings, fps: float | None, log: Log) -> None:
        from lighthead_edge.runtime.outputs import DisplaySink, JsonlSink, VideoSink

        self.min_score = settings.min_score
        self.video = VideoSink(settings.save, fps or settings.source.fps or 25.0) if settings.save else None
        self.jsonl = JsonlSink(settings.jsonl) if settings.jsonl else None  # last: the one that truncates a file
        self.display = DisplaySink() if settings.show else None
        if self.display is not None and not self.display.available:
            log(f"warning: --show ignored: {self.display.reason}")
            self.display = None

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        from lighthead_edge.runtime.outputs import OutputError

        errors = []
        for sink in (self.video, self.jsonl, self.display):
            try:
                if sink is not None:
                    sink.close()
            except OutputError as error:
                errors.append(error)
        if errors and exc_type is None:  # an error already on its way is the one reported
            raise errors[0]

    def write(self, result: Any, pipeline: Any) -> None:
        """JSONL, then one annotated copy of the frame for the video and the window."""
        from lighthead_edge.runtime.draw import draw_detections
        from lighthead_edge.runtime.outputs import OutputClosed, detections_record

        frame, dets, meta = result
        if self.jsonl is not None:
            try:
                self.jsonl.write(detections_record(meta.index, meta.timestamp, frame.shape[:2], dets, self.min_score))
            except OutputClosed:
                self.jsonl = None
                pipeline.stop("jsonl reader closed")
        if self.video is None and self.display is None:
            return
        annotated = draw_detections(frame, dets.boxes, dets.scores, dets.labels, dets.class_names,
                                    min_score=self.min_score)  # fmt: skip
        if self.video is not None:
            self.video.write(annotated)
        if self.display is not None and not self.display.show(annotated):
            pipeline.stop("window closed")


def _describe(settings: RunSettings, bundle: Path, detector: Any, pipeline: Any) -> dict[str, Any]:
    return {
        "bundle": str(bundle), "artifact": detector.artifact.key, "device": settings.device,
        "threads": settings.threads, "nireq": pipeline.nireq, "hint": settings.hint, "source": pipeline.source.name,
        "drop_stale_frames": pipeline.drop, "source_spec": {k: v for k, v in asdict(settings.source).items()},
    }  # fmt: skip


def _log_start(log: Log, bundle: Path, detector: Any, pipeline: Any) -> None:
    log(f"running {bundle} ({detector.artifact.key}, nireq {pipeline.nireq}) on {pipeline.source.name}"
        + (" (newest frame first; stale frames dropped)" if pipeline.drop else ""))  # fmt: skip


def run_video(
    settings: RunSettings, *, log: Log = _stderr, on_frame: Callable[[Any, Any], None] | None = None
) -> Summary:
    """Run ``settings`` to the end of the source, a limit or a signal; log the summary and return it.

    ``on_frame(result, pipeline)`` is called after each frame's outputs are written (monitoring, soak tests).
    """
    from lighthead_edge.runtime.detector import Detector
    from lighthead_edge.runtime.outputs import write_atomic
    from lighthead_edge.runtime.pipeline import Pipeline

    if not settings.verbose:
        quiet_opencv()
    bundle = resolve_bundle(settings.model)
    check_paths(settings, bundle)  # an input named as an output, or an unwritable path: before anything opens
    stopper = _Stopper()
    with graceful_signals(stopper.stop, log):
        source = open_source(settings.source, log=log)
        try:
            source.open()
            detector = Detector(bundle, settings.backend, settings.device, settings.threads, settings.precision,
                                hint=settings.hint, jobs=settings.nireq)  # fmt: skip
            pipeline = Pipeline(detector, source, nireq=settings.nireq, drop=settings.drop,
                                max_frames=settings.max_frames, duration=settings.duration)  # fmt: skip
        except BaseException:
            source.close()
            raise
        try:
            pipeline.start()
            stopper.attach(pipeline)
            with _Outputs(settings, pipeline.source.fps, log) as outputs:  # only now: the inputs and bundle work
                _log_start(log, bundle, detector, pipeline)
                with _StatsPrinter(pipeline.stats.window_line, settings.stats_every, log):
                    for result in pipeline:
                        start = time.perf_counter()
                        outputs.write(result, pipeline)
                        pipeline.stats.add_output((time.perf_counter() - start) * 1000.0)
                        if on_frame is not None:
                            on_frame(result, pipeline)
        finally:
            pipeline.close()
    summary = pipeline.summary(settings=_describe(settings, bundle, detector, pipeline))
    if settings.summary_json:  # before the summary is logged: a failure (e.g. /dev/full) is the one line after start
        write_atomic(settings.summary_json, json.dumps(summary.to_dict(), indent=2), "--summary-json")
    log(summary.format())
    return summary
