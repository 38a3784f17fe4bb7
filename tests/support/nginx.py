"""Render the production nginx configuration and run it as a throw-away server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def render_nginx(
    directory: Path,
    *,
    cert: Path,
    key: Path,
    upstreams: str,
    http_port: int,
    https_port: int,
    admin_networks: str = "127.0.0.0/8",
    max_upload_mb: int = 100,
    tls12: bool = False,
) -> Path:
    """Write a complete nginx.conf under ``directory`` that includes the rendered site config."""
    snippets = directory / "snippets"
    snippets.mkdir(parents=True, exist_ok=True)
    (snippets / "platform-headers.conf").write_text((DEPLOY / "nginx" / "platform-headers.conf").read_text())
    site = directory / "platform.conf"
    env = dict(
        os.environ,
        PLATFORM_UPSTREAMS=upstreams,
        ADMIN_ALLOWED_NETWORKS=admin_networks,
        MAX_UPLOAD_MB=str(max_upload_mb),
        TLS_CERT_FILE=str(cert),
        TLS_KEY_FILE=str(key),
        TLS_ALLOW_TLS12="true" if tls12 else "false",
        NGINX_HTTP_PORT=str(http_port),
        NGINX_HTTPS_PORT=str(https_port),
        NGINX_SNIPPETS_DIR=str(snippets),
        PLATFORM_SERVER_NAME="localhost",
    )
    subprocess.run([sys.executable, str(DEPLOY / "render-nginx"), "--out", str(site)], check=True, env=env)
    main = directory / "nginx.conf"
    main.write_text(
        f"""
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
daemon on;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {directory}/access.log;
    client_body_temp_path {directory}/body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {site};
}}
"""
    )
    return main


class NginxServer:
    """A throw-away nginx (the real production site configuration) on loopback ports."""

    def __init__(self, directory: Path, **render_kwargs) -> None:
        import shutil

        self.directory = directory
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.conf = render_nginx(directory, **render_kwargs)
        self.http_port = render_kwargs["http_port"]
        self.https_port = render_kwargs["https_port"]

    def __enter__(self) -> NginxServer:
        subprocess.run([self.binary, "-c", str(self.conf), "-p", str(self.directory)], check=True, capture_output=True)
        from throwaway_services import wait_for_port

        wait_for_port(self.https_port)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(
            [self.binary, "-c", str(self.conf), "-p", str(self.directory), "-s", "stop"], capture_output=True
        )

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""
