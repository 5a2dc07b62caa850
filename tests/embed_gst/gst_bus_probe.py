"""Run a gst-launch pipeline description and print the element messages of every lightheaddetect as JSON lines.

Run with Debian's /usr/bin/python3 (it has gi; the venv has not). The fields are read one by one with their GStreamer
types, as a C application would (gst_structure_get_uint64, gst_value_array_get_value, ...), so the test checks what
an application gets, not gst-launch's printing of it.

    /usr/bin/python3 gst_bus_probe.py "videotestsrc num-buffers=3 ! ... ! lightheaddetect model=B ! fakesink"

Exit status 0 at EOS; 1 with the error's text on stderr when the pipeline posts an error.
"""

from __future__ import annotations

import json
import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402


def fields(structure: Gst.Structure) -> dict:
    """The message's fields, each taken with its own type (a wrong type reads as ok=False: reported as None)."""

    def typed(getter: str, name: str):
        ok, value = getattr(structure, getter)(name)
        return value if ok else None

    def array(name: str) -> list | None:
        value = structure.get_value(name)  # a GstValueArray: gi gives it as a Gst.ValueArray (a list)
        return list(value) if isinstance(value, Gst.ValueArray) else None

    return {
        "frame": typed("get_uint64", "frame"), "pts": typed("get_uint64", "pts"),
        "timestamp": typed("get_double", "timestamp"), "width": typed("get_int", "width"),
        "height": typed("get_int", "height"), "count": typed("get_int", "count"), "boxes": array("boxes"),
        "scores": array("scores"), "labels": array("labels"), "classes": structure.get_string("classes"),
        "json": structure.get_string("json"),
    }  # fmt: skip


def main(description: str) -> int:
    Gst.init(None)
    pipeline = Gst.parse_launch(description)
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    code = 0
    try:
        while True:
            message = bus.timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.ELEMENT | Gst.MessageType.ERROR
                                             | Gst.MessageType.EOS)  # fmt: skip
            if message is None:
                print("gst_bus_probe: no EOS within 60 s", file=sys.stderr)
                code = 1
                break
            if message.type == Gst.MessageType.ERROR:
                error, _debug = message.parse_error()
                print(f"ERROR from {message.src.get_name()}: {error.message}", file=sys.stderr)
                code = 1
                break
            if message.type == Gst.MessageType.EOS:
                break
            structure = message.get_structure()
            if structure is not None and structure.get_name() == "lightheaddetect":
                print(json.dumps({"element": message.src.get_name(), **fields(structure)}), flush=True)
    finally:
        pipeline.set_state(Gst.State.NULL)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
