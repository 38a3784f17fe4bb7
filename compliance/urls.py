from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("", views.entry_list, name="entry_list"),
    path("entries/<int:sequence>/", views.entry_detail, name="entry_detail"),
    path("verify/", views.verify_start, name="verify_start"),
    path("verify/<int:pk>/", views.verify_detail, name="verify_detail"),
    path("export/", views.export_create, name="export_create"),
    path("archives/", views.archive_list, name="archive_list"),
    path("archives/<int:pk>/<str:part>/", views.archive_download, name="archive_download"),
]
