"""What the main and detail screens share: the app typed, the keys that act on one task, and
redrawing in new colours when the theme changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

from engine.models import TaskSnapshot

if TYPE_CHECKING:
    from tui.app import FetchtopApp


class TaskScreen(Screen[None]):
    """A screen with a current task: the selected row, or the one shown."""

    @property
    def fetchtop(self) -> FetchtopApp:
        """The app, typed."""
        return cast("FetchtopApp", self.app)

    def on_mount(self) -> None:
        """Follow the theme: Textual restyles the widgets, the screen redraws its Rich renderables."""
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.restyle())

    def restyle(self) -> None:
        """Draw everything again in the current theme's colours."""
        raise NotImplementedError

    def _need_task(self) -> TaskSnapshot | None:
        """The current task, or None after telling the user why nothing happens."""
        raise NotImplementedError

    def action_toggle_pause(self) -> None:
        """Pause or resume the current task."""
        if task := self._need_task():
            self.fetchtop.toggle_pause(task)

    def action_retry(self) -> None:
        """Retry the current task if it failed."""
        if task := self._need_task():
            self.fetchtop.retry(task)

    def action_remove(self) -> None:
        """Ask, then remove the current task."""
        if task := self._need_task():
            self.fetchtop.ask_remove(task)

    def action_set_url(self) -> None:
        """Ask for a new URL of the current task (an expired link)."""
        if task := self._need_task():
            self.fetchtop.ask_set_url(task)

    def action_help(self) -> None:
        """Open the help screen."""
        self.fetchtop.show_help()
