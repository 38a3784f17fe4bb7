#!/usr/bin/env python
"""OCR throughput of the text layer, and the time from upload to searchable.

    .venv/bin/python bench/ocr_throughput.py [--rounds 5] [--pages 50]

Two measurements in the same run, each against a baseline of that run:

1. **OCR pages per minute** for a scanned A4 page: a page of Chinese + English invoice-like text
   drawn with WenQuanYi Zen Hei at 150 dpi, saved as an image-only PDF, read by the text layer's
   PDF extractor (render at the page-image size, no text of its own → PP-OCRv4 through
   rapidocr/onnxruntime on the CPU). Baseline: the same extractor on the born-digital version
   of the same page (pdfium's own text, the page rendered too). Ratio: OCR / baseline speed.
2. **Upload to searchable** for a ``--pages``-page scanned PDF: ``asset_upload`` (validation,
   SHA-256, encryption, storage) and then its text-layer job to ``done`` (``text_layer_run``,
   what the worker thread runs), against the upload alone. Ratio: (upload + text layer) / upload.
   Runs in a throw-away SQLite database and storage directory (nothing of var/ is touched).

The OCR engine is loaded (and warmed up on one page) before anything is timed.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]


def setup_django(data_dir: Path) -> None:
    os.environ.update(
        {
            "PLATFORM_PROFILE": "dev",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(data_dir),
            "DATABASE_URL": f"sqlite:///{data_dir / 'bench.sqlite3'}",
            "TEXT_LAYER_WORKERS": "0",  # the bench runs the job itself, in this thread
            "MAX_UPLOAD_MB": "1024",
        }
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def pages_per_minute(data: bytes, rounds: int) -> tuple[float, list[float]]:
    from assets.documents.text_layer import TEXT_EXTRACTORS, TextLimits

    class Pdf:
        content_type = "application/pdf"

    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        pages = list(TEXT_EXTRACTORS["application/pdf"](io.BytesIO(data), asset=Pdf, limits=TextLimits.from_settings()))
        times.append(time.perf_counter() - began)
        assert pages and pages[0].lines, "no text read"
    return 60.0 / statistics.median(times), times


def upload_to_searchable(data: bytes, rounds: int) -> tuple[list[float], list[float]]:
    from accounts.models import User
    from assets.documents.jobs import text_layer_run
    from assets.documents.models import TextLayer, TextLayerStatus
    from assets.services import asset_upload
    from compliance.context import RequestContext, request_context
    from departments.services import department_create
    from departments.tenancy import department_scope

    uploads, totals = [], []
    user = User.objects.create(username=f"bench-{os.getpid()}")
    with request_context(RequestContext(request_id="bench-ocr")):
        for index in range(rounds):
            department = department_create(slug=f"bench-{index}", name=f"Bench {index}", acting_user="system")
            with department_scope(department):
                began = time.perf_counter()
                asset = asset_upload(
                    department=department, uploaded_by=user, stream=io.BytesIO(data), original_name="scan.pdf"
                )
                uploaded = time.perf_counter()
                layer = TextLayer.objects.get(asset=asset)
                text_layer_run(layer.pk)
                done = time.perf_counter()
                layer.refresh_from_db()
                assert layer.status == TextLayerStatus.DONE, (layer.status, layer.failure)
            uploads.append(uploaded - began)
            totals.append(done - began)
    return uploads, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="timed reads of the one-page documents")
    parser.add_argument("--pages", type=int, default=50, help="pages of the scanned PDF for upload-to-searchable")
    parser.add_argument("--uploads", type=int, default=1, help="uploads of that PDF (each in its own department)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ocr-bench-") as tmp:
        setup_django(Path(tmp))
        from tests.assets.text_layer_documents import born_digital_pdf, font_missing, scanned_pdf

        if font_missing():
            sys.exit(font_missing())
        scanned, (born, _positions) = scanned_pdf(1), born_digital_pdf()
        pages_per_minute(scanned, 1)  # load the OCR models, warm up
        ocr_rate, ocr_times = pages_per_minute(scanned, args.rounds)
        text_rate, text_times = pages_per_minute(born, args.rounds)
        ocr_median, text_median = statistics.median(ocr_times), statistics.median(text_times)
        print(f"cpu: {os.cpu_count()} cores; rounds: {args.rounds}")
        print(f"OCR (scanned A4, 150 dpi):         {ocr_rate:8.1f} pages/min  (median {ocr_median:.3f} s/page)")
        print(f"baseline (pdfium text, same page): {text_rate:8.1f} pages/min  (median {text_median:.3f} s/page)")
        print(f"ratio OCR / baseline speed:        {ocr_rate / text_rate:8.3f}  ({text_rate / ocr_rate:.0f}x slower)")

        bundle = scanned_pdf(args.pages)
        uploads, totals = upload_to_searchable(bundle, args.uploads)
        upload, total = statistics.median(uploads), statistics.median(totals)
        print(f"{args.pages}-page scanned PDF ({len(bundle) / 1e6:.1f} MB), median of {args.uploads}:")
        print(f"  upload alone (baseline):         {upload:8.2f} s")
        print(
            f"  upload to searchable:            {total:8.2f} s  ({args.pages / (total - upload) * 60:.1f} pages/min)"
        )
        print(f"  ratio searchable / upload:       {total / upload:8.1f}")


if __name__ == "__main__":
    main()
