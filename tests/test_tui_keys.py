"""Every key the dashboard binds is on the help screen, and every key the issue lists is bound."""

from __future__ import annotations

from textual.binding import Binding

from tui.app import FetchtopApp
from tui.screens.detail import DetailScreen
from tui.screens.help import KEYS
from tui.screens.main import MainScreen

ISSUE_KEYS = {"a", "p", "space", "P", "r", "d", "delete", "l", "u", "n", "s", "slash", "question_mark", "q"}
"""The keys of the issue's table (Enter and Esc are checked separately)."""


def bound_keys(*owners: type) -> set[str]:
    keys: set[str] = set()
    for owner in owners:
        for binding in owner.BINDINGS:
            assert isinstance(binding, Binding)
            keys.update(k.strip() for k in binding.key.split(","))
    return keys


def test_help_lists_every_bound_key() -> None:
    documented = {k for keys, _ in KEYS for k in keys}
    missing = bound_keys(MainScreen, DetailScreen, FetchtopApp) - documented
    assert not missing, f"keys missing from the help screen: {sorted(missing)}"


def test_every_key_of_the_issue_is_bound_on_the_main_screen() -> None:
    assert ISSUE_KEYS <= bound_keys(MainScreen)
    assert "U" in bound_keys(MainScreen) and "U" in bound_keys(DetailScreen)  # issue 13: expired links
    assert "escape" in bound_keys(DetailScreen)  # Esc closes the detail screen; Enter opens it (DataTable)
