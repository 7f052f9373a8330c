"""Capture, timestamping, encoding and segmenting shared by the agent and the server. No network, no database."""
