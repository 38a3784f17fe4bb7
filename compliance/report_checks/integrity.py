"""The compliance report's checks: 数据完整性 / 保密性 integrity and confidentiality (DI-1, DC-1, DC-2)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext_noop as _

from compliance.report import Evidence, Term, control, line, manual, not_applicable
from compliance.report_checks.live import (
    NONE,
    chain,
    listing,
    tls,
    users,
)

BLOB_SAMPLE = 20


@control("DI-1", _("Integrity by cryptography: TLS, SHA-256 of files, authenticated encryption, audit chain"))
def check_di1() -> list[Evidence]:
    from assets.chunk_format import HEADER_SIZE, MAGIC
    from assets.models import Asset
    from assets.storage import blob_path

    evidence = []
    total = Asset._base_manager.count()
    if not total:
        evidence.append(not_applicable(_("no stored files yet")))
    else:
        missing_hash = Asset._base_manager.filter(sha256="").count()
        names = list(
            Asset._base_manager.order_by("-pk").values_list("storage_name", flat=True).distinct()[:BLOB_SAMPLE]
        )
        not_sealed = []
        for name in names:
            try:
                with blob_path(name).open("rb") as handle:
                    if handle.read(HEADER_SIZE)[: len(MAGIC)] != MAGIC:
                        not_sealed.append(name)
            except OSError:
                not_sealed.append(name)
        evidence.append(
            line(
                not missing_hash,
                _("{total} stored files, {missing} without SHA-256"),
                total=total,
                missing=missing_hash,
            )
        )
        evidence.append(
            line(
                not not_sealed,
                _(
                    "{count} sampled blobs in the authenticated AES-256-GCM chunk format; "
                    "not in it or unreadable: {names}"
                ),
                count=len(names),
                names=listing(not_sealed) or NONE,
            )
        )
    result = chain()
    evidence.append(
        line(result.ok, _("audit entries hash-chained and verified up to #{last}"), last=result.last_sequence or 0)
    )
    probe = tls()
    evidence.append(
        line(
            bool(probe.accepted("TLSv1.3")),
            _("in transit: TLS 1.3 with a verified certificate at PUBLIC_URL: {answer}"),
            answer=probe.problem or probe.handshakes["TLSv1.3"].detail,
        )
    )
    return evidence


@control("DC-1", _("Confidentiality in transit (TLS 1.2+, 1.3 preferred)"))
def check_dc1() -> list[Evidence]:
    probe = tls()
    if probe.problem:
        return [line(False, probe.problem_template, **probe.problem_params)]
    evidence = []
    tls13 = probe.handshakes["TLSv1.3"]
    evidence.append(line(bool(tls13.accepted), _("TLS 1.3 at {url}: {detail}"), url=probe.url, detail=tls13.detail))
    tls12 = probe.handshakes["TLSv1.2"]
    evidence.append(
        line(
            tls12.accepted is not None,
            _("TLS 1.2 (allowed, 1.3 preferred) accepted: {accepted} ({detail})"),
            accepted=tls12.accepted,
            detail=tls12.detail,
        )
    )
    for version in ("TLSv1.1", "TLSv1"):
        handshake = probe.handshakes[version]
        if handshake.accepted is None:
            evidence.append(
                manual(
                    _(
                        "{version}: {detail}; check from another host that the server refuses it "
                        "(openssl s_client -connect HOST:PORT -{flag})"
                    ),
                    version=version,
                    detail=handshake.detail,
                    flag="tls1_1" if version == "TLSv1.1" else "tls1",
                )
            )
        else:
            evidence.append(
                line(not handshake.accepted, _("{version} refused: {detail}"), version=version, detail=handshake.detail)
            )
    return evidence


@control("DC-2", _("Confidentiality at rest: password hashes, encrypted files and secrets"))
def check_dc2() -> list[Evidence]:
    from django.contrib.auth.hashers import identify_hasher

    hasher = settings.PASSWORD_HASHERS[0].rsplit(".", 1)[-1]
    strong = {"Argon2PasswordHasher", "PBKDF2PasswordHasher", "ScryptPasswordHasher", "BCryptSHA256PasswordHasher"}
    weak_stored: dict[str, int] = {}
    for encoded in users().exclude(password="").values_list("password", flat=True).iterator():
        if encoded.startswith("!"):
            continue  # unusable password (directory accounts)
        try:
            name = type(identify_hasher(encoded)).__name__
        except ValueError:
            name = "unknown"
        if name not in strong:
            weak_stored[name] = weak_stored.get(name, 0) + 1
    key_file = Path(settings.ASSET_MASTER_KEY_FILE)
    mode = key_file.stat().st_mode & 0o777 if key_file.is_file() else None
    return [
        line(hasher in strong, _("password hasher for new passwords: {hasher}"), hasher=hasher),
        line(
            not weak_stored,
            _("stored passwords under a weak or unknown hasher: {counts}"),
            counts=listing(f"{name}: {n}" for name, n in sorted(weak_stored.items())) or NONE,
        ),
        line(
            mode is not None and not mode & 0o077,
            _("asset master key ring {path}: {found}"),
            path=str(key_file),
            found=(f"mode {oct(mode)}" if mode is not None else Term(_("missing"))),
        ),
    ]
