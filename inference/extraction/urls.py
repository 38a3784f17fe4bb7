from django.urls import path

from inference.extraction import views

app_name = "extraction"

# Mounted under /d/<slug:department_slug>/extract/ (config/urls.py): the department middleware
# answers 404 to non-members and opens the scope before any of these run.
urlpatterns = [
    path("", views.extraction_home, name="home"),
    path("results/<uuid:extraction_id>/", views.extraction_result, name="result"),
    path("results/<uuid:extraction_id>/correct/", views.extraction_correct_view, name="correct"),
    path("results/<uuid:extraction_id>/pages/<int:page>/", views.extraction_page_image, name="page"),
    path("batches/<uuid:batch_id>/", views.batch_detail, name="batch"),
    path("batches/<uuid:batch_id>/status/", views.batch_status, name="batch_status"),
    path("batches/<uuid:batch_id>/cancel/", views.batch_cancel_view, name="batch_cancel"),
    path("batches/<uuid:batch_id>/results.<str:fmt>", views.batch_download, name="batch_download"),
]
