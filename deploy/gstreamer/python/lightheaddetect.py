"""lightheaddetect: a GStreamer element that runs a lighthead-edge bundle on every BGR frame passing through it.

    GST_PLUGIN_PATH=$PWD/deploy/gstreamer PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages:$PWD \\
    gst-launch-1.0 filesrc location=clip.mp4 ! decodebin ! videoconvert ! video/x-raw,format=BGR \\
        ! lightheaddetect model=bundle/ jsonl=out.jsonl draw=true ! videoconvert ! autovideosink

gst-python's loader finds this file in ``$GST_PLUGIN_PATH/python/``. Only GStreamer's own bindings (``gi``) are
imported when the plugin registers; numpy, OpenCV, the engine and ``lighthead_edge`` are imported when the element
starts, so ``gst-inspect-1.0 lightheaddetect`` works without them, and a missing ``PYTHONPATH`` is a GStreamer error
that says so instead of a plugin that silently fails to register.

Per frame (``do_transform_ip``, in place) the buffer is mapped (read-only, or writable with ``draw=true``), seen as an
ndarray[h, w, 3] uint8 that honours the row stride and offset, and given to
:class:`lighthead_edge.runtime.detector.Detector`. The results go out three ways:

- an element message on the bus, a ``GstStructure`` named ``lightheaddetect``::

      frame (guint64, 0-based)  pts (guint64 ns; GST_CLOCK_TIME_NONE when the buffer has none)
      timestamp (gdouble s: pts, or Unix time without one)  width, height, count (gint)
      boxes (GstValueArray of gdouble, 4 * count: x1 y1 x2 y2 in frame pixels, 2 decimals)
      scores (GstValueArray of gdouble, count; 4 decimals)  labels (GstValueArray of gint, count; 1..C)
      classes (gchararray: the class names, newline-separated)  json (gchararray: this frame's JSONL line)

- with ``jsonl=PATH``, one line per frame in the format of ``lighthead-edge run --jsonl``
  (:func:`lighthead_edge.runtime.outputs.detections_record`), each written whole in one call;
- with ``draw=true``, boxes and captions drawn into the frame itself (the runtime's ``draw_detections``); otherwise
  the element is in passthrough and buffers leave it untouched.

Errors (a missing or tampered bundle, a bad property, a frame the detector can't take, a JSONL that can't be written)
are posted as GStreamer errors, as ``GST_ELEMENT_ERROR`` does, never raised: gst-launch prints
``ERROR: from element ...: <cause>`` and exits non-zero. The JSONL is opened (truncated) only once the model loaded,
always ends on a complete line, and is closed at EOS.
"""

from __future__ import annotations

import json
import time
import traceback
from types import SimpleNamespace

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

Gst.init_check(None)

CAPS = Gst.Caps.from_string("video/x-raw,format=BGR,width=(int)[1,2147483647],height=(int)[1,2147483647],"
                            "framerate=(fraction)[0/1,2147483647/1]")  # fmt: skip
BACKENDS = ("openvino", "onnxruntime")
PRECISIONS = ("fp32", "fp16", "int8")
STRUCTURE_NAME = "lightheaddetect"
ENV_HINT = ("put the venv's site-packages and the lighthead-edge checkout on PYTHONPATH, e.g. "
            "PYTHONPATH=$PWD/.venv/lib/python3.11/site-packages:$PWD")  # fmt: skip
_RW = GObject.ParamFlags.READWRITE


class ElementFailure(Exception):
    """A cause to post as a GStreamer error: ``domain``/``code`` are a GStreamer error quark and code, ``debug``
    the "Additional debug info" (one line: gst-launch prints it on stderr)."""

    def __init__(self, text: str, domain: int, code: int, debug: str = "") -> None:
        super().__init__(text)
        self.text, self.domain, self.code, self.debug = text, domain, code, debug or text


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (engines raise pages of it), or its type when it has no text."""
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


def _where(exc: BaseException) -> str:
    """The exception's type and the line that raised it: debug info without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    return type(exc).__name__ + (f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else "")


