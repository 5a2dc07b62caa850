"""A long run of the video runner on a looped video: memory must stay flat and every frame must be accounted for.

    python scripts/soak_runner.py [--model BUNDLE] [--frames 10000] [--warmup 1000] [--threads 1] [--save]

Runs ``lighthead-edge run --video CLIP --loop --max-frames N`` in-process (JSONL to /dev/null, optionally an MP4),
sampling the process RSS every ``--every`` frames. Passes when RSS after warm-up grows by < 5% (max after warm-up
against the value at the end of warm-up) and the summary accounts for every frame: read == processed == N, none
dropped (a file source never drops), none corrupt. Without ``--model`` a tiny untrained bundle is exported first.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent


def rss_mb() -> float:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_bundle_in_child(out: Path, threads: int) -> Path:
    """Export a tiny untrained bundle in a child process, so that torch never enters the process being measured."""
    code = (
        f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); from pathlib import Path; "
        f"from bench_runner import build_random_bundle; build_random_bundle(Path({str(out)!r}), 'tiny', 128, "
        f"threads={threads})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="Bundle [default: export a tiny untrained one].")
    parser.add_argument("--video", type=Path, default=None, help="[default: a generated 100-frame 320x240 clip]")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=None, help="[default: frames / 10]")
    parser.add_argument("--every", type=int, default=100, help="RSS sample interval in frames.")
    parser.add_argument("--backend", default="openvino", choices=["openvino", "onnxruntime"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", action="store_true", help="Also write an annotated MP4 (in a temp folder).")
    parser.add_argument("--max-growth", type=float, default=0.05)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sys.path.insert(0, str(SCRIPTS))
    from bench_runner import make_video

    from lighthead_edge.runtime.runner import RunSettings, run_video
    from lighthead_edge.runtime.sources import SourceKind, SourceSpec

    tmp = Path(tempfile.mkdtemp(prefix="soak_runner_"))
    bundle = args.model or build_bundle_in_child(tmp / "bundle", args.threads)
    video = args.video or make_video(tmp / "clip.mp4", 100, width=320, height=240)
    warmup = args.warmup if args.warmup is not None else args.frames // 10
    samples: list[tuple[int, float]] = []

    def sample(result, pipeline) -> None:
        n = pipeline.stats.processed
        if n % args.every == 0 or n == warmup:
            samples.append((n, rss_mb()))

    settings = RunSettings(
        source=SourceSpec(SourceKind.VIDEO, str(video), loop=True), model=str(bundle), backend=args.backend,
        threads=args.threads, jsonl=os.devnull, save=str(tmp / "soak.mp4") if args.save else None,
        max_frames=args.frames, stats_every=30,
    )  # fmt: skip
    summary = run_video(settings, on_frame=sample)
    return report(summary, samples, warmup, args)


def report(summary, samples: list[tuple[int, float]], warmup: int, args: argparse.Namespace) -> int:
    """Print the RSS trace and the verdict; 0 when both checks pass."""
    base = next((mb for n, mb in samples if n >= warmup), samples[-1][1])
    after = [mb for n, mb in samples if n >= warmup]
    growth = (max(after) - base) / base
    print(f"\nRSS (MB) every {args.every} frames: first {samples[0][1]:.1f}, at warm-up end ({warmup}) {base:.1f}, "
          f"max after {max(after):.1f}, last {samples[-1][1]:.1f}; growth after warm-up {growth:+.2%}")  # fmt: skip
    if len(after) >= 2:
        n0, n1 = samples[-len(after)][0], samples[-1][0]
        slope = (samples[-1][1] - base) / max(1, n1 - n0) * 1000
        print(f"drift: {slope * 1024:+.1f} KB per 1000 frames (warm-up end -> last sample)")
    accounted = (summary.frames_read == summary.processed == args.frames and summary.dropped == 0
                 and summary.corrupt == 0)  # fmt: skip
    print(f"frames: read {summary.frames_read}, processed {summary.processed}, dropped {summary.dropped}, corrupt "
          f"{summary.corrupt} of {args.frames} asked: {'all accounted for' if accounted else 'MISMATCH'}")  # fmt: skip
    ok = accounted and growth < args.max_growth
    print(f"soak {'PASSED' if ok else 'FAILED'} ({summary.fps:.1f} fps over {summary.seconds:.0f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
