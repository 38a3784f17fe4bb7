"""The models of the inference app, defined by feature and registered here under one app label
(``inference``), so the migrations stand: the chat's in ``inference.chat.models``, templates,
extractions and batch jobs in ``inference.extraction.models``."""

from inference.chat.models import (  # noqa: F401
    ChatPolicy,
    ChatTurnStamp,
    ChatUpload,
    Conversation,
    ConversationMessage,
    MessageRole,
    MessageStatus,
)
from inference.extraction.models import (  # noqa: F401
    BatchJob,
    BatchStatus,
    Extraction,
    ExtractionStatus,
    TaskTemplate,
)
from inference.registry.models import (  # noqa: F401
    ActivationKind,
    DepartmentModelAccess,
    ModelActivation,
    ModelVersion,
)
