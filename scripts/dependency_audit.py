#!/usr/bin/env python
"""Dependency audit of the pinned requirements (IP-3), run by `make test` and so by CI.

    python scripts/dependency_audit.py [--output FILE]   (default: $DEPENDENCY_AUDIT_RESULT, else
                                                          $DATA_DIR/dependency-audit.json, else var/)

Runs pip-audit over requirements.txt and requirements-nodeps.txt. A known vulnerability fails
the run unless it is listed in
deploy/dependency-audit-accepted.txt (``ID package reason...`` per line). Packages the
vulnerability service could not answer for are reported as *unverified*, never as clean: the
result file says so, and `manage.py compliance_report` shows IP-3 as failing until a run has
verified every package (e.g. against the organisation's internal PyPI mirror with its JSON API).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "deploy" / "dependency-audit-accepted.txt"


def accepted_findings() -> dict[tuple[str, str], str]:
    accepted = {}
    if ACCEPTED.exists():
        for number, line in enumerate(ACCEPTED.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                sys.exit(f"{ACCEPTED}:{number}: expected 'ID package reason'")
            accepted[(parts[0], parts[1].lower())] = parts[2]
    return accepted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Where the compliance report reads it (settings.DEPENDENCY_AUDIT_RESULT, same default).
    default_output = os.environ.get("DEPENDENCY_AUDIT_RESULT") or str(
        Path(os.environ.get("DATA_DIR") or ROOT / "var") / "dependency-audit.json"
    )
    parser.add_argument("--output", type=Path, default=Path(default_output))
    args = parser.parse_args()
    pip_audit = Path(sys.executable).with_name("pip-audit")
    result = subprocess.run(
        [
            str(pip_audit),
            "-r",
            str(ROOT / "requirements.txt"),
            "-r",
            str(ROOT / "requirements-nodeps.txt"),
            "--disable-pip",
            "--no-deps",
            "--format",
            "json",
            "--vulnerability-service",
            "pypi",
            "--progress-spinner",
            "off",
        ],
        capture_output=True,
        text=True,
    )
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(f"dependency audit: pip-audit failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    accepted = accepted_findings()
    findings, accepted_used, unverified = [], [], []
    for dependency in report.get("dependencies", []):
        name = dependency["name"].lower()
        if dependency.get("skip_reason"):
            unverified.append(name)
            continue
        for vulnerability in dependency.get("vulns", []):
            key = (vulnerability["id"], name)
            row = {"id": vulnerability["id"], "package": name, "version": dependency.get("version")}
            if key in accepted:
                accepted_used.append({**row, "reason": accepted[key]})
            else:
                findings.append({**row, "fix_versions": vulnerability.get("fix_versions", [])})
    status = "findings" if findings else ("unverified" if unverified else "clean")
    summary = {
        "checked_at": datetime.now(UTC).isoformat(),
        "status": status,
        "packages": len(report.get("dependencies", [])),
        "findings": findings,
        "accepted": accepted_used,
        "unverified": unverified,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(
        f"dependency audit: {status}: {summary['packages']} packages, {len(findings)} unaccepted findings, "
        f"{len(accepted_used)} accepted, {len(unverified)} unverified (vulnerability data unavailable)"
    )
    for finding in findings:
        print(f"  {finding['id']} in {finding['package']} {finding['version']} (fixed in {finding['fix_versions']})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
