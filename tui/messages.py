"""Messages the dashboard posts to itself: from the event worker to the app's handlers.

Each is a small dataclass (Textual runs ``Message.__post_init__`` for them). A message that only
carries the latest state says so with ``can_replace``, so a burst queued while the app was busy
is handled once, with the newest value.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from engine.events import Event
from engine.models import EngineSnapshot


@dataclass
class SnapshotArrived(Message):
    """The engine published a new snapshot; a newer one supersedes it if both are queued."""

    snapshot: EngineSnapshot
    """The engine's state."""

    def can_replace(self, message: Message) -> bool:
        """Only the newest snapshot matters, so a burst of them is merged into the last."""
        return isinstance(message, SnapshotArrived)


@dataclass
class EngineEventArrived(Message):
    """A lifecycle event (added, retrying, failed, completed, ...) for the event log.

    Never merged: every event is a line of the log.
    """

    event: Event
    """The engine's event."""


@dataclass
class ConnectionChanged(Message):
    """The event stream broke or came back.

    Never merged: a drop and a recovery queued together must both reach the user.
    """

    connected: bool
    """Whether events flow."""
    reason: str = ""
    """Why it broke, one line."""
