"""Structured extraction: task templates and their rules, extraction of one file, batch jobs over
many, and their REST API."""
