from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


def conversation_retention_purger(department, cutoff, dry_run: bool) -> int:
    """Conversations untouched for the policy's conversation_days, with their chat-only files."""
    from inference.chat.services import conversation_purge_expired

    return conversation_purge_expired(department=department, cutoff=cutoff, dry_run=dry_run)


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = _("Inference")

    def ready(self) -> None:
        from django.conf import settings

        from config.health import register_readiness_check
        from inference.metrics import register_metrics
        from inference.runtime import model_readiness

        if settings.MODEL_READINESS_CHECK:
            register_readiness_check("model", model_readiness)
        register_metrics()

        from compliance.retention import register_purger

        register_purger("inference.conversations", conversation_retention_purger, days_field="conversation_days")

        from accounts.permissions import CHAT_CONTENT_SWITCH, department_switch_register
        from inference.chat.selectors import chat_policy_admin_may_read

        department_switch_register(
            CHAT_CONTENT_SWITCH, lambda department: chat_policy_admin_may_read(department=department)
        )
