"""``lighthead-edge run``: a bundle on a camera, stream, video, image folder or raw stdin, with outputs, a periodic
stats line, a final summary and clean shutdown on SIGINT/SIGTERM. numpy + OpenCV + one engine; never torch.

The bundle is ``--model``, or else the one made last: ``$LIGHTHEAD_EDGE_BUNDLE`` if set, otherwise the path that
:func:`remember_bundle` stored in ``$XDG_CACHE_HOME/lighthead-edge/last_bundle`` (``~/.cache/...``). ``export``,
``quantize`` and the demo call :func:`remember_bundle` with what they wrote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from lighthead_edge.errors import ConfigError
from lighthead_edge.runtime.bundle import BundleError
from lighthead_edge.runtime.sources import IMAGE_SUFFIXES, SourceKind, SourceSpec, open_source, quiet_opencv, redact
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
    """Everything ``lighthead-edge run`` takes (see its ``--help``).

    ``source`` is the source of a single-source run; ``sources`` all of them (either sets the other). With several
    sources, ``--save`` needs :data:`SOURCE_PATTERN` in its path (one video per source), and ``--jsonl`` gets one
    file per source with it, or else one file whose lines carry ``"source"``. ``source_errors`` are the lines of a
    ``--sources`` list that named no usable source (each a message; counted in the summary's ``failed``).
    """

    source: SourceSpec | None = None
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
    sources: tuple[SourceSpec, ...] = ()
    source_errors: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.source is not None and not self.sources:
            object.__setattr__(self, "sources", (self.source,))
        if self.source is None and self.sources:
            object.__setattr__(self, "source", self.sources[0])
        if not self.sources:
            raise ConfigError(
                "no usable source"
                + (
                    f": {'; '.join(self.source_errors)}"
                    if self.source_errors
                    else "; give --camera N, --video PATH, --url URL, --images DIR, --stdin-raw WxH or --sources"
                )
            )
        if sum(s.kind is SourceKind.STDIN_RAW and "@" not in s.target for s in self.sources) > 1:
            raise ConfigError("only one --stdin-raw source can read standard input; give the others as WxH@FIFO")
        if len(self.sources) > 1 and self.save and SOURCE_PATTERN not in self.save:
            raise ConfigError(f"--save with {len(self.sources)} sources needs {SOURCE_PATTERN} in its path, one video "
                              f"per source, e.g. out_{SOURCE_PATTERN}.mp4")  # fmt: skip
        if self.duration is not None and self.duration <= 0:
            raise ConfigError("--duration must be > 0 seconds")
        if self.threads is not None and self.threads < 1:
            raise ConfigError("--threads must be >= 1")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError("--min-score must be in [0, 1]")

    @property
    def names(self) -> list[str]:
        """Each source's name (:func:`source_names`)."""
        return source_names(self.sources)


SOURCE_PATTERN = "{source}"
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "file", "udp", "tcp", "srt")


