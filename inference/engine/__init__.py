"""The inference engine, free of Django: loading a verified model directory (``loading``,
``manifest``), turning messages into model inputs (``inputs``, ``prompting``), a bounded fair
queue (``scheduler``), batched streaming generation (``generation``), the caller's handle
(``handles``), and ``core.Engine`` tying them together. ``inference.runtime`` builds the process's
engine from the Django settings."""
