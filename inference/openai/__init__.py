"""The OpenAI-compatible API: ``GET /v1/models`` and ``POST /v1/chat/completions``, and the images
its requests carry."""
