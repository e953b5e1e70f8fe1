#!/usr/bin/env python3
"""Entry point of ``make bench``: ``.venv/bin/python bench/run.py`` (see bench/README.md)."""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, so make the repository root importable for the ``bench`` package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.main import main

if __name__ == "__main__":
    raise SystemExit(main())
