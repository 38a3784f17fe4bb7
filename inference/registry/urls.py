from django.urls import path

from inference.registry import views

app_name = "department_models"

# Mounted at /d/<slug:department_slug>/models/ (config/urls.py): the department middleware
# answers 404 to non-members and opens the scope before these run.
urlpatterns = [
    path("", views.department_models_page, name="page"),
    path("<int:version_id>/", views.department_model_switch, name="switch"),
]
