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


def test_readyz_answers_503_when_a_check_fails(client, db, monkeypatch):
    from config import health

    def broken() -> tuple[bool, str]:
        raise ConnectionError("down")

    monkeypatch.setitem(health._readiness_checks, "broken", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broken"] == {"ok": False, "detail": "ConnectionError"}
