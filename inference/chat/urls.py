from django.urls import path

from inference.chat import views

app_name = "chat"

# Mounted at /d/<slug:department_slug>/ (config/urls.py), before the departments app: the chat is
# the department's home page. The department middleware sees the slug, answers 404 to
# non-members and opens the scope before any of these run.
urlpatterns = [
    path("", views.chat_home, name="home"),
    path("chat/status/", views.chat_status, name="status"),
    path("chat/upload/", views.chat_upload, name="upload"),
    path("chat/conversations/<int:conversation_id>/rename/", views.conversation_rename_view, name="rename"),
    path("chat/conversations/<int:conversation_id>/delete/", views.conversation_delete_view, name="delete"),
    path(
        "chat/conversations/<int:conversation_id>/export.<str:format>",
        views.conversation_export_view,
        name="export",
    ),
    path("chat/admin/", views.admin_conversations, name="admin_conversations"),
    path("chat/admin/<int:conversation_id>/", views.admin_conversation, name="admin_conversation"),
    path(
        "chat/admin/<int:conversation_id>/export.<str:format>",
        views.admin_conversation_export,
        name="admin_conversation_export",
    ),
    path("chat/templates/", views.template_list, name="templates"),
    path("chat/templates/<int:template_id>/", views.template_edit, name="template_edit"),
    path("chat/templates/<int:template_id>/delete/", views.template_delete, name="template_delete"),
]
