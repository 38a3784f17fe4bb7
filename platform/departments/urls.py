from django.urls import path

from departments import views
from departments.api_keys import views as api_key_views

app_name = "departments"

urlpatterns = [
    path("", views.department_picker, name="picker"),
    path("<slug:department_slug>/api-keys/", api_key_views.api_key_page, name="api_keys"),
    path(
        "<slug:department_slug>/api-keys/<int:key_id>/revoke/",
        api_key_views.api_key_revoke_view,
        name="api_key_revoke",
    ),
]
