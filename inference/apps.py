from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InferenceConfig(AppConfig):
    name = "inference"
    verbose_name = _("Inference")

    def ready(self) -> None:
        from django.conf import settings

        from config.health import register_readiness_check
        from inference.engine import model_readiness
        from inference.metrics import register_metrics

        if settings.MODEL_READINESS_CHECK:
            register_readiness_check("model", model_readiness)
        register_metrics()
