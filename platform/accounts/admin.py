from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from accounts.models import User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "get_full_name", "admin_role", "source", "is_active", "last_login")
    list_filter = ("admin_role", "source", "is_active")
    fieldsets = DjangoUserAdmin.fieldsets + (
        (_("Platform"), {"fields": ("admin_role", "source", "employee_number", "password_changed_at")}),
    )
