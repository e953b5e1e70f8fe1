"""fetchtop's download engine: segmented, resumable HTTP(S) downloads on asyncio, with no UI."""

from engine.client import EngineClient, EngineError
from engine.models import (
    EngineSnapshot,
    SegmentSnapshot,
    SegmentState,
    TaskOptions,
    TaskSnapshot,
    TaskState,
)

__all__ = [
    "EngineClient",
    "EngineError",
    "EngineSnapshot",
    "SegmentSnapshot",
    "SegmentState",
    "TaskOptions",
    "TaskSnapshot",
    "TaskState",
]
