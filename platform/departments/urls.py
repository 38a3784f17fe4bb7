from django.urls import path

from departments import views

app_name = "departments"

urlpatterns = [
    path("", views.department_picker, name="picker"),
    path("<slug:department_slug>/", views.department_home, name="home"),
]
