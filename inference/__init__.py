# The offline switches must be in the environment before anything imports transformers.
from inference import offline as _offline  # noqa: F401
