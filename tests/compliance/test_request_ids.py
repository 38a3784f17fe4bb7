"""A request id a client chose never becomes an entry's own (AU-3): it is validated and kept in the
entry's details as ``client_request_id``; the entry's id is the server's, or its trusted proxy's.
The client address is believed from X-Forwarded-For only when a trusted proxy sent it."""

from __future__ import annotations

import ipaddress

import pytest
from django.core.checks import run_checks

from compliance.context import RequestContext, request_context
from compliance.events import EventType
from compliance.middleware import client_address, request_ids_from
from compliance.services import audit_record

PROXY = "127.0.0.1"
NGINX_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def nginx_trusted(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network(f"{PROXY}/32")]
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.30.0/24")]


def test_with_no_trusted_proxy_a_loopback_client_is_itself(settings):
    settings.TRUSTED_PROXIES = []  # the default (tests/deploy/test_proxy_trust.py starts with it)
    meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_REQUEST_ID": NGINX_ID}
    assert client_address(meta) == "127.0.0.1"
    assert request_ids_from(meta)[1] == NGINX_ID  # loopback is a client like any other


def test_a_direct_client_chooses_neither_its_address_nor_the_request_id(nginx_trusted):
    meta = {"REMOTE_ADDR": "10.1.2.3", "HTTP_X_FORWARDED_FOR": "10.20.30.4", "HTTP_X_REQUEST_ID": "client-chosen-01"}
    assert client_address(meta) == "10.1.2.3"
    own, supplied = request_ids_from(meta)
    assert own != "client-chosen-01" and len(own) == 32
    assert supplied == "client-chosen-01"


def test_through_the_proxy_its_id_is_the_server_s_and_the_client_s_is_apart(nginx_trusted):
    meta = {
        "REMOTE_ADDR": PROXY,
        "HTTP_X_FORWARDED_FOR": "10.1.2.3",
        "HTTP_X_REQUEST_ID": NGINX_ID,
        "HTTP_X_CLIENT_REQUEST_ID": "client-chosen-02",
    }
    assert client_address(meta) == "10.1.2.3"
    assert request_ids_from(meta) == (NGINX_ID, "client-chosen-02")


@pytest.mark.parametrize("value", ["short", "x" * 65, "has space in it", "semi;colon;id", "ünïcode-id-0001"])
def test_malformed_ids_are_dropped(nginx_trusted, value):
    own, supplied = request_ids_from({"REMOTE_ADDR": "10.1.2.3", "HTTP_X_REQUEST_ID": value})
    assert supplied == "" and own != value
    own, supplied = request_ids_from({"REMOTE_ADDR": PROXY, "HTTP_X_REQUEST_ID": value})
    assert own != value and supplied == ""


@pytest.mark.django_db
def test_the_entry_keeps_the_client_s_id_in_its_details():
    context = RequestContext(request_id="server-own-id-0001", client_request_id="client-chosen-03", source_ip=PROXY)
    with request_context(context):
        entry = audit_record(event_type=EventType.ACCESS_DENIED, outcome="denied", details={"reason": "probe"})
    assert entry.request_id == "server-own-id-0001"
    assert entry.details == {"reason": "probe", "client_request_id": "client-chosen-03"}
    with request_context(RequestContext(request_id="server-own-id-0002", source_ip=PROXY)):
        plain = audit_record(event_type=EventType.ACCESS_DENIED, outcome="denied", details={"reason": "probe"})
    assert plain.details == {"reason": "probe"}


def test_an_admin_network_containing_a_trusted_proxy_is_refused(settings):
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.20.30.0/24")]
    assert [problem.id for problem in run_checks()].count("accounts.E002") == 1
    settings.ADMIN_ALLOWED_NETWORKS = [ipaddress.ip_network("10.20.30.0/24")]
    assert "accounts.E002" not in [problem.id for problem in run_checks()]
    # A trusted network that reaches into the admin network is as bad as the other way round.
    settings.TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]
    assert "accounts.E002" in [problem.id for problem in run_checks()]
