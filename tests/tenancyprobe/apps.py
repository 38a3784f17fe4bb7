from django.apps import AppConfig


class TenancyProbeConfig(AppConfig):
    name = "tests.tenancyprobe"
    label = "tenancyprobe"
