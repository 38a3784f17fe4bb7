"""OCR of one page image: PP-OCRv4 (Chinese and English) through ``rapidocr_onnxruntime``.

The detection and recognition models ship inside the pinned ``rapidocr-onnxruntime==1.4.4``
wheel and run on the CPU with onnxruntime, offline (no download, ever). onnxruntime releases
the GIL while it computes, so a text-layer worker thread does not stall the server's threads.

One engine per thread (created on first use, ~1 s), since a RapidOCR instance keeps per-call
state; the text-layer pool is small (``TEXT_LAYER_WORKERS``), so that is a few engines at most.
"""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from assets.documents.pages import Line

_local = threading.local()


def _engine():
    engine = getattr(_local, "engine", None)
    if engine is None:
        from rapidocr_onnxruntime import RapidOCR

        engine = RapidOCR()
        _local.engine = engine
    return engine


def ocr_lines(image: Image.Image) -> tuple[Line, ...]:
    """The lines OCR reads on ``image`` (boxes in its pixels), in the reading order OCR gives."""
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    bgr = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])  # OpenCV's channel order
    result, _elapsed = _engine()(bgr)
    lines = []
    for points, text, confidence in result or ():
        text = str(text).strip()
        if not text:
            continue
        xs = [float(point[0]) for point in points]
        ys = [float(point[1]) for point in points]
        box = (
            max(0.0, min(xs)),
            max(0.0, min(ys)),
            min(float(rgb.width), max(xs)),
            min(float(rgb.height), max(ys)),
        )
        lines.append(Line(text=text, box=tuple(round(value, 1) for value in box), confidence=float(confidence)))
    return tuple(lines)
