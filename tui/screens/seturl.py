"""The dialog of ``U``: a new URL for a paused or failed task (an expired link)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Input, Label, Static

from engine.escaping import escape_controls
from engine.models import TaskSnapshot
from tui.formatting import task_name
from tui.screens.dialogs import HttpUrl


@dataclass(frozen=True)
class SetUrlRequest:
    """What the dialog returns."""

    url: str
    """The new URL."""
    restart: bool
    """Start over when the bytes cannot be kept, rather than refuse."""


class SetUrlDialog(ModalScreen[SetUrlRequest | None]):
    """The task's current URL, a field for the new one and a start-over box. Enter sets, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, task: TaskSnapshot) -> None:
        super().__init__()
        self.task_snapshot = task
        """The task whose URL changes."""

    def compose(self) -> ComposeResult:
        """The form."""
        task = self.task_snapshot
        with Vertical(id="dialog", classes="dialog seturl") as box:
            # Text, not markup: a name or URL from a server may hold "[".
            box.border_title = f"New URL for #{task.id}"
            yield Static(Text(escape_controls(task_name(task))), classes="current")
            yield Static(Text(f"now: {escape_controls(task.url)}"), classes="current")
            yield Label("New URL (the same file: its bytes are kept)")
            yield Input(
                placeholder="https://example.com/file.iso?signature=...",
                id="new-url",
                validators=[HttpUrl()],
                validate_on=["changed", "submitted"],
            )
            yield Static("", id="new-url-error", classes="error")
            yield Checkbox("Start over if the new URL serves another file", id="restart")
            yield Static("[b]Enter[/b] set   [b]Esc[/b] cancel   [b]Tab[/b] the box", classes="hint")

    def on_mount(self) -> None:
        """Start in the URL field."""
        self.query_one("#new-url", Input).focus()

    @on(Input.Changed)
    def _validate(self, event: Input.Changed) -> None:
        result = event.validation_result
        # An empty field is not an error until the user tries to submit it.
        text = (
            ""
            if result is None or result.is_valid or not event.value
            else " ".join(result.failure_descriptions)
        )
        self.query_one("#new-url-error", Static).update(text)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        result = event.validation_result
        if result is not None and not result.is_valid:
            self.query_one("#new-url-error", Static).update(" ".join(result.failure_descriptions))
            return
        self.dismiss(SetUrlRequest(event.value.strip(), self.query_one("#restart", Checkbox).value))

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)
