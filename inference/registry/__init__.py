"""The model registry: which model directories exist as versions, which the security
administrator approved, which one the system administrator activated (and the history that a
rollback walks back), and which approved versions each department enabled.

docs/inference.md, "Model versions", is the operator's side of this.
"""
