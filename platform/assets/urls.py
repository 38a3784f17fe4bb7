from django.urls import path

from assets import views
from assets.documents import search_views

app_name = "assets"

# Mounted under /d/<slug:department_slug>/files/ (config/urls.py): the department middleware
# sees the slug, answers 404 to non-members and opens the scope before any of these run.
urlpatterns = [
    path("", views.file_list, name="list"),
    path("upload/", views.file_upload, name="upload"),
    path("search/", search_views.document_search_page, name="search"),
    path("text-status/", views.file_text_status, name="text-status"),
    path("<uuid:asset_id>/", views.file_detail, name="detail"),
    path("<uuid:asset_id>/download/", views.file_download, name="download"),
    path("<uuid:asset_id>/thumbnail/", views.file_thumbnail, name="thumbnail"),
    path("<uuid:asset_id>/delete/", views.file_delete, name="delete"),
]