def source_names(specs: Sequence[SourceSpec]) -> list[str]:
    """A short name per source, for results (``"source"`` in JSONL), stats and :data:`SOURCE_PATTERN` in output
    paths: ``camera0``, a file's or folder's stem, a URL's last path part (else its host), ``stdin``; letters,
    digits, ``-`` and ``_`` only, made unique with ``-2``, ``-3``, ..."""
    names: list[str] = []
    for spec in specs:
        if spec.kind is SourceKind.CAMERA:
            base = f"camera{spec.target}"
        elif spec.kind is SourceKind.URL:
            parts = urlsplit(spec.target)
            base = Path(parts.path).stem or (parts.hostname or "stream")
        elif spec.kind is SourceKind.STDIN_RAW:
            base = Path(spec.target.partition("@")[2]).stem or "stdin"
        else:
            base = Path(spec.target).stem or "source"
        base = re.sub(r"[^A-Za-z0-9_-]+", "_", base).strip("_") or "source"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def read_source_list(path: str | Path, **options: Any) -> tuple[list[SourceSpec], list[str]]:
    """The sources of a ``--sources`` file, one per line (a URL, a video file, an image folder, a camera index;
    blank lines and ``#`` comments are skipped) -> (specs, one message per line that names no usable source).

    A line is refused when its URL scheme is not a stream's (:data:`STREAM_SCHEMES`) or its file or folder does not
    exist; ``options`` (``reconnect``, ``loop``, ``width``, ...) apply to every line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"can't read --sources {path}: {getattr(exc, 'strerror', None) or exc}") from None
    specs, errors = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"--sources {path} line {number}"
        if "://" in line:
            scheme = line.split("://", 1)[0].lower()
            if scheme not in STREAM_SCHEMES:
                errors.append(f"{where}: {redact(line)!r} is no stream URL (schemes: {', '.join(STREAM_SCHEMES)})")
                continue
        elif not line.isdigit() and not Path(line).exists():
            errors.append(f"{where}: {line!r} is no camera index, URL, video file or image folder (not found)")
            continue
        specs.append(SourceSpec.guess(line, **options))
    return specs, errors


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


def expand(path: str, name: str) -> str:
    """An output path for the source ``name``: :data:`SOURCE_PATTERN` replaced by it."""
    return path.replace(SOURCE_PATTERN, name)


def _outputs(settings: RunSettings) -> list[tuple[str, Path]]:
    """(option, path) of every file the run writes (one per source where the path has :data:`SOURCE_PATTERN`)."""
    found = []
    for option, path in (("--save", settings.save), ("--jsonl", settings.jsonl),
                         ("--summary-json", settings.summary_json)):  # fmt: skip
        if not path or path == "-":
            continue
        paths = dict.fromkeys(expand(path, name) for name in settings.names) if option != "--summary-json" else [path]
        found += [(option, Path(p)) for p in paths]
    return found


def check_paths(settings: RunSettings, bundle: Path) -> None:
    """Before anything is opened: no output is an input (the video, an image, a bundle file) or another output (a
    one-line :class:`ConfigError` naming both), and each output can be written (:class:`OutputError`)."""
    from lighthead_edge.runtime.outputs import check_writable

    outputs = _outputs(settings)
    if not outputs:
        return
    taken: dict[object, str] = {}
    for spec in settings.sources:
        for name, path in _inputs(spec, bundle):
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
    """The sinks that ``settings`` asks for, per source. Opened only once the sources are open and the bundle
    loaded, so a failed start leaves every old output as it was; leaving the ``with`` finalizes them (the first
    failure is raised)."""

    def __init__(self, settings: RunSettings, streams: Sequence[tuple[str, float | None]], log: Log) -> None:
        from lighthead_edge.runtime.outputs import DisplaySink, JsonlSink, VideoSink

        self.min_score = settings.min_score
        self.several = len(streams) > 1 or len(settings.sources) > 1
        fallback = settings.source.fps or 25.0
        self.videos = {name: VideoSink(expand(settings.save, name), fps or fallback)
                       for name, fps in streams} if settings.save else {}  # fmt: skip
        self.jsonl: dict[str | None, Any] = {}  # last: the one that truncates a file; None: one file for all
        if settings.jsonl and SOURCE_PATTERN in settings.jsonl:
            self.jsonl = {name: JsonlSink(expand(settings.jsonl, name)) for name, _ in streams}
        elif settings.jsonl:
            self.jsonl = {None: JsonlSink(settings.jsonl)}
        self.displays: dict[str, Any] = {}
        if settings.show:
            for name, _ in streams:
                display = DisplaySink(name if self.several else None)
                if not display.available:
                    log(f"warning: --show ignored: {display.reason}")
                    break
                self.displays[name] = display

    def __enter__(self) -> _Outputs:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        from lighthead_edge.runtime.outputs import OutputError

        errors = []
        for sink in (*self.videos.values(), *self.jsonl.values(), *self.displays.values()):
            try:
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
        key = meta.source if meta.source in self.jsonl else None
        sink = self.jsonl.get(key)
        if sink is not None:
            record = detections_record(meta.index, meta.timestamp, frame.shape[:2], dets, self.min_score,
                                       source=meta.source if self.several else None)  # fmt: skip
            try:
                sink.write(record)
            except OutputClosed:
                del self.jsonl[key]
                pipeline.stop("jsonl reader closed")
        video, display = self.videos.get(meta.source), self.displays.get(meta.source)
        if video is None and display is None:
            return
        annotated = draw_detections(frame, dets.boxes, dets.scores, dets.labels, dets.class_names,
                                    min_score=self.min_score)  # fmt: skip
        if video is not None:
            video.write(annotated)
        if display is not None and not display.show(annotated):
            pipeline.stop("window closed")


def _describe(settings: RunSettings, bundle: Path, detector: Any, pipeline: Any) -> dict[str, Any]:
    described = {
        "bundle": str(bundle), "artifact": detector.artifact.key, "device": settings.device,
        "threads": settings.threads, "nireq": pipeline.nireq, "hint": settings.hint, "source": pipeline.source.name,
        "drop_stale_frames": pipeline.drop, "source_spec": _spec_record(settings.source),
    }  # fmt: skip
    if len(settings.sources) > 1:
        described["sources"] = {
            name: {"source": src.name, **_spec_record(spec)}
            for name, spec, src in zip(settings.names, settings.sources, _opened(pipeline, settings), strict=True)
        }
    return described


def _spec_record(spec: SourceSpec) -> dict[str, Any]:
    """A source spec for the summary, a URL's password replaced by ``***`` (:func:`redact`)."""
    record = asdict(spec)
    if spec.kind is SourceKind.URL:
        record["target"] = redact(spec.target)
    return record


