from django.contrib.auth import views as auth_views
from django.urls import path

from accounts import session_views, views
from accounts.permissions import Action, public

# No namespace: "login" and "logout" are the names Django's settings (LOGIN_URL) refer to.
urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.login_verify, name="login-verify"),
    path("login/enrol/", views.login_enrol, name="login-enrol"),
    path("login/password/", views.login_password, name="login-password"),
    path("logout/", public(Action.SIGN_IN)(auth_views.LogoutView.as_view()), name="logout"),
    path("two-factor/", views.two_factor_settings, name="two-factor"),
    path("two-factor/recovery-codes/", views.recovery_codes, name="recovery-codes"),
    path("password/", views.password_change, name="password-change"),
    path("profile/", views.profile, name="profile"),
    path("api/login/", views.api_login, name="api-login"),
    path("session/", session_views.session_state, name="session-state"),
    path("session/keep-alive/", session_views.session_keep_alive, name="session-keep-alive"),
]
