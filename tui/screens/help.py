"""The help screen: every key of the dashboard."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.palette import BOLD

KEYS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("a",), "Add a download (URL, file name, directory, connections)"),
    (("p", "space"), "Pause or resume the selected task"),
    (("P",), "Pause all, or resume all when nothing runs"),
    (("r",), "Retry the selected failed or cancelled task"),
    (("d", "delete"), "Remove the task (asks; can also delete its partial file)"),
    (("l",), "Speed limit: global, or the selected task's (empty: none)"),
    (("U",), "New URL for a paused or failed task (expired link)"),
    (("u", "n"), "Move the selected queued task up / down the queue"),
    (("s",), "Cycle sort: queue, name, size, progress, speed, ETA, state"),
    (("slash",), "Filter by name; Enter keeps the filter, Esc clears it"),
    (("e",), "Show or hide the event log"),
    (("up", "down", "pageup", "pagedown"), "Select a task"),
    (("enter",), "Open the selected task's detail screen"),
    (("escape",), "Close the detail screen, a dialog or this help"),
    (("question_mark",), "This help"),
    (("q", "ctrl+c"), "Quit (asks if downloads are active; they resume next time)"),
)
"""Every key the dashboard answers to (Textual key names) and what it does."""

KEY_NAMES = {
    "space": "Space",
    "delete": "Delete",
    "slash": "/",
    "question_mark": "?",
    "enter": "Enter",
    "escape": "Esc",
    "up": "↑",
    "down": "↓",
    "pageup": "PgUp",
    "pagedown": "PgDn",
    "ctrl+c": "Ctrl+C",
}
"""How a Textual key name is written for people."""


def help_table() -> Table:
    """The keys as a two-column table."""
    table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=False)
    table.add_column("Key", style=BOLD, no_wrap=True)
    table.add_column("Action")
    for keys, action in KEYS:
        table.add_row(Text(" ".join(KEY_NAMES.get(k, k) for k in keys)), action)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists every key; Esc, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The key table, scrollable on small terminals."""
        with VerticalScroll(id="dialog", classes="dialog help") as box:
            box.border_title = "fetchtop keys"
            box.border_subtitle = "Esc closes"
            yield Static(help_table())