def _opened(pipeline: Any, settings: RunSettings) -> list[Any]:
    """Per source of ``settings``: its Source in the pipeline, or a stand-in naming it when it failed to open."""
    by_name = {stream.name: stream.source for stream in pipeline.streams}
    return [by_name.get(name) or _Named(name) for name in settings.names]


@dataclass(frozen=True)
class _Named:
    name: str


def _log_start(log: Log, bundle: Path, detector: Any, pipeline: Any) -> None:
    where = (
        pipeline.source.name
        if len(pipeline.streams) == 1
        else f"{len(pipeline.streams)} sources: " + ", ".join(f"{s.name} ({s.source.name})" for s in pipeline.streams)
    )
    log(f"running {bundle} ({detector.artifact.key}, nireq {pipeline.nireq}) on {where}"
        + (" (newest frame first; stale frames dropped)" if pipeline.drop else ""))  # fmt: skip


def _open_sources(settings: RunSettings, log: Log) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """Open every source at once (a stream that takes its full timeout holds back no other) -> ([(name, open
    source)], {name: why it failed}). One source that fails raises its :class:`SourceError`; of several, a failure
    is a warning and the run goes on with the rest, unless none opened."""
    from concurrent.futures import ThreadPoolExecutor

    from lighthead_edge.runtime.sources import SourceError

    sources = [(name, open_source(spec, log=log)) for name, spec in zip(settings.names, settings.sources, strict=True)]

    def try_open(source: Any) -> SourceError | None:
        try:
            source.open()
        except SourceError as exc:
            return exc
        return None

    with ThreadPoolExecutor(max_workers=min(16, len(sources))) as pool:
        errors = list(pool.map(try_open, [source for _, source in sources]))
    if len(sources) == 1 and errors[0] is not None and not settings.source_errors:
        raise errors[0]
    opened = [(name, source) for (name, source), error in zip(sources, errors, strict=True) if error is None]
    failed = {name: str(error) for (name, _), error in zip(sources, errors, strict=True) if error is not None}
    if not opened:
        raise SourceError(f"none of the {len(sources)} sources could be opened: "
                          + "; ".join(f"{name}: {why}" for name, why in failed.items()))  # fmt: skip
    for name, why in failed.items():
        log(f"warning: source {name} left out: {why}")
    return opened, failed


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
    for message in settings.source_errors:
        log(f"warning: {message}")
    bundle = resolve_bundle(settings.model)
    check_paths(settings, bundle)  # an input named as an output, or an unwritable path: before anything opens
    stopper = _Stopper()
    with graceful_signals(stopper.stop, log):
        opened, failed = _open_sources(settings, log)
        try:
            detector = Detector(bundle, settings.backend, settings.device, settings.threads, settings.precision,
                                hint=settings.hint, jobs=settings.nireq)  # fmt: skip
            pipeline = Pipeline(detector, [source for _, source in opened], names=[name for name, _ in opened],
                                nireq=settings.nireq, drop=settings.drop, max_frames=settings.max_frames,
                                duration=settings.duration)  # fmt: skip
        except BaseException:
            for _, source in opened:
                source.close()
            raise
        try:
            pipeline.start()
            stopper.attach(pipeline)
            streams = [(stream.name, stream.source.fps) for stream in pipeline.streams]
            with _Outputs(settings, streams, log) as outputs:  # only now: the inputs and bundle work
                _log_start(log, bundle, detector, pipeline)
                with _StatsPrinter(pipeline.window_line, settings.stats_every, log):
                    for result in pipeline:
                        start = time.perf_counter()
                        outputs.write(result, pipeline)
                        pipeline.add_output(result, (time.perf_counter() - start) * 1000.0)
                        if on_frame is not None:
                            on_frame(result, pipeline)
        finally:
            pipeline.close()
    summary = pipeline.summary(settings=_describe(settings, bundle, detector, pipeline))
    for name, error in pipeline.failed.items():
        if len(pipeline.streams) > 1:
            log(f"warning: source {name} ended with an error: {error}")
    refused = {message.split(": ", 1)[0]: message.split(": ", 1)[1] for message in settings.source_errors}
    summary.failed = {**refused, **failed, **summary.failed}
    if len(settings.sources) > 1 and not summary.streams:
        summary.streams = {pipeline.streams[0].name: pipeline.summary().to_dict()}
    if settings.summary_json:  # before the summary is logged: a failure (e.g. /dev/full) is the one line after start
        write_atomic(settings.summary_json, json.dumps(summary.to_dict(), indent=2), "--summary-json")
    log(summary.format())
    return summary
