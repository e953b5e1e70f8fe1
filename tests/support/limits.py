"""The time limits every test shares, generous so a loaded machine slows a test down without failing it."""

from __future__ import annotations

LIMIT = 30.0
"""Seconds any one wait for a condition may take."""
RUN_TIMEOUT = 60.0
"""Seconds one ``fetchtop`` command run as a child process may take before it is killed."""
START_TIMEOUT = 20.0
"""Seconds a child server (the daemon) may take to start listening."""
INTERVAL = 0.02
"""Seconds between two looks at a polled condition, unless a waiter says otherwise."""
