"""The on-device detector: a bundle, one inference engine, numpy and OpenCV. Never torch.

    detector = Detector("bundle/", backend="openvino")
    dets = detector(cv2.imread("frame.jpg"))  # boxes in the frame's own pixels
    for box, name, score in zip(dets.boxes, dets.names, dets.scores): ...

The exported graph does everything from the letterboxed uint8 image to the final NMS; this module only letterboxes
the frame (as training and evaluation did, with the pad colour from the manifest) and maps the boxes back. A
frame-in bundle (``export --frame-size``) letterboxes in the graph: a frame of its size goes in as it is, with no
host work at all; a frame of another size is letterboxed on the host to the graph's input first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lighthead_edge.data.transforms import letterbox, scale_boxes
from lighthead_edge.errors import DataError
from lighthead_edge.runtime.backends import Hint, Outputs, default_backend, make_backend
from lighthead_edge.runtime.bundle import Artifact, Backend, Bundle, BundleError, Precision, load_bundle


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields would be ambiguous
class Detections:
    """Detections of one frame, by decreasing score.

    Attributes:
        boxes (ndarray[N, 4] float32): xyxy in the original frame's pixels.
        scores (ndarray[N] float32).
        labels (ndarray[N] int64): 1..C; ``class_names[label - 1]`` is the name.
        class_names: the bundle's class names, C of them.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    class_names: list[str] = field(repr=False)

    @property
    def names(self) -> list[str]:
        """The class name of every detection."""
        return [self.class_names[int(label) - 1] for label in self.labels]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class _Frame:
    """A letterboxed frame: the model input (ndarray[1, H, W, 3] uint8), its scale and the original (h, w)."""

    input: np.ndarray
    scale: float
    orig_hw: tuple[int, int]


