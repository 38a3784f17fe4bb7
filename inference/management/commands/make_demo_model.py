"""Build the tiny random-weight demo model (tests, benchmarks, `make run` without real weights)."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference.engine.demo_model import FAMILIES, SIZES, DemoModelSpec, build_demo_model
from inference.engine.manifest import MANIFEST_NAME, manifest_write


class Command(BaseCommand):
    help = "Build a tiny random-weight vision-language model (answers are noise) with its SHA-256 manifest."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", type=Path, default=None, help="directory (default: MODEL_PATH)")
        parser.add_argument(
            "--family",
            choices=FAMILIES,
            default=FAMILIES[0],
            help="architecture family, as transformers names it (model_type); see docs/inference.md",
        )
        parser.add_argument("--size", choices=SIZES, default="tiny")
        parser.add_argument("--if-missing", action="store_true", help="do nothing if a model is already there")
        parser.add_argument("--force", action="store_true", help="replace an existing directory")

    def handle(self, *args, output: Path | None, family: str, size: str, if_missing: bool, force: bool, **options):
        output = Path(output or settings.MODEL_PATH)
        if output.exists() and any(output.iterdir()):
            if if_missing and (output / "config.json").exists():
                self.stdout.write(f"A model is already in {output}; leaving it as it is.")
                return
            if not force:
                raise CommandError(f"{output} is not empty (use --force to replace it, --if-missing to keep it)")
            if not (output / "DEMO_MODEL.json").exists():
                raise CommandError(f"{output} does not hold a demo model; refusing to delete it")
            shutil.rmtree(output)
        build_demo_model(output, DemoModelSpec(family=family, size=size))
        digest = manifest_write(output)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo model ({family}, {size}) written to {output}; {MANIFEST_NAME} sha256 {digest}. "
                "It has random weights: its answers are noise."
            )
        )
