"""The review server: ingest, live fan-out, marking, review and archive."""
