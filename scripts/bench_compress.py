"""The compression table in one run: torch eager FP32, ORT FP32/INT8, OV FP32/INT8, pruned FP32 and pruned + INT8.

    .venv/bin/python scripts/bench_compress.py                  # random-weight mobilenet_v2-S 512, synthetic data
    .venv/bin/python scripts/bench_compress.py --checkpoint model.pt --data train.json --val val.json --calib frames/
    .venv/bin/python scripts/bench_compress.py --no-prune --threads 2 --runs 10 --out runs/bench_compress
    .venv/bin/python scripts/bench_compress.py --checkpoint model.pt --pruned pruned.pt --val val.json --calib frames/
    .venv/bin/python scripts/bench_compress.py ... --isa avx2      # OpenVINO as on an AVX2-only CPU
    .venv/bin/python scripts/bench_compress.py ... --pruned pruned.pt --tuned tuned/   # + the bundle `tune` chose

``--pruned`` takes a model that ``lighthead-edge prune`` already pruned and fine-tuned (fine-tuning to recover the
accuracy takes longer than a benchmark should), instead of pruning here with ``--prune`` / ``--finetune-epochs``.
``--tuned`` (repeatable) adds the variant that ``lighthead-edge tune`` chose into a bundle folder (its manifest's
``tune.chosen``: precision and RoI budget) as a row ``backend/tuned-<precision>@<rois>`` (``pruned-tuned-...`` when it
was tuned from ``--pruned``), measured on ``--val`` and timed in the same interleaved schedule, so "pruned + tuned
INT8 against the unpruned FP32" is one ratio of one table.

Every figure comes from this one run on this machine: latency p50/p95 at each ``--threads`` count, async throughput,
size on disk and, with ``--val``, COCO AP/AP50. The latencies of all ONNX Runtime and OpenVINO variants, unpruned
and pruned, are timed in one interleaved schedule, so a slow spell of the shared host lands on every row alike.
Ratios are against each backend's unpruned FP32 (``latency x``) and against torch eager FP32 (``vs torch``).
Without ``--checkpoint`` a random-weight default model is built and a small synthetic set generated for
calibration and BN re-estimation: the latencies are real, the APs meaningless.
Writes report.md / report.json / report.png into ``--out`` (and the bundles beside them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lighthead_edge.compress.bench import measure_artifact, measure_torch
from lighthead_edge.compress.quantize import QuantizeSettings, quantize_checkpoint
from lighthead_edge.compress.report import add_ratios, write_report
from lighthead_edge.measure import BenchSettings, host_description, latencies
from lighthead_edge.runtime.isa import ISAS, cap_isa


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="a trained model.pt [default: random-weight mobilenet_v2-S 512]")
    p.add_argument("--data", help="training COCO json (pruning's BN re-estimation / fine-tuning)")
    p.add_argument("--val", help="COCO json for AP")
    p.add_argument("--calib", help="calibration source [default: --data's images]")
    p.add_argument("--prune", type=float, default=0.5, help="pruning ratio [0.5]")
    p.add_argument("--no-prune", action="store_true", help="skip the pruned variants")
    p.add_argument("--pruned", help="an already pruned (and fine-tuned) model.pt of --checkpoint, for the pruned rows")
    p.add_argument("--tuned", action="append", default=[], metavar="BUNDLE",
                   help="a bundle `lighthead-edge tune` wrote: its chosen variant is a row (repeatable)")  # fmt: skip
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--threads", default="1,2", help="thread counts; the last is the headline [1,2]")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--calib-size", type=int, default=100)
    p.add_argument("--out", default="runs/bench_compress")
    p.add_argument("--isa", default="native", choices=list(ISAS),
                   help="cap OpenVINO's oneDNN kernels at this ISA, to measure an older CPU here [native]")  # fmt: skip
    p.add_argument("--keep-float", action="append", default=[], metavar="NAME",
                   help="keep layers whose names contain NAME in float (quantize --keep-float)")  # fmt: skip
    return p.parse_args(argv)


def _default_model(out: Path) -> tuple[Path, Path, Path]:
    """A random-weight default model plus a synthetic train/val set at its input size."""
    import torch

    from lighthead_edge.config import ModelConfig
    from lighthead_edge.data.synth import generate_dataset
    from lighthead_edge.modeling.checkpoint import save_checkpoint
    from lighthead_edge.modeling.detector import build_detector

    torch.manual_seed(0)
    model = build_detector(ModelConfig(num_classes=4)).eval()
    checkpoint = save_checkpoint(out / "random_mobilenet_v2_S_512.pt", model, ["circle", "square", "triangle", "star"])
    split = generate_dataset(out / "data", 32, 8, size=(384, 512), seed=0, progress=False)
    return Path(checkpoint), Path(split["train"]), Path(split["val"])


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    cap_isa(args.isa)  # before anything compiles an OpenVINO model in this process
    # refused before an hour of work, not after
    tuned = _tuned_variants([Path(root) for root in args.tuned], args.checkpoint, args.pruned)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint, train, val = (Path(args.checkpoint), args.data, args.val) if args.checkpoint else _default_model(out)
    calib = args.calib or (Path(train).parent / "images" if train else None)
    if calib is None:
        sys.exit("give --calib (or --data, whose images are used)")
    bench = BenchSettings(threads=tuple(int(t) for t in args.threads.split(",")), runs=args.runs,
                          val_json=str(val) if val else None, isa=args.isa)  # fmt: skip
    common = {
        "calib_size": args.calib_size,
        "val_json": bench.val_json,
        "bench": bench,
        "keep_float": tuple(args.keep_float),
    }
    log = lambda message: print(message, file=sys.stderr)  # noqa: E731
    results = {"torch/fp32": measure_torch(checkpoint, bench, _input_size(checkpoint))}
    plain = quantize_checkpoint(checkpoint, out / "bundle", calib=calib, settings=QuantizeSettings(**common), log=log)
    results.update({k: v for k, v in plain.results.items() if not k.endswith("fp16")})
    pruned = None
    if args.pruned:
        pruned = quantize_checkpoint(args.pruned, out / "bundle_pruned", calib=calib,
                                     settings=QuantizeSettings(**common), log=log)  # fmt: skip
    elif not args.no_prune and train:
        settings = QuantizeSettings(prune_ratio=args.prune, train_json=str(train),
                                    finetune_epochs=args.finetune_epochs, **common)  # fmt: skip
        pruned = quantize_checkpoint(checkpoint, out / "bundle_pruned", calib=calib, settings=settings, log=log)
    together = {"": _variants(plain.bundle)}
    if pruned is not None:
        for key, value in pruned.results.items():
            backend, precision = key.split("/")
            if precision != "fp16":
                results[f"{backend}/pruned-{precision}"] = value
        together["pruned-"] = _variants(pruned.bundle)
    for key, bundle, artifact in tuned:
        log(f"measuring {key} ({bundle.root})")
        results[key] = measure_artifact(bundle, artifact, bench, {})
        together[""][key] = (bundle, artifact)
    if len(together) > 1 or tuned:
        _retime_together(results, together, bench, log)
    threads = str(bench.threads[-1])
    table = add_ratios(results, threads)
    for key, row in table.items():
        row["ratios"]["vs_torch"] = add_ratios({key: results[key], **{"torch/fp32": results["torch/fp32"]}}, threads,
                                               "torch/fp32")[key]["ratios"].get("latency_p50")  # fmt: skip
    report = {"model": checkpoint.name, "host": host_description(), "threads": threads, "val_data": bench.val_json,
              "isa": args.isa, "results": table, "quantization": plain.quantization}  # fmt: skip
    print(f"report: {write_report(out, report)}")
    print((out / "report.md").read_text())
    if args.pruned:
        print(_pruning_line(Path(args.pruned), checkpoint))
    elif pruned is not None:
        print(f"pruned rows: pruned in this run at ratio {args.prune}, {args.finetune_epochs} fine-tuning epoch(s)")
    for key, bundle, _ in tuned:
        print(_tuned_line(key, bundle))
    return 0


def _variants(root: Path) -> dict:
    """A bundle's FP32 and INT8 artifacts -> ``{"backend/precision": (bundle, artifact)}``."""
    from lighthead_edge.runtime.bundle import load_bundle

    loaded = load_bundle(root)
    return {a.key: (loaded, a) for a in loaded.artifacts if a.precision.value != "fp16"}


