"""The harness that runs the real system for the tests and the benchmarks: free ports, Debian's Chromium, the
review server and the station agent as real processes, a TCP proxy that cuts the network, a clock-step shim,
and the whole exam day under faults.

Why here: the tests (`tests/`) and the benchmarks (`bench/`) both need these, and a benchmark should not import a
test suite. They import both programs, so they cannot live in `media/` or `checklists/` (which import no program),
and neither program should ship test machinery (`pyproject.toml` installs only the four product packages).
`scripts/` already holds what sets up and runs the system for tests, benchmarks and the demo (setup.sh,
services.sh, test.sh, demo.sh); this is its Python half. Each test suite keeps its own helpers in its conftest.py
and takes what is shared from here.
"""