def _runtime() -> SimpleNamespace:
    """The runtime, imported on first use (numpy, OpenCV and the engine are not needed to register)."""
    try:
        import numpy

        from lighthead_edge.errors import LightheadError
        from lighthead_edge.runtime.detector import Detector
        from lighthead_edge.runtime.draw import draw_detections
        from lighthead_edge.runtime.outputs import JsonlSink, check_writable, detections_record
    except ImportError as exc:
        raise ElementFailure(f"can't import the lighthead-edge runtime ({exc}); {ENV_HINT}", Gst.CoreError.quark(),
                             Gst.CoreError.MISSING_PLUGIN, _where(exc)) from None  # fmt: skip
    return SimpleNamespace(np=numpy, LightheadError=LightheadError, Detector=Detector, draw=draw_detections,
                           JsonlSink=JsonlSink, check_writable=check_writable, record=detections_record)  # fmt: skip


class LightheadDetect(GstBase.BaseTransform):
    """BGR frames in, the same frames out (boxes drawn with ``draw=true``); detections on the bus and in JSONL."""

    __gtype_name__ = "GstLightheadDetect"  # element names lightheaddetect0, 1, ...
    __gstmetadata__ = (
        "lighthead-edge detector",
        "Filter/Analyzer/Video",
        "Runs a lighthead-edge bundle on BGR frames: element messages, JSON lines, boxes drawn in place",
        "lighthead-edge",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
    )
    # Numbers get the widest GObject ranges and are checked at start: out of range is then a pipeline error naming
    # the property, where GObject would only print a warning and run on with the default.
    __gproperties__ = {
        "model": (str, "model", "The bundle folder (what lighthead-edge export --out wrote)", None, _RW),
        "backend": (str, "backend", "Inference engine: openvino or onnxruntime", "openvino", _RW),
        "precision": (str, "precision", "The bundle's artifact to run: fp32, fp16 or int8", "fp32", _RW),
        "threads": (int, "threads", "Inference threads, 0..1024 (0: the engine's default)", -(2**31), 2**31 - 1, 0,
                    _RW),
        "threshold": (float, "threshold", "Minimum score, 0..1, of the detections reported and drawn (0: all the "
                      "bundle outputs, whose own score_thresh already applies)", -GLib.MAXDOUBLE, GLib.MAXDOUBLE,
                      0.0, _RW),
        "jsonl": (str, "jsonl", "Write one JSON line per frame to this file (lighthead-edge run --jsonl's format)",
                  None, _RW),
        "draw": (bool, "draw", "Draw the boxes into the frames (otherwise buffers pass through untouched)", False,
                 _RW),
    }  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.model: str | None = None
        self.backend, self.precision, self.threads, self.threshold = "openvino", "fp32", 0, 0.0
        self.jsonl: str | None = None
        self.draw = False
        self._rt: SimpleNamespace | None = None
        self._detector = self._sink = None
        self._info: GstVideo.VideoInfo | None = None
        self._frame = 0
        self.set_passthrough(True)

    # ------------------------------------------------------------------------------------------- properties
    def do_get_property(self, prop: GObject.ParamSpec):
        return getattr(self, prop.name)

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        setattr(self, prop.name, value)
        if prop.name == "draw":  # writable and in place only when drawing; read-only passthrough otherwise
            self.set_passthrough(not value)
            self.set_in_place(bool(value))

    # ------------------------------------------------------------------------------------------- lifecycle
    def do_start(self) -> bool:
        try:
            self._check_settings()
            self._rt = _runtime()
            self._open()
        except ElementFailure as failure:
            self._fail(failure)
            self._close()
            return False
        self._frame = 0
        return True

    def _check_settings(self) -> None:
        """Raise :class:`ElementFailure` for a property the runtime would not take (before anything loads)."""
        problem = None
        if not self.model:
            problem = "no model: set model=BUNDLE_FOLDER (what lighthead-edge export --out wrote)"
        elif self.backend not in BACKENDS:
            problem = f"unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}"
        elif self.precision not in PRECISIONS:
            problem = f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
        elif not 0 <= self.threads <= 1024:
            problem = f"threads={self.threads} is out of range; use 0 (the engine's default) to 1024"
        elif not 0.0 <= self.threshold <= 1.0:  # also refuses nan
            problem = f"threshold={self.threshold} is out of range; use a score in 0..1"
        if problem:
            raise ElementFailure(problem, Gst.ResourceError.quark(), Gst.ResourceError.SETTINGS)

    def _open(self) -> None:
        """Load the detector, then open the JSONL: a bundle that fails to load leaves an old JSONL as it was."""
        rt, where = self._rt, (Gst.ResourceError.quark(), Gst.ResourceError.OPEN_READ)
        try:
            if self.jsonl:
                rt.check_writable(self.jsonl, "jsonl")  # before the model loads: a typo fails at once
            self._detector = rt.Detector(self.model, backend=self.backend, precision=self.precision,
                                         threads=self.threads or None)  # fmt: skip
            # One frame now, on the application's thread. The first calls into OpenVINO's Python binding initialise
            # function-local statics with the GIL released: two elements making them at once on their streaming
            # threads (a tee) deadlock. Elements start one after another, so this also takes the first frame's
            # extra latency out of the stream.
            self._detector(rt.np.zeros((*self._detector.input_size, 3), rt.np.uint8))
            self._sink = rt.JsonlSink(self.jsonl) if self.jsonl else None
        except rt.LightheadError as exc:
            raise ElementFailure(str(exc), *where, _where(exc)) from None
        except Exception as exc:  # an engine's own error (an IR it rejects, ...): its text, no traceback
            raise ElementFailure(f"can't load {self.model}: {_one_line(exc)}", *where, _where(exc)) from None

    def do_stop(self) -> bool:
        self._close()
        return True

    def _close(self) -> None:
        if self._sink is not None:
            self._sink.close()
        self._sink = self._detector = None

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        self._info = GstVideo.VideoInfo.new_from_caps(incaps)
        return self._info is not None

    def do_sink_event(self, event: Gst.Event) -> bool:
        if event.type == Gst.EventType.EOS and self._sink is not None:
            self._sink.close()  # every line went out whole already: closing is the flush
            self._sink = None
        return GstBase.BaseTransform.do_sink_event(self, event)

    # ------------------------------------------------------------------------------------------- frames
    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        try:
            record = self._process(buf)
        except ElementFailure as failure:
            self._fail(failure)
            return Gst.FlowReturn.ERROR
        except Exception as exc:  # a bug of ours: still an element error, never a traceback in the host's log
            self._fail(ElementFailure(f"frame {self._frame}: {_one_line(exc)}", Gst.StreamError.quark(),
                                      Gst.StreamError.FAILED, _where(exc)))  # fmt: skip
            return Gst.FlowReturn.ERROR
        self.post_message(Gst.Message.new_element(self, self._structure(buf, record)))
        return Gst.FlowReturn.OK

    def _process(self, buf: Gst.Buffer) -> dict:
        """Map the buffer, detect, write the JSONL line and draw; the JSONL record of the frame."""
        if self._detector is None or self._info is None:
            raise ElementFailure("got a frame before the element started and its caps were set",
                                 Gst.CoreError.quark(), Gst.CoreError.NEGOTIATION)  # fmt: skip
        writable = self.draw
        mapping = buf.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE if writable else Gst.MapFlags.READ)
        if not mapping.__parent__:  # gst-python's MapInfo: no parent when the map failed
            raise ElementFailure("can't map the frame buffer" + (" for writing" if writable else ""),
                                 Gst.StreamError.quark(), Gst.StreamError.FAILED)  # fmt: skip
        try:
            frame = self._frame_view(buf, mapping.data)
            return self._detect(frame, buf.pts, writable)
        finally:
            frame = None  # no view of the mapped memory may outlive the mapping
            buf.unmap(mapping)

    def _frame_view(self, buf: Gst.Buffer, data: memoryview):
        """ndarray[h, w, 3] uint8 over the mapped memory. Offset and row stride come from the buffer's video meta
        when it has one (upstream may pad rows), otherwise from the caps' VideoInfo."""
        meta = GstVideo.buffer_get_video_meta(buf)
        src = meta if meta is not None else self._info
        width, height, offset, stride = src.width, src.height, src.offset[0], src.stride[0]
        need = offset + stride * (height - 1) + width * 3
        if stride < width * 3 or len(data) < need:
            raise ElementFailure(f"a frame buffer of {len(data)} bytes can't hold {width}x{height} BGR (stride "
                                 f"{stride}, offset {offset})", Gst.StreamError.quark(), Gst.StreamError.FORMAT)
        return self._rt.np.ndarray((height, width, 3), self._rt.np.uint8, buffer=data, offset=offset,
                                   strides=(stride, 3, 1))  # fmt: skip

    def _detect(self, frame, pts: int, writable: bool) -> dict:
        rt = self._rt
        index, self._frame = self._frame, self._frame + 1
        stamp = pts / Gst.SECOND if pts != Gst.CLOCK_TIME_NONE else time.time()
        try:
            dets = self._detector(frame)
            record = rt.record(index, stamp, frame.shape[:2], dets, self.threshold)
            if self._sink is not None:
                self._sink.write(record)
            if writable:
                frame[...] = rt.draw(frame, dets.boxes, dets.scores, dets.labels, dets.class_names,
                                     min_score=self.threshold)  # fmt: skip
        except rt.LightheadError as exc:
            raise ElementFailure(f"frame {index}: {exc}", Gst.StreamError.quark(), Gst.StreamError.FAILED,
                                 _where(exc)) from None  # fmt: skip
        except Exception as exc:  # the engine refusing the frame: its text as the cause
            raise ElementFailure(f"frame {index}: the detector failed: {_one_line(exc)}", Gst.StreamError.quark(),
                                 Gst.StreamError.FAILED, _where(exc)) from None  # fmt: skip
        return record

    def _structure(self, buf: Gst.Buffer, record: dict) -> Gst.Structure:
        """The element message's structure (see the module docstring); all numbers as in the JSONL record."""
        items = record["detections"]
        s = Gst.Structure.new_empty(STRUCTURE_NAME)
        s.set_value("frame", GObject.Value(GObject.TYPE_UINT64, record["frame"]))
        s.set_value("pts", GObject.Value(GObject.TYPE_UINT64, buf.pts))
        s.set_value("timestamp", float(record["timestamp"]))
        for key in ("width", "height"):
            s.set_value(key, int(record[key]))
        s.set_value("count", len(items))
        s.set_value("boxes", Gst.ValueArray([float(v) for d in items for v in d["box"]]))
        s.set_value("scores", Gst.ValueArray([float(d["score"]) for d in items]))
        s.set_value("labels", Gst.ValueArray([int(d["label"]) for d in items]))
        s.set_value("classes", "\n".join(d["class"] for d in items))
        s.set_value("json", json.dumps(record, separators=(",", ":")))
        return s

    # ------------------------------------------------------------------------------------------- errors
    def _fail(self, failure: ElementFailure) -> None:
        """GST_ELEMENT_ERROR: an error message from this element on the bus, its text the cause."""
        error = GLib.Error.new_literal(failure.domain, failure.text, failure.code)
        self.post_message(Gst.Message.new_error(self, error, failure.debug))


GObject.type_register(LightheadDetect)
__gstelementfactory__ = ("lightheaddetect", Gst.Rank.NONE, LightheadDetect)
