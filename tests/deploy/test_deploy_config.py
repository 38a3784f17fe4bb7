"""deploy/ is validated with the real tools: nginx -t and Debian's docker-compose config."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.conftest import DEPLOY, compose_config, require_binary
from tests.support.nginx import render_nginx


@pytest.mark.parametrize("tls12", [False, True])
def test_nginx_accepts_the_rendered_configuration(tmp_path, tls_pair, tls12):
    nginx = require_binary("nginx")
    cert, key = tls_pair
    conf = render_nginx(
        tmp_path,
        cert=cert,
        key=key,
        upstreams="127.0.0.1:8001,127.0.0.1:8002",
        http_port=18080,
        https_port=18443,
        tls12=tls12,
    )
    result = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    site = (tmp_path / "platform.conf").read_text()
    assert ("ssl_protocols TLSv1.2 TLSv1.3;" if tls12 else "ssl_protocols TLSv1.3;") in site
    assert "server 127.0.0.1:8002 max_fails=3" in site
    assert "client_max_body_size 102m;" in site


def test_render_refuses_malformed_values(tmp_path):
    for variable, value in [
        ("PLATFORM_UPSTREAMS", "no-port"),
        ("ADMIN_ALLOWED_NETWORKS", "10.0.0.0/99"),
        ("MAX_UPLOAD_MB", "big"),
    ]:
        result = subprocess.run(
            [sys.executable, str(DEPLOY / "render-nginx"), "--out", str(tmp_path / "x.conf")],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", variable: value},
        )
        assert result.returncode != 0, variable
        assert variable in result.stderr


def test_compose_file_is_valid_for_docker_compose(tmp_path):
    rendered = compose_config(tmp_path)
    # The app network has no egress, the model is read-only, secrets come from files.
    assert "internal: true" in rendered
    assert ":/models:ro" in rendered
    assert "SECRET_KEY_FILE: /run/secrets/secret_key" in rendered
    assert "capabilities:\n              - gpu" in rendered or "- gpu" in rendered


def test_the_image_s_static_build_step_runs_in_the_production_profile(tmp_path):
    """The Dockerfile collects static files with scripts/build-static: production settings (their
    manifest storage), no database reached, no secret baked in."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert "scripts/build-static" in (root / "Dockerfile").read_text()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHON": sys.executable,
        "DATA_DIR": str(tmp_path / "data"),
        "STATIC_ROOT": str(tmp_path / "static"),
    }
    completed = subprocess.run(
        [str(root / "scripts" / "build-static")], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (tmp_path / "static" / "staticfiles.json").is_file()  # the manifest production serves from


def test_stop_timeouts_leave_room_for_the_drain():
    """systemd and compose wait long enough on SIGTERM for the default grace and the drain after
    it (docs/operations.md, "Stopping"): a shorter timeout would kill a process mid-drain."""
    import re
    from pathlib import Path

    from django.conf import settings

    needed = settings.SHUTDOWN_GRACE_SECONDS + 14
    unit = (DEPLOY / "systemd" / "platform@.service").read_text()
    assert int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1)) >= needed
    compose = (Path(DEPLOY) / "compose.yaml").read_text()
    assert int(re.search(r"stop_grace_period: (\d+)s", compose).group(1)) >= needed
