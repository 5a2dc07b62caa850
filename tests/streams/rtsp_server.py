"""A real RTSP server for the stream tests: GStreamer's GstRtspServer serving a generated clip.

Run it with Debian's ``/usr/bin/python3`` (the venv has no ``gi``) and an environment without the venv (see
``streams_lib.server_env``)::

    /usr/bin/python3 rtsp_server.py --port 8554 --mount /cam --size 320x240 --fps 15 --codec mjpeg [--auth user:pw]

It prints ``ready`` on stdout once it listens, and serves until SIGTERM/SIGINT (the tests also SIGKILL it, and
SIGSTOP it to make a stream stall). Codecs: ``mjpeg`` (jpegenc), ``h264`` (openh264enc), ``h265`` (x265enc) and
``vp8`` (vp8enc). MPEG-4 part 2 is not offered: GStreamer 1.22's avenc_mpeg4 inside GstRtspServer fails every frame
("Invalid pts"; it sees a 65535/1 frame rate), so the server would announce a stream and send nothing.
With ``--auth`` the mount needs credentials (RTSPAuth; ``--auth-method`` basic or digest, as most cameras use);
without them, or with wrong ones, the server answers 401 Unauthorized. ``--resize-to WxH --resize-after S`` changes
the frame size S seconds after a client starts playing, in the same RTSP session (a camera reconfigured live).
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402 - after require_version

ENCODERS = {
    "mjpeg": "jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26",
    "h264": "openh264enc complexity=low gop-size=15 ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1",
    "h265": "x265enc speed-preset=ultrafast tune=zerolatency key-int-max=15 ! h265parse "
    "! rtph265pay name=pay0 pt=96 config-interval=1",
    "vp8": "vp8enc deadline=1 keyframe-max-dist=15 ! rtpvp8pay name=pay0 pt=96",
}


def launch_line(width: int, height: int, fps: int, codec: str) -> str:
    """The media pipeline: a live moving ball at ``width x height`` and ``fps``, encoded and payloaded as ``pay0``."""
    size = f"video/x-raw,width={width},height={height},framerate={fps}/1"
    return (f"( videotestsrc is-live=true pattern=ball ! capsfilter name=size caps={size} ! videoconvert "
            f"! video/x-raw,format=I420 ! {ENCODERS[codec]} )")  # fmt: skip


def require_auth(
    factory: GstRtspServer.RTSPMediaFactory, server: GstRtspServer.RTSPServer, user_pw: str, method: str
) -> None:
    """Only ``user:password`` (HTTP ``method``: basic or digest) may use ``factory``."""
    user, _, password = user_pw.partition(":")
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "viewer")
    if method == "digest":
        auth.add_digest(user, password, token)
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
    else:
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_permission_for_role("viewer", "media.factory.access", True)
    permissions.add_permission_for_role("viewer", "media.factory.construct", True)
    factory.set_permissions(permissions)


def resize_later(factory: GstRtspServer.RTSPMediaFactory, size: str, after_s: float, fps: int) -> None:
    """``after_s`` seconds after each media is set up, its capsfilter asks for ``size``: videotestsrc renegotiates
    and the encoder goes on at the new size, in the same RTP session."""
    width, height = (int(v) for v in size.lower().split("x"))
    caps = Gst.Caps.from_string(f"video/x-raw,width={width},height={height},framerate={fps}/1")

    def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
        capsfilter = media.get_element().get_by_name("size")
        GLib.timeout_add(int(after_s * 1000), lambda: capsfilter.set_property("caps", caps) and False)

    factory.connect("media-configure", configure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mount", default="/cam")
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="mjpeg")
    parser.add_argument("--auth", help="user:password")
    parser.add_argument("--auth-method", choices=["basic", "digest"], default="basic")
    parser.add_argument("--resize-to", help="WIDTHxHEIGHT to switch to mid-stream")
    parser.add_argument("--resize-after", type=float, default=2.0, help="seconds after the media is set up")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    Gst.init(None)
    missing = [e.split()[0] for e in ENCODERS[args.codec].split(" ! ") if Gst.ElementFactory.find(e.split()[0]) is None]
    if missing:
        print(f"error: GStreamer elements missing for {args.codec}: {', '.join(missing)}", file=sys.stderr, flush=True)
        return 3
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(width, height, args.fps, args.codec))
    factory.set_shared(True)  # one encoder for all clients, as a camera has
    if args.auth:
        require_auth(factory, server, args.auth, args.auth_method)
    if args.resize_to:
        resize_later(factory, args.resize_to, args.resize_after, args.fps)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"error: can't listen on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
        return 2
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
