def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_the_database(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True


def test_readyz_answers_503_when_a_check_fails(client, db):
    from config import health

    def broken() -> tuple[bool, str]:
        raise ConnectionError("down")

    with health.readiness_check_registered("broken", broken):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broken"] == {"ok": False, "detail": "ConnectionError"}


def test_readyz_reports_every_dependency(client, db):
    checks = client.get("/readyz").json()["checks"]
    assert checks["channel_layer"] == {"ok": True, "detail": "InMemoryChannelLayer"}
    assert checks["storage"]["ok"] is True
    assert checks["audit_signing_key"]["ok"] is True


def test_readyz_channel_layer_on_real_redis(client, db, redis_url, settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        assert client.get("/readyz").json()["checks"]["channel_layer"] == {"ok": True, "detail": "RedisChannelLayer"}
    finally:
        channel_layers.backends.clear()


def test_readyz_fails_when_storage_is_unusable(client, db, settings, tmp_path):
    # A path below a regular file can never be created, whoever runs the test (root included).
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    settings.ASSET_STORAGE_DIR = blocker / "assets"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["storage"] == {"ok": False, "detail": "NotADirectoryError"}


def test_readyz_gives_its_details_to_operators_only(client, db, settings):
    """Outside the administration networks and without the metrics token a caller (a load
    balancer) gets the status alone: the details name internals such as a model's load error."""
    import ipaddress

    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("192.0.2.0/24")]
    settings.METRICS_TOKEN = "t" * 32
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"status": "ready"}
    detailed = client.get("/readyz", HTTP_AUTHORIZATION="Bearer " + "t" * 32).json()
    assert detailed["status"] == "ready" and detailed["checks"]["database"]["ok"] is True


def test_a_check_registered_for_a_block_is_put_back_after_it(client, db):
    from config import health

    def stand_in() -> tuple[bool, str]:
        return True, "stand-in"

    with health.readiness_check_registered("database", stand_in), health.readiness_check_registered("extra", stand_in):
        checks = client.get("/readyz").json()["checks"]
        assert checks["database"] == checks["extra"] == {"ok": True, "detail": "stand-in"}
    checks = client.get("/readyz").json()["checks"]
    assert "extra" not in checks and checks["database"]["detail"] != "stand-in"
