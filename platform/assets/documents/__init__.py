"""Documents: the text layer of every page (PDF text, OCR), retrieval, grounding and search.

``pages`` holds the shapes every part shares; see docs/assets.md ("Documents").
"""
