"""Checklist definitions, their schema, loading, validation and scoring; the mark-event format."""
