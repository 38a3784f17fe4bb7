"""The enumerated audit event types and outcomes (AU-1, AU-2).

Event types are dotted strings grouped by subsystem; add new ones here, never free text.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Outcome(models.TextChoices):
    SUCCESS = "success", _("Success")
    FAILURE = "failure", _("Failure")
    DENIED = "denied", _("Denied")


class ActorType(models.TextChoices):
    USER = "user", _("User")
    API_KEY = "api_key", _("API key")
    SYSTEM = "system", _("System")
    ANONYMOUS = "anonymous", _("Anonymous")


class EventType(models.TextChoices):
    # Authentication and sessions
    LOGIN = "auth.login", _("Login")
    LOGIN_FAILED = "auth.login_failed", _("Failed login")
    LOGOUT = "auth.logout", _("Logout")
    LOCKOUT = "auth.lockout", _("Account or address locked")
    UNLOCK = "auth.unlock", _("Lock lifted")
    SESSION_EXPIRED = "auth.session_expired", _("Session expired")
    PASSWORD_CHANGE = "auth.password_change", _("Password changed")
    TOTP_ENROL = "auth.totp_enrol", _("Two-factor device enrolled")
    TOTP_VERIFY = "auth.totp_verify", _("Two-factor verification")
    # Accounts, departments, roles and policy
    USER_CREATE = "user.create", _("User created")
    USER_UPDATE = "user.update", _("User changed")
    USER_DISABLE = "user.disable", _("User disabled")
    ROLE_CHANGE = "user.role_change", _("Administrator role changed")
    MEMBERSHIP_ADD = "membership.add", _("Membership added")
    MEMBERSHIP_CHANGE = "membership.change", _("Membership changed")
    MEMBERSHIP_REMOVE = "membership.remove", _("Membership removed")
    DEPARTMENT_CREATE = "department.create", _("Department created")
    DEPARTMENT_UPDATE = "department.update", _("Department changed")
    GROUP_MAPPING_CHANGE = "policy.group_mapping", _("Directory group mapping changed")
    RETENTION_POLICY_CHANGE = "policy.retention", _("Retention policy changed")
    SECURITY_SETTING_CHANGE = "policy.security_setting", _("Security setting changed")
    ADMIN_CHANGE = "admin.change", _("Administration console change")
    DIRECTORY_SYNC = "directory.sync", _("Directory synchronisation")
    # Business objects
    ASSET_UPLOAD = "asset.upload", _("File uploaded")
    ASSET_VIEW = "asset.view", _("File viewed")
    ASSET_DOWNLOAD = "asset.download", _("File downloaded")
    ASSET_DELETE = "asset.delete", _("File deleted")
    ASSET_UPDATE = "asset.update", _("File details changed")
    ASSET_KEY_ROTATE = "asset.key_rotate", _("File master key rotated")
    CONVERSATION_CREATE = "conversation.create", _("Conversation created")
    CONVERSATION_UPDATE = "conversation.update", _("Conversation changed")
    CONVERSATION_DELETE = "conversation.delete", _("Conversation deleted")
    CONVERSATION_VIEW = "conversation.view", _("Conversation content viewed")
    CONVERSATION_EXPORT = "conversation.export", _("Conversation exported")
    INFERENCE = "inference.call", _("Model call")
    # Written before a streamed answer's first token: if it cannot be written, nothing is sent
    # (AU-4); the inference.call entry with the outcome follows when the stream ends.
    INFERENCE_START = "inference.start", _("Model call started")
    EXTRACTION = "inference.extraction", _("Structured extraction")
    MODEL_LOAD = "model.load", _("Model loaded")
    # The model registry (docs/inference.md, "Model versions"): each step of a version's life
    MODEL_REGISTER = "model.register", _("Model version registered")
    MODEL_APPROVE = "model.approve", _("Model version approved")
    MODEL_ACTIVATE = "model.activate", _("Model version activated")
    MODEL_ROLLBACK = "model.rollback", _("Model version rolled back")
    MODEL_ACCESS_CHANGE = "model.access_change", _("Department model access changed")
    API_KEY_CREATE = "api_key.create", _("API key created")
    API_KEY_REVOKE = "api_key.revoke", _("API key revoked")
    TASK_TEMPLATE_CHANGE = "task_template.change", _("Task template changed")
    BATCH_CREATE = "inference.batch_create", _("Batch job created")
    BATCH_CANCEL = "inference.batch_cancel", _("Batch job cancelled")
    BATCH_FINISH = "inference.batch_finish", _("Batch job finished")
    EXTRACTION_CORRECT = "extraction.correct", _("Extracted value corrected")
    # Usage figures (requests and tokens, never content): each viewing and each export
    USAGE_VIEW = "usage.view", _("Usage viewed")
    USAGE_EXPORT = "usage.export", _("Usage exported")
    # Audit trail and retention
    AUDIT_VIEW = "audit.view", _("Audit trail viewed")
    AUDIT_EXPORT = "audit.export", _("Audit trail exported")
    AUDIT_CHECKPOINT = "audit.checkpoint", _("Audit checkpoint signed")
    AUDIT_PURGE = "audit.purge", _("Expired audit entries purged")
    RETENTION_PURGE = "retention.purge", _("Expired business data purged")
    COMPLIANCE_REPORT = "compliance.report", _("Compliance report produced")
    BACKUP = "operations.backup", _("Backup taken")
    RESTORE = "operations.restore", _("Backup restored")
    # Denials of every kind (AU-1): 404s for other departments' objects included
    ACCESS_DENIED = "access.denied", _("Access denied")