def _tuned_variants(roots: list[Path], checkpoint: str | None, pruned: str | None) -> list[tuple]:
    """The variant ``tune`` chose into each of ``roots`` -> [(row key, bundle, artifact)]; a one-line exit for a
    folder that is not such a bundle. The key says which model was tuned: ``backend/tuned-int8@100`` for
    ``--checkpoint``, ``backend/pruned-tuned-int8@100`` for ``--pruned`` (by the manifest's source sha256), and
    ``backend/tuned-int8@100:<checkpoint name>`` for any other."""
    import hashlib
    import itertools

    from lighthead_edge.runtime.bundle import BundleError, load_bundle

    digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None  # noqa: E731
    prefixes = {digest(pruned): "pruned-tuned-", digest(checkpoint): "tuned-"}
    out, keys = [], set()
    for root in roots:
        try:
            bundle = load_bundle(root)
        except BundleError as e:
            sys.exit(f"--tuned {root}: {e}")
        tune = bundle.manifest.get("tune")
        if not isinstance(tune, dict) or "chosen" not in tune:
            sys.exit(f"--tuned {root}: not a bundle written by `lighthead-edge tune` (its manifest has no tune.chosen)")
        chosen, backend, source = tune["chosen"], tune["settings"]["backend"], bundle.manifest["source_checkpoint"]
        key = f"{backend}/{prefixes.get(source['sha256'], 'tuned-')}{chosen['precision']}@{chosen['rois']}"
        key += "" if source["sha256"] in prefixes else f":{source['name']}"
        key = next(k for n in itertools.count(1) if (k := key if n == 1 else f"{key}:{n}") not in keys)
        keys.add(key)
        out.append((key, bundle, bundle.artifact(backend, chosen["precision"])))
    return out