class Detector:
    """A Light-Head R-CNN bundle, ready to run.

    Args:
        bundle: the folder ``lighthead-edge export`` wrote; its checksums are verified on load.
        backend: ``"openvino"`` or ``"onnxruntime"`` [default: OpenVINO if it is installed, else ONNX Runtime].
        device: the engine's device name (``"CPU"``).
        threads: inference threads [default: the engine's].
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` [default: fp32 if the bundle has it for ``backend``].
        hint: ``"latency"`` (one frame at a time) or ``"throughput"`` (many in flight, for :meth:`infer_batch`).
        jobs: requests the engine keeps in flight for :meth:`infer_batch` / :meth:`stream` and the video pipeline
            [default: the engine's choice, at least 2].
    """

    def __init__(
        self,
        bundle: str | Path | Bundle,
        backend: Backend | str | None = None,
        device: str = "CPU",
        threads: int | None = None,
        precision: Precision | str | None = None,
        *,
        hint: Hint | str = Hint.LATENCY,
        jobs: int | None = None,
    ) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.artifact: Artifact = self.bundle.artifact(backend or default_backend(), precision)
        try:
            hint = Hint(hint)
        except ValueError:
            raise BundleError(f"unknown hint {hint!r}; choose latency or throughput") from None
        self.engine = make_backend(
            self.artifact.backend, self.bundle.path(self.artifact), device=device, threads=threads, hint=hint, jobs=jobs
        )
        self.class_names = self.bundle.class_names
        self.input_size = self.bundle.input_size
        _check_input_size(self.bundle, self.artifact, self.engine.input_shape)
        _check_metadata(self.bundle, self.artifact, self.engine.metadata())
        self._pad_bgr = self.bundle.pad_bgr

    @property
    def names(self) -> list[str]:
        """The class names, label ``i`` being ``names[i - 1]``."""
        return list(self.class_names)

    def preprocess(self, frame_bgr: np.ndarray) -> _Frame:
        """frame (ndarray[h, w, 3] uint8 BGR) -> the letterboxed model input and what maps boxes back."""
        if not isinstance(frame_bgr, np.ndarray):
            raise DataError(f"expected a numpy image (ndarray[h, w, 3] uint8 BGR), got {type(frame_bgr).__name__}")
        hw = (int(frame_bgr.shape[0]), int(frame_bgr.shape[1])) if frame_bgr.ndim == 3 else (0, 0)
        if hw == self.input_size and frame_bgr.dtype == np.uint8 and frame_bgr.shape[2] == 3:
            return _Frame(np.ascontiguousarray(frame_bgr)[None], 1.0, hw)  # the graph's own size: no copy, no resize
        image, scale = letterbox(frame_bgr, self.input_size, pad_bgr=self._pad_bgr)
        return _Frame(image[None], scale, hw)

    def postprocess(self, outputs: Outputs, frame: _Frame) -> Detections:
        """The graph's fixed-size outputs -> the first ``num_detections`` rows, in the frame's pixels."""
        n = int(outputs["num_detections"].reshape(-1)[0])
        boxes = scale_boxes(outputs["boxes"][0, :n], frame.scale, frame.orig_hw)
        scores = np.ascontiguousarray(outputs["scores"][0, :n], dtype=np.float32)
        labels = np.ascontiguousarray(outputs["labels"][0, :n], dtype=np.int64)
        return Detections(boxes, scores, labels, self.class_names)

    def infer(self, image: np.ndarray) -> Outputs:
        """The raw graph on an already letterboxed ndarray[1, H, W, 3] uint8: boxes in input pixels, padded to D."""
        return self.engine.run(image)

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        frame = self.preprocess(frame_bgr)
        return self.postprocess(self.engine.run(frame.input), frame)

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[Detections]:
        """Detections of every frame, in order, with several inference requests in flight (for throughput)."""
        pending: list[_Frame] = []

        def inputs() -> Iterator[np.ndarray]:
            for frame_bgr in frames:
                pending.append(self.preprocess(frame_bgr))
                yield pending[-1].input

        # run_many pulls a bounded chunk of inputs before yielding their outputs, in order: pop them as they come
        for outputs in self.engine.run_many(inputs()):
            yield self.postprocess(outputs, pending.pop(0))

    def infer_batch(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """:meth:`stream` over a list of frames."""
        return list(self.stream(frames))


def _check_input_size(bundle: Bundle, artifact: Artifact, graph_shape: tuple[int, ...]) -> None:
    """Raise :class:`BundleError` unless the graph takes the manifest's input size (NHWC; -1: a dynamic dimension)."""
    h, w = bundle.input_size
    if len(graph_shape) == 4 and graph_shape[1] in (-1, h) and graph_shape[2] in (-1, w):
        return
    got = "x".join(map(str, graph_shape[1:3])) if len(graph_shape) == 4 else f"shape {list(graph_shape)}"
    raise BundleError(f"bundle {bundle.root}: {artifact.path} takes {got} images but the manifest says {h}x{w}; "
                      "re-export the bundle")  # fmt: skip


def _check_metadata(bundle: Bundle, artifact: Artifact, embedded: dict[str, object]) -> None:
    """Raise :class:`BundleError` unless the class names and input shape of the manifest are the ones the exporter
    embedded in the artifact (covered by its checksum): a manifest relabelled by hand, its digest recomputed or
    absent (format 2), would otherwise rename every detection."""
    embedded_input, embedded_pre = embedded.get("input"), embedded.get("preprocessing")
    letterbox = bundle.manifest["preprocessing"]["letterbox"]
    checks = {
        "class_names": (bundle.class_names, embedded.get("class_names")),
        "input.shape": (list(bundle.input_shape), embedded_input.get("shape") if isinstance(embedded_input, dict)
                        else None),
        "preprocessing.letterbox": (letterbox, embedded_pre.get("letterbox") if isinstance(embedded_pre, dict)
                                    else None),
    }  # fmt: skip
    for key, (manifest_value, artifact_value) in checks.items():
        if manifest_value != artifact_value:
            raise BundleError(f"bundle {bundle.root}: the manifest's {key} {manifest_value} differs from the one "
                              f"inside {artifact.path} ({artifact_value}); the manifest was edited: re-export the "
                              "bundle")  # fmt: skip
