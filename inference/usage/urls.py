"""The usage pages: the system administrator's (``urlpatterns``, mounted at ``/usage/``) and the
department administrator's (``department_urlpatterns``, mounted at ``/d/<slug>/usage/``, where the
department middleware answers 404 to non-members and opens the scope first)."""

from django.urls import path

from inference.usage import views

app_name = "usage"

urlpatterns = [
    path("", views.all_usage, name="page"),
    path("export.csv", views.all_usage_csv, name="csv"),
]

department_urlpatterns = (
    [
        path("", views.department_usage, name="page"),
        path("export.csv", views.department_usage_csv, name="csv"),
    ],
    "department_usage",
)
