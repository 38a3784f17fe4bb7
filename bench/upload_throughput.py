#!/usr/bin/env python
"""Upload throughput and memory of the asset store's streaming path.

    .venv/bin/python bench/upload_throughput.py [--size-mb 1024] [--chunk-kb 256] [--rounds 3]

Measures, over the same byte stream in the same run:

* baseline: ``hashlib.sha256`` over the stream (nothing else);
* full path: what every upload goes through before its content check, i.e.
  ``assets.storage.BlobStager`` (SHA-256 + AES-256-GCM chunk encryption + write to a temp file in
  the storage directory + fsync) and ``StagedBlob.commit()`` (atomic rename into place).

Prints the throughput ratio full / baseline (goal >= 0.5) and the peak resident memory above
the baseline taken just before the full path runs (goal < 100 MB for 1 GB), sampled every 2 ms
from /proc/self/statm. The content check (a real decode with Pillow/pdfium) is not included: its
cost depends on the pixels and pages, not the byte count, and is capped by MAX_IMAGE_PIXELS /
MAX_PDF_PAGES. The stream is fed in ``--chunk-kb`` pieces, like Django's upload handler does.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "platform")]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


class PeakRss:
    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakRss:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def make_stream(size: int, chunk: int):
    """``size`` bytes in ``chunk``-sized pieces from 4 MiB random pools, starting like a PNG."""
    rng = random.Random(5)
    head = bytearray(rng.randbytes(4 * 1024 * 1024))
    head[:8] = b"\x89PNG\r\n\x1a\n"
    body = rng.randbytes(4 * 1024 * 1024)

    def pieces():
        sent = 0
        for source in itertools.chain([bytes(head)], itertools.repeat(body)):
            view = memoryview(source)
            for offset in range(0, len(view), chunk):
                take = min(chunk, size - sent)
                if take <= 0:
                    return
                yield view[offset : offset + take]
                sent += take

    return pieces


def baseline(pieces) -> tuple[float, str]:
    started = time.perf_counter()
    digest = hashlib.sha256()
    for piece in pieces():
        digest.update(piece)
    return time.perf_counter() - started, digest.hexdigest()


def raw_write(pieces, directory: str) -> float:
    """Calibration: the same bytes written to the same directory, fsync'd, nothing else."""
    path = Path(directory) / "raw-write.bin"
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for piece in pieces():
            os.write(fd, piece)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def full_path(pieces, size: int) -> tuple[float, str, int]:
    from assets.storage import BlobStager

    with PeakRss() as memory:
        before = memory.peak
        started = time.perf_counter()
        with BlobStager(max_bytes=size) as stager:
            for piece in pieces():
                stager.write(piece)
            staged = stager.finish()
        target = staged.commit()
        elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed, staged.sha256, memory.peak - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--chunk-kb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--storage-dir", help="where the blobs go (default: a temp dir under var/)")
    args = parser.parse_args()

    parent = args.storage_dir or (ROOT / "var" if (ROOT / "var").exists() else None)
    storage = tempfile.mkdtemp(prefix="bench-assets-", dir=parent)
    # Only the storage layer runs here: settings without the app registry keep the benchmark
    # independent of the rest of the project (and of its database).
    from django.conf import settings

    settings.configure(ASSET_STORAGE_DIR=storage)

    size = args.size_mb * 1024 * 1024
    pieces = make_stream(size, args.chunk_kb * 1024)
    ratios, peaks, rows = [], [], []
    for round_number in range(1, args.rounds + 1):
        base_time, base_digest = baseline(pieces)
        disk_time = raw_write(pieces, storage)
        full_time, full_digest, peak = full_path(pieces, size)
        assert base_digest == full_digest, "the stored file's SHA-256 differs from hashlib's"
        ratio = base_time / full_time  # throughput(full) / throughput(baseline)
        ratios.append(ratio)
        peaks.append(peak)
        rows.append(
            f"round {round_number}: sha256 {size / base_time / 1e6:8.1f} MB/s | "
            f"hash+encrypt+store {size / full_time / 1e6:8.1f} MB/s | ratio {ratio:.2f} | "
            f"peak RSS +{peak / 1e6:.1f} MB | (raw write+fsync alone {size / disk_time / 1e6:7.1f} MB/s)"
        )
        print(rows[-1], flush=True)
    shutil.rmtree(storage, ignore_errors=True)
    ratio = statistics.median(ratios)
    peak = max(peaks)
    print(f"size {args.size_mb} MiB, fed in {args.chunk_kb} KiB pieces, {args.rounds} rounds")
    print(
        f"throughput ratio (full path / raw sha256), median: {ratio:.2f}  "
        f"(goal >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})"
    )
    print(
        f"peak memory above baseline, max: {peak / 1e6:.1f} MB  (goal < 100 MB: {'met' if peak < 100e6 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
