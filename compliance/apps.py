from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate
from django.utils.translation import gettext_lazy as _


def _ensure_chain_head(sender, using, **kwargs) -> None:
    """The chain head row must exist; ``flush`` (tests) empties it, post_migrate puts it back."""
    from compliance.models import GENESIS_HASH, AuditChainHead

    AuditChainHead.objects.using(using).get_or_create(pk=1, defaults={"sequence": 0, "hash": GENESIS_HASH})


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = _("Compliance")

    def ready(self) -> None:
        from compliance import signals  # noqa: F401  (connects the login/logout receivers)
        from compliance.migration_guard import migrate_guard
        from compliance.preview_crypto import preview_keys_purge
        from compliance.retention import register_purger

        post_migrate.connect(_ensure_chain_head, sender=self, dispatch_uid="compliance_chain_head")
        # Outside dev/test, no migration plan may remove or alter the audit trail (AU-3).
        pre_migrate.connect(migrate_guard, sender=self, dispatch_uid="compliance_migrate_guard")
        # Previews tied to no object expire with the department's conversations (docs/audit.md).
        register_purger("compliance.audit_previews", preview_keys_purge, days_field="conversation_days")