def _tuned_line(key: str, bundle) -> str:
    """What a tuned row is: the model it was tuned from, the search's ISA and RoI budgets, and its own reference."""
    tune = bundle.manifest["tune"]
    ref, chosen, settings = tune["reference"], tune["chosen"], tune["settings"]
    return (f"{key}: {bundle.root} (`tune` of {bundle.manifest.get('source_checkpoint', {}).get('name', '?')}, "
            f"--isa {settings.get('isa', 'native')}, RoI budgets {settings.get('rois')} and {ref['rois']}; "
            f"chose {chosen['label']} at AP {chosen['ap']:.4f}, its FP32 @{ref['rois']} {ref['ap']:.4f})")  # fmt: skip


def _retime_together(results: dict, groups: dict[str, dict], bench: BenchSettings, log) -> None:
    """Replace the rows' latencies by one interleaved timing of every bundle's artifacts together.

    Each ``quantize_checkpoint`` timed its own bundle; the pruned and tuned rows' ratios are against the unpruned
    FP32, so they are timed again here in one schedule, where a slow spell of the shared host lands on every side
    alike. ``groups``: row-key prefix -> that bundle's variants (see :func:`_variants`).
    """
    variants = {}
    for label, group in groups.items():
        for key, pair in group.items():
            backend, precision = key.split("/")
            variants[f"{backend}/{label}{precision}"] = pair
    log(f"timing {len(variants)} variants together at {bench.threads} thread(s), interleaved")
    for key, latency in latencies(variants, bench).items():
        results[key]["latency_ms"] = latency


def _pruning_line(source: Path, original: Path) -> str:
    """What the pruned rows are: the widths from the checkpoint's marker, and the backbone + thin-map MAC reduction
    measured on the two models themselves (right however many times ``source`` was pruned)."""
    from lighthead_edge.compress.prune import PruneReport
    from lighthead_edge.modeling.checkpoint import load_checkpoint
    from lighthead_edge.modeling.summary import stage_costs

    pruned_model, _, payload = load_checkpoint(source)
    meta = (payload.get("meta") or {}).get("pruned") or {}
    widths = ", ".join(f"{k} {v[0]}->{v[1]}" for k, v in meta.get("widths", {}).items())
    if isinstance(meta.get("previous"), dict):
        widths += " (the last of several prunings)"
    before = PruneReport.macs_of(stage_costs(load_checkpoint(original)[0]))
    after = PruneReport.macs_of(stage_costs(pruned_model))
    return (
        f"pruned rows: {source} (ratio {meta.get('ratio')}; {widths}); backbone + thin-map MACs "
        f"-{100 * (1 - after / before):.1f}% against {original.name}"
    )


def _input_size(checkpoint: Path) -> tuple[int, int]:
    from lighthead_edge.modeling.checkpoint import load_checkpoint

    model, _, _ = load_checkpoint(checkpoint)
    return tuple(model.config.input_size)


if __name__ == "__main__":
    sys.exit(main())
