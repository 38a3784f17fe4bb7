"""The API's shape is a contract with OA/ERP integrators: a change to it must be deliberate.

If this fails after an intended change, regenerate the snapshot with
``PLATFORM_PROFILE=test .venv/bin/python tests/api/test_openapi_contract.py`` and commit it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

SNAPSHOT = Path(__file__).with_name("openapi_contract.json")
METHODS = ("get", "post", "put", "patch", "delete")


def schema_shape(schema: dict) -> dict:
    paths = {
        path: sorted(method for method in operations if method in METHODS)
        for path, operations in schema["paths"].items()
        if path.startswith(("/v1/", "/api/v1/"))
    }
    operations = {
        f"{method.upper()} {path}": {
            "operationId": operation.get("operationId"),
            "security": sorted(name for item in operation.get("security", []) for name in item),
            "responses": sorted(operation.get("responses", {})),
        }
        for path, methods in schema["paths"].items()
        if path.startswith(("/v1/", "/api/v1/"))
        for method, operation in methods.items()
        if method in METHODS
    }
    return {
        "paths": paths,
        "operations": operations,
        "components": sorted(schema.get("components", {}).get("schemas", {})),
        "security_schemes": sorted(schema.get("components", {}).get("securitySchemes", {})),
    }


def current_schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.mark.django_db
def test_the_schema_has_the_committed_shape(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    served = json.loads(response.content)
    assert served["openapi"].startswith("3.")
    assert schema_shape(served) == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


@pytest.mark.django_db
def test_every_operation_is_behind_an_api_key(client):
    schema = json.loads(client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method in METHODS and path.startswith(("/v1/", "/api/v1/")):
                assert operation["security"] == [{"ApiKey": []}], (method, path)


@pytest.mark.django_db
def test_the_docs_page_loads_everything_from_this_server(client):
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page
    external = [url for url in re.findall(r"""(?:src|href)=["']([^"']+)""", page) if re.match(r"(?:https?:)?//", url)]
    assert external == []
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", page)
    assert assets and all(client.get(url).status_code == 200 for url in assets)


if __name__ == "__main__":  # regenerate the snapshot after a deliberate change
    import os
    import sys

    sys.path[:0] = [str(Path(__file__).resolve().parents[2] / "platform"), str(Path(__file__).resolve().parents[2])]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    SNAPSHOT.write_text(json.dumps(schema_shape(current_schema()), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {SNAPSHOT}")
