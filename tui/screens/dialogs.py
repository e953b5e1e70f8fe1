"""Modal dialogs: add a download, set a limit, confirm removal, quit (and what becomes of the downloads)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar
from urllib.parse import urlsplit

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.validation import Integer, ValidationResult, Validator
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from engine.escaping import escape_controls
from engine.models import TaskOptions, TaskSnapshot, TaskState
from engine.units import parse_rate
from tui.formatting import limit_input, task_name


class HttpUrl(Validator):
    """Accepts http:// and https:// URLs with a host."""

    def validate(self, value: str) -> ValidationResult:
        """Check the scheme and host."""
        text = value.strip()
        if not text:
            return self.failure("Enter the URL to download.")
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            return self.failure(f"Not a URL: {exc}.")
        if parts.scheme not in ("http", "https"):
            return self.failure("The URL must start with http:// or https://.")
        if not parts.hostname:
            return self.failure("The URL needs a host name.")
        if any(c.isspace() for c in text):
            return self.failure("The URL must not contain spaces.")
        return self.success()


class FileName(Validator):
    """Accepts an empty name (derive it) or a plain file name without directories."""

    def validate(self, value: str) -> ValidationResult:
        """Reject path separators and dot names."""
        name = value.strip()
        if not name:
            return self.success()
        if "/" in name or "\\" in name or name in (".", ".."):
            return self.failure("A file name only, without directories.")
        return self.success()


class Rate(Validator):
    """Accepts what :func:`engine.units.parse_rate` reads: ``500K``, ``2M``; empty means none."""

    def validate(self, value: str) -> ValidationResult:
        """Parse the rate."""
        try:
            parse_rate(value)
        except ValueError as exc:
            message = str(exc)
            return self.failure(message[:1].upper() + message[1:] + ".")
        return self.success()


@dataclass(frozen=True)
class AddRequest:
    """What the add dialog returns."""

    url: str
    """The URL to download."""
    options: TaskOptions
    """The defaults with the dialog's name, directory and connections."""


class AddDialog(ModalScreen[AddRequest | None]):
    """URL (validated as you type), optional file name, directory and connections. Enter adds, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, defaults: TaskOptions) -> None:
        super().__init__()
        self.defaults = defaults
        """Options the new download starts from."""

    def compose(self) -> ComposeResult:
        """The form."""
        with Vertical(id="dialog", classes="dialog") as box:
            box.border_title = "Add a download"
            yield Label("URL")
            yield Input(
                placeholder="https://example.com/file.iso",
                id="url",
                validators=[HttpUrl()],
                validate_on=["changed", "submitted"],
            )
            yield Static("", id="url-error", classes="error")
            with Horizontal(classes="row"):
                with Vertical(classes="field"):
                    yield Label("File name (optional)")
                    yield Input(placeholder="from the server", id="name", validators=[FileName()])
                with Vertical(classes="field narrow"):
                    yield Label("Connections")
                    yield Input(
                        str(self.defaults.connections),
                        id="connections",
                        type="integer",
                        validators=[Integer(minimum=1, maximum=32, failure_description="1 to 32")],
                    )
            yield Label("Directory")
            yield Input(self.defaults.directory, id="directory")
            yield Static("[b]Enter[/b] add   [b]Esc[/b] cancel   [b]Tab[/b] next field", classes="hint")

    def on_mount(self) -> None:
        """Start in the URL field."""
        self.query_one("#url", Input).focus()

    @on(Input.Changed)
    def _show_errors(self, event: Input.Changed) -> None:
        errors = self.query_one("#url-error", Static)
        problems: list[str] = []
        for field in self.query(Input):
            result = field.validate(field.value) if field.value or field.id == "url" else None
            # An empty URL is not an error until the user tries to submit it.
            if result and not result.is_valid and not (field.id == "url" and not field.value):
                problems.extend(result.failure_descriptions)
        errors.update(" ".join(problems))

    @on(Input.Submitted)
    def _submit(self) -> None:
        fields = {f.id: f for f in self.query(Input)}
        for key in ("url", "name", "connections"):
            result = fields[key].validate(fields[key].value)
            if result is not None and not result.is_valid:
                fields[key].focus()
                self.query_one("#url-error", Static).update(" ".join(result.failure_descriptions))
                return
        directory = os.path.expanduser(fields["directory"].value.strip()) or self.defaults.directory
        options = dataclasses.replace(
            self.defaults,
            output=fields["name"].value.strip() or None,
            directory=directory,
            connections=int(fields["connections"].value),
        )
        self.dismiss(AddRequest(fields["url"].value.strip(), options))

    def action_cancel(self) -> None:
        """Close without adding."""
        self.dismiss(None)


@dataclass(frozen=True)
class LimitRequest:
    """What the limit dialog returns."""

    limit: int | None
    """Bytes per second, None for unlimited."""
    task_id: int | None
    """The task to limit, None for the global limit."""


class LimitDialog(ModalScreen[LimitRequest | None]):
    """A rate (empty means none) for the whole engine or for the selected task."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, global_limit: int | None, task: TaskSnapshot | None, task_first: bool = False) -> None:
        super().__init__()
        self.task_first = task_first and task is not None
        """Start with the task's scope selected (from its detail screen)."""
        self.global_limit = global_limit
        """The current global limit, shown first."""
        self.task_snapshot = task
        """The selected task, if any, offered as the other scope."""

    def compose(self) -> ComposeResult:
        """Scope choice and the rate field."""
        with Vertical(id="dialog", classes="dialog") as box:
            box.border_title = "Speed limit"
            with RadioSet(id="scope"):
                yield RadioButton("Global (all downloads)", value=not self.task_first, id="scope-global")
                if self.task_snapshot is not None:
                    task = self.task_snapshot
                    # Text, not markup: a name the server chose may hold "[".
                    label = Text(f"Task #{task.id} {task_name(task)}"[:48])
                    yield RadioButton(label, value=self.task_first, id="scope-task")
            yield Label("Rate, e.g. 500K or 2M (empty: no limit)")
            current = (
                self.task_snapshot.options.speed_limit if self.task_first and self.task_snapshot else None
            )
            yield Input(
                limit_input(current if self.task_first else self.global_limit), id="rate", validators=[Rate()]
            )
            yield Static("", id="rate-error", classes="error")
            yield Static("[b]Enter[/b] set   [b]Esc[/b] cancel   [b]Tab[/b] scope", classes="hint")

    def on_mount(self) -> None:
        """Start in the rate field."""
        self.query_one("#rate", Input).focus()

    @property
    def _task_scope(self) -> bool:
        return self.task_snapshot is not None and self.query_one("#scope", RadioSet).pressed_index == 1

    @on(RadioSet.Changed)
    def _scope_changed(self) -> None:
        limit = (
            self.task_snapshot.options.speed_limit
            if self._task_scope and self.task_snapshot
            else self.global_limit
        )
        self.query_one("#rate", Input).value = limit_input(limit)

    @on(Input.Changed)
    def _validate(self, event: Input.Changed) -> None:
        result = event.validation_result
        text = "" if result is None or result.is_valid else " ".join(result.failure_descriptions)
        self.query_one("#rate-error", Static).update(text)

    @on(Input.Submitted)
    def _submit(self, event: Input.Submitted) -> None:
        try:
            limit = parse_rate(event.value)
        except ValueError as exc:
            self.query_one("#rate-error", Static).update(str(exc))
            return
        task_id = self.task_snapshot.id if self._task_scope and self.task_snapshot else None
        self.dismiss(LimitRequest(limit, task_id))

    def action_cancel(self) -> None:
        """Close without changing anything."""
        self.dismiss(None)


