"""The station agent: runs on each simulation-room PC."""
