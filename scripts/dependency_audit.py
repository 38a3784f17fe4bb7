#!/usr/bin/env python
"""Dependency audit of the pinned requirements (IP-3): run by `make test` (so by CI) and, in a
deployment, on a schedule (deploy/systemd/platform-dependency-audit.timer).

    python scripts/dependency_audit.py [--output FILE] [--service pypi|osv]
        output default: $DEPENDENCY_AUDIT_RESULT, else $DATA_DIR/dependency-audit.json, else var/
        service default: $DEPENDENCY_AUDIT_SERVICE, else pypi

Runs pip-audit over requirements.txt and requirements-nodeps.txt against the named advisory
service (reached directly or through the proxy in HTTPS_PROXY). A known vulnerability fails the
run unless it is listed in deploy/dependency-audit-accepted.txt (``ID package reason...`` per
line). Packages the service could not answer for are reported as *unverified*, never as clean.
The result file names the service it used; `manage.py compliance_report` reads it (IP-3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ACCEPTED = ROOT / "deploy" / "dependency-audit-accepted.txt"
REQUIREMENTS = (ROOT / "requirements.txt", ROOT / "requirements-nodeps.txt")
SERVICES = ("pypi", "osv")  # pip-audit's vulnerability services


def accepted_findings(path: Path = ACCEPTED) -> dict[tuple[str, str], str]:
    accepted = {}
    if path.exists():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 2)
            if len(parts) < 3:
                sys.exit(f"{path}:{number}: expected 'ID package reason'")
            accepted[(parts[0], parts[1].lower())] = parts[2]
    return accepted


def default_output(environ: dict[str, str] | os._Environ = os.environ) -> Path:
    """Where the compliance report reads it (settings.DEPENDENCY_AUDIT_RESULT, same default)."""
    return Path(
        environ.get("DEPENDENCY_AUDIT_RESULT")
        or Path(environ.get("DATA_DIR") or ROOT / "var") / "dependency-audit.json"
    )


def summarise(report: dict[str, Any], accepted: dict[tuple[str, str], str], *, service: str) -> dict[str, Any]:
    """pip-audit's JSON report → the result file's content."""
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
    return {
        "checked_at": datetime.now(UTC).isoformat(),
        "status": "findings" if findings else ("unverified" if unverified else "clean"),
        "vulnerability_service": service,
        "packages": len(report.get("dependencies", [])),
        "findings": findings,
        "accepted": accepted_used,
        "unverified": unverified,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=default_output())
    parser.add_argument("--service", choices=SERVICES, default=os.environ.get("DEPENDENCY_AUDIT_SERVICE") or "pypi")
    args = parser.parse_args()
    command = [str(Path(sys.executable).with_name("pip-audit"))]
    for requirements in REQUIREMENTS:
        command += ["-r", str(requirements)]
    command += ["--disable-pip", "--no-deps", "--format", "json", "--vulnerability-service", args.service]
    result = subprocess.run([*command, "--progress-spinner", "off"], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(f"dependency audit: pip-audit failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    summary = summarise(report, accepted_findings(), service=args.service)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    findings = summary["findings"]
    print(
        f"dependency audit ({args.service}): {summary['status']}: {summary['packages']} packages, "
        f"{len(findings)} unaccepted findings, {len(summary['accepted'])} accepted, "
        f"{len(summary['unverified'])} unverified (vulnerability data unavailable)"
    )
    for finding in findings:
        print(f"  {finding['id']} in {finding['package']} {finding['version']} (fixed in {finding['fix_versions']})")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
