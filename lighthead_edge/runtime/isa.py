"""What instruction set the CPU kernels use, and capping it to measure an older CPU on this one.

    cap_isa("avx2")                 # before OpenVINO compiles anything in this process
    kernel_isas(compiled_model)     # {"avx2": 161, "avx512": 12, ...}: the compiled graph's kernels by ISA
    cpu_isa_flags()                 # ["avx2", "avx512", "vnni", ...] from /proc/cpuinfo

INT8 speed depends on the ISA more than on anything the toolkit does: on this host's AVX-512 VNNI cores OpenVINO runs
8-bit convolutions in ``brgconv_*_I8`` kernels, while on an AVX2-only CPU oneDNN falls back to ``jit_avx2_I8`` and a
``jit_gemm_I8`` fully connected layer that is slower than its FP32 one. ``ONEDNN_MAX_CPU_ISA`` caps the oneDNN kernels
that OpenVINO's CPU plugin picks (convolutions, fully connected, ...); OpenVINO's own kernels (TopK, ReduceMean,
eltwise subgraphs) dispatch on the CPU and keep their ISA, which :func:`kernel_isas` makes visible. ONNX Runtime's
MLAS kernels have no such cap.
"""

from __future__ import annotations

import os
import re
from collections import Counter

from lighthead_edge.errors import ConfigError

#: ``--isa`` choices -> oneDNN's ``ONEDNN_MAX_CPU_ISA`` values (``native``: no cap).
ISAS = {"native": None, "avx2": "AVX2", "avx2_vnni": "AVX2_VNNI", "avx512_core": "AVX512_CORE",
        "avx512_core_vnni": "AVX512_CORE_VNNI", "avx512_core_bf16": "AVX512_CORE_BF16"}  # fmt: skip
_ORDER = ["sse41", "avx", "avx2", "avx512", "amx"]
_TOKEN = re.compile(r"(amx|avx512|avx2|avx|sse41|sse42)")
_ENV = "ONEDNN_MAX_CPU_ISA"


def cap_isa(name: str) -> str | None:
    """Cap OpenVINO's oneDNN kernels at ``name`` (a key of :data:`ISAS`) for this process -> the value set.

    It must run before OpenVINO's CPU plugin first compiles a model in the process; :func:`check_cap` tells afterwards
    whether it took.
    """
    if name not in ISAS:
        raise ConfigError(f"unknown ISA {name!r}; choose one of {', '.join(ISAS)}")
    value = ISAS[name]
    if value is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = value
    return value


def kernel_isas(compiled, layers: tuple[str, ...] = ()) -> dict[str, int]:
    """An OpenVINO compiled model's executed kernels counted by ISA (``avx2``, ``avx512``, ``amx``, ...; ``other``
    for reference and ISA-neutral ones), from each runtime node's ``primitiveType``; only the ``layers`` types (e.g.
    ``("Convolution",)``) when given."""
    counts: Counter[str] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        kind = info["primitiveType"].astype(str) if "primitiveType" in info else ""
        if not kind or kind.startswith("unknown"):
            continue  # constants, inputs, reshapes: nothing executes
        if layers and not info["layerType"].astype(str).startswith(layers):
            continue
        match = _TOKEN.search(kind)
        counts[match.group(1).replace("sse42", "sse41") if match else "other"] += 1
    return dict(counts.most_common())


#: the layer types whose kernels oneDNN provides, so that ``ONEDNN_MAX_CPU_ISA`` reaches them
ONEDNN_LAYERS = ("Convolution", "GroupConvolution", "FullyConnected", "Deconvolution")


def check_cap(compiled, cap: str) -> None:
    """Raise when ``cap`` (a key of :data:`ISAS`) did not reach oneDNN: a convolution or fully connected kernel of
    ``compiled`` uses a wider ISA."""
    if ISAS.get(cap) is None:
        return
    limit = _ORDER.index("avx512" if cap.startswith("avx512") else "avx2")
    heavy = kernel_isas(compiled, ONEDNN_LAYERS)
    above = sorted(k for k in heavy if k in _ORDER and _ORDER.index(k) > limit)
    if above:
        raise ConfigError(f"--isa {cap} did not take: OpenVINO still runs {', '.join(above)} convolution kernels "
                          "(the cap must be set before OpenVINO compiles anything in the process)")  # fmt: skip


def cpu_isa_flags() -> list[str]:
    """The SIMD extensions this CPU reports (Linux ``/proc/cpuinfo``; [] elsewhere), in a short readable form."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return []
    names = [("avx2", "avx2"), ("avx512f", "avx512"), ("avx512_vnni", "vnni"), ("avx_vnni", "avx-vnni"),
             ("avx512_bf16", "bf16"), ("amx_int8", "amx")]  # fmt: skip
    return [short for flag, short in names if flag in flags]