class RemoveDialog(ModalScreen[str | None]):
    """Confirm removing a task: ``keep`` its partial file, ``delete`` it, or None to keep the task."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "choose('keep')", "Remove"),
        Binding("x", "choose('delete')", "Remove + delete file"),
        Binding("n,escape", "choose(None)", "Keep"),
    ]

    def __init__(self, task: TaskSnapshot) -> None:
        super().__init__()
        self.task_snapshot = task
        """The task to remove."""

    @property
    def has_partial(self) -> bool:
        """Whether there is a partial file worth offering to delete."""
        return self.task_snapshot.state is not TaskState.COMPLETED

    def compose(self) -> ComposeResult:
        """The question and the three answers."""
        task = self.task_snapshot
        with Vertical(id="dialog", classes="dialog") as box:
            box.border_title = "Remove task"
            running = "" if task.state.finished else " and stop downloading it"
            # No markup: the name is the server's choice, and "[/x]" in it would not even parse.
            yield Static(f"Remove #{task.id} {task_name(task)}{running}?", markup=False)
            if task.part_path and self.has_partial:
                part = escape_controls(task.part_path)
                yield Static(f"Partial file: {part}", classes="hint", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Remove [y]", id="keep", variant="primary")
                if self.has_partial:
                    yield Button("Remove, delete partial file [x]", id="delete", variant="error")
                yield Button("Cancel [n]", id="cancel")

    def on_mount(self) -> None:
        """Enter presses the safe default: remove and keep the file."""
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_choose(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        """Close with the answer."""
        if choice == "delete" and not self.has_partial:
            return
        self.dismiss(choice)


class QuitChoice(Enum):
    """What the quit dialog decided about the active downloads."""

    BACKGROUND = "background"
    """Keep them running: a detached daemon takes them over."""
    STOP = "stop"
    """Stop them; they resume the next time the engine starts."""


class QuitDialog(ModalScreen[QuitChoice | None]):
    """Quit with downloads active? ``y`` or Enter quits, ``n`` or Esc stays (None).

    With ``background`` there are three answers: ``b`` (and Enter) keeps the downloads running in
    a background daemon, ``s`` stops them, ``n`` or Esc stays.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "answer('background')", "Keep running", show=False),
        Binding("s,y", "answer('stop')", "Stop"),
        Binding("n,escape", "answer(None)", "Stay"),
    ]

    def __init__(self, question: str, detail: str = "", *, background: bool = False) -> None:
        super().__init__()
        self.question = question
        """The question."""
        self.detail = detail
        """A line under it."""
        self.background = background
        """Whether keeping the downloads running in the background is one of the answers."""

    def compose(self) -> ComposeResult:
        """The question and its buttons."""
        with Vertical(id="dialog", classes="dialog") as box:
            box.border_title = "Quit"
            yield Static(self.question)
            if self.detail:
                yield Static(self.detail, classes="hint")
            with Horizontal(classes="buttons"):
                if self.background:
                    yield Button("Keep running [b]", id="background", variant="primary")
                    yield Button("Stop them [s]", id="stop")
                    yield Button("Stay [n]", id="stay")
                else:
                    yield Button("Yes [y]", id="stop", variant="primary")
                    yield Button("No [n]", id="stay")

    def on_mount(self) -> None:
        """Enter picks the first answer: the one that stops no download, where there is one."""
        self.query(Button).first().focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_answer(None if event.button.id == "stay" else event.button.id)

    def action_answer(self, choice: str | None) -> None:
        """Close with the answer."""
        if choice == QuitChoice.BACKGROUND.value and not self.background:
            return
        self.dismiss(None if choice is None else QuitChoice(choice))
