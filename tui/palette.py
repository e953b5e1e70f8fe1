"""Rich styles for the dashboard's own renderables, taken from the app's Textual theme.

The .tcss colours the widgets with theme variables; the table cells, log lines, segment map and
charts are Rich renderables, which know nothing of ``$variables``. A :class:`Palette` resolves the
few theme colours they use once per theme, so every theme colours them the way it colours the rest
of the screen: the ANSI theme a 16-colour terminal gets included, which needs no colours of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from rich.color import ColorType
from rich.style import Style
from textual.color import Color

from engine.models import TaskState

if TYPE_CHECKING:
    from textual.app import App

ROLES: dict[str, str] = {
    "active": "text-secondary",
    "success": "success",
    "warning": "warning",
    "error": "error",
    "muted": "text-muted",
    "verifying": "text-primary",
}
"""The theme variable behind each role of :class:`Palette`."""


NO_STYLE = Style()
"""No colour, no emphasis (Rich styles are immutable, so one serves every field)."""
BOLD = Style(bold=True)
"""Labels, and what needs reading first: emphasis, not colour, so it is the same in every theme."""


@dataclass(frozen=True)
class Palette:
    """The styles of the dashboard's renderables; :data:`PLAIN` (no colour) until a theme is known."""

    active: Style = NO_STYLE
    """Work in flight: speeds, downloading and probing tasks."""
    success: Style = NO_STYLE
    """Bytes in and tasks done: bars, segments, completions."""
    warning: Style = NO_STYLE
    """Needs attention but still fine: paused, retries, limits, connections at work."""
    error: Style = NO_STYLE
    """Failures."""
    muted: Style = NO_STYLE
    """What matters less: queued and cancelled tasks, empty bar cells, times."""
    verifying: Style = NO_STYLE
    """A task checking its checksum."""

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> Palette:
        """The palette of a theme, from its CSS variables (``App.get_css_variables()``)."""
        background = Color.parse(variables.get("background", "ansi_default"))
        styles = {role: _style(variables[name], background) for role, name in ROLES.items()}
        styles["error"] += BOLD
        return cls(**styles)

    def state(self, state: TaskState) -> Style:
        """The style of a task state."""
        match state:
            case TaskState.PROBING | TaskState.DOWNLOADING:
                return self.active
            case TaskState.PAUSED:
                return self.warning
            case TaskState.VERIFYING:
                return self.verifying
            case TaskState.COMPLETED:
                return self.success
            case TaskState.FAILED:
                return self.error
        return self.muted


PLAIN = Palette()
"""No colours: what the text helpers use when no app is asked (tests, plain output)."""


def _style(value: str, background: Color) -> Style:
    """A theme variable (``#RRGGBB``, ``ansi_red``, ``auto 60%``, ``ansi_default 50%``) as a Rich style."""
    spec, _, percent = value.partition(" ")
    alpha = float(percent.rstrip("%")) / 100 if percent else 1.0
    colour = (
        background.get_contrast_text(alpha) if spec == "auto" else Color.parse(spec).multiply_alpha(alpha)
    )
    # Textual blends a translucent colour over the background; a terminal colour cannot be
    # blended, so it is dimmed instead, which is how a terminal mutes its own colours.
    dim = True if colour.ansi is not None and alpha < 1 else None
    return Style(color=(background + colour).rich_color, dim=dim)


_palettes: WeakKeyDictionary[App[Any], tuple[str, Palette]] = WeakKeyDictionary()


def theme_palette(app: App[Any]) -> Palette:
    """The palette of ``app``'s current theme, worked out once per theme."""
    cached = _palettes.get(app)
    if cached is None or cached[0] != app.theme:
        cached = (app.theme, Palette.from_variables(app.get_css_variables()))
        _palettes[app] = cached
    return cached[1]


def plotext_color(style: Style) -> str | int | tuple[int, int, int]:
    """A style's colour as plotext takes it: an RGB triple, a terminal colour number, or ``default``."""
    color = style.color
    if color is None or color.type is ColorType.DEFAULT:
        return "default"
    if color.type is ColorType.TRUECOLOR and color.triplet is not None:
        return (color.triplet.red, color.triplet.green, color.triplet.blue)
    return color.number if color.number is not None else "default"
