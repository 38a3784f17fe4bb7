"""Usage for those who pay for the GPU: requests and tokens per department and person, by day.

Counts only, never content. The source is the audit trail's ``inference.call`` entries
(``inference.model_calls``: one entry per model call, whatever the channel, with its tokens),
summed in the database. The department administrator sees their own department
(``Action.USAGE_VIEW``, ``/d/<slug>/usage/``), the system administrator every department
(``Action.USAGE_VIEW_ALL``, ``/usage/``); each viewing and each CSV export is audited.
"""
