"""The task table: one row per task, updated by diff so the selection and scroll stay put."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from rich.segment import Segment
from rich.style import Style
from rich.text import Span, Text
from textual.events import Resize
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from engine.models import TaskSnapshot
from tui.formatting import (
    compact_bytes,
    compact_rate,
    ellipsize,
    eta_text,
    progress_cell,
    state_text,
    task_name,
)
from tui.palette import PLAIN, Palette, theme_palette


@dataclass(frozen=True)
class Column:
    """One column of the table at a given terminal width."""

    key: str
    """Column key, also the cell's field."""
    label: str
    """Header text."""
    width: int
    """Content width in cells."""
    right: bool = False
    """Right-align the cell (numbers)."""


PADDING = 1
"""Cells of padding on each side of every column."""

CellKey = tuple[str, "str | Style", tuple[Span, ...]]
"""What a cell shows: its text, its style and its styled spans (compared to skip unchanged cells)."""


def layout(width: int) -> tuple[Column, ...]:
    """The columns for a table ``width`` cells wide; the name column takes what is left.

    Below 100 cells the average speed is dropped and the bar shortened so 80 columns show everything
    that matters; wider terminals get longer bars and room for failure reasons.
    """
    wide = width >= 100
    very_wide = width >= 150
    fixed = [
        Column("id", "ID", 3, right=True),
        Column("name", "Name", 0),
        Column("size", "Size", 5, right=True),
        Column("progress", "Progress", 28 if very_wide else 20 if wide else 12),
        Column("speed", "Speed", 7, right=True),
    ]
    if wide:
        fixed.append(Column("avg", "Avg", 7, right=True))
    fixed += [
        Column("eta", "ETA", 6, right=True),
        Column("conns", "Con", 3, right=True),
        Column("state", "State", 30 if very_wide else 18 if wide else 11),
    ]
    used = sum(c.width + 2 * PADDING for c in fixed)
    # One cell for the vertical scrollbar, which appears once rows overflow.
    name_width = max(8, width - 1 - used)
    return tuple(Column(c.key, c.label, name_width) if c.key == "name" else c for c in fixed)


def task_cells(task: TaskSnapshot, columns: Sequence[Column], palette: Palette = PLAIN) -> dict[str, Text]:
    """The cells of one task's row, by column key, coloured by ``palette``."""
    cells: dict[str, Text] = {}
    for col in columns:
        match col.key:
            case "id":
                value = Text(str(task.id))
            case "name":
                value = Text(ellipsize(task_name(task), col.width))
            case "size":
                value = Text(compact_bytes(task.size) if task.size is not None else "?")
            case "progress":
                value = progress_cell(task.progress, col.width, palette)
            case "speed":
                value = Text(compact_rate(task.speed if task.state.active else 0.0), style=palette.active)
            case "avg":
                value = Text(compact_rate(task.avg_speed))
            case "eta":
                value = Text(eta_text(task))
            case "conns":
                value = Text(str(task.connections) if task.connections else "-")
            case "state":
                value = state_text(task, col.width, palette)
            case _:  # pragma: no cover - layout() only makes the keys above
                value = Text("")
        if col.right:
            value.justify = "right"
        cells[col.key] = value
    return cells


class TaskTable(DataTable[Text]):
    """A DataTable of tasks keyed by task id.

    :meth:`show` changes only the cells whose text changed, adds and removes rows as tasks come
    and go, reorders only when the order changed, and keeps the cursor on the same task. A cell
    whose text did not change is not rendered again either (see :meth:`_render_cell`).
    """

    _quiet = False
    """True while show() applies a diff (a class default: DataTable refreshes during __init__)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", cell_padding=PADDING, zebra_stripes=False)
        self._columns: tuple[Column, ...] = ()
        self._shown: dict[int, dict[str, CellKey]] = {}
        self._order: list[int] = []
        self._tasks: list[TaskSnapshot] = []
        # Rendered cells by (row, column) index, with what else their look depends on; valid while
        # DataTable's update count is the one show() left (anything else changed: all are dropped).
        self._cells: dict[tuple[int, int], tuple[tuple[object, ...], list[list[Segment]]]] = {}
        self._cells_valid_at = -1

    def refresh(
        self, *regions: Region, repaint: bool = True, layout: bool = False, recompose: bool = False
    ) -> Self:
        """Repaint; while :meth:`show` applies a diff, whole-table repaints are held back.

        DataTable.update_cell repaints the whole table, which over SSH means every line of it each
        tick. :meth:`show` repaints just the cells whose text changed instead.
        """
        if self._quiet and not regions and not layout and not recompose:
            return self
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """A cell's lines, from the last render if neither its text nor its look changed since.

        DataTable keys its own cell cache on a count that every update_cell bumps, so changing one
        cell renders all of them again each time a row is drawn: with 50 moving rows that was most
        of the dashboard's CPU. Here only the cells show() changed are rendered anew.
        """
        if self._update_count != self._cells_valid_at:
            self._cells.clear()  # a change show() did not account for (a resize, a new column...)
            self._cells_valid_at = self._update_count
        look = (
            base_style,
            width,
            cursor,
            hover,
            self._show_hover_cursor,
            self.show_cursor,
            self.cursor_type,
            self._pseudo_class_state,
        )
        cached = self._cells.get((row_index, column_index))
        if cached is not None and cached[0] == look:
            return cached[1]
        lines = self._render_text_cell(row_index, column_index, base_style, width, cursor, hover)
        if lines is None:
            lines = super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        self._cells[(row_index, column_index)] = (look, lines)
        return lines

    def _render_text_cell(
        self, row_index: int, column_index: int, base_style: Style, width: int, cursor: bool, hover: bool
    ) -> list[list[Segment]] | None:
        """What DataTable._render_cell makes of a one-line Text body cell that fits, built directly;
        None for anything else (the header, a cell that would wrap or be cut), which DataTable renders.

        DataTable sends every cell through Rich's Styled, Padding and line splitting; for a short
        Text of one line all that comes down to padding it and applying two styles, at a sixth of
        the cost (the result is the same, segment for segment: tests/test_tui_redraw_cost.py).
        """
        if row_index < 0 or column_index < 0 or self.fixed_rows or self.fixed_columns:
            return None
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None or self.rows[row_key].height != 1:
            return None
        cell = self._data[row_key][column_key]
        pad = self.cell_padding
        room = width - 2 * pad
        if (
            not isinstance(cell, Text)
            or cell.justify not in (None, "right")
            or "\n" in cell.plain
            or "\t" in cell.plain
            or cell.cell_len > room
        ):
            return None
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        console = self.app.console
        body: list[Segment]
        text = cell
        if cell.justify == "right":  # as Rich justifies a line: no trailing space, padded in front
            text = cell.copy()
            text.rstrip()
            text.pad_left(room - text.cell_len)
        # Rich renders a line joined into a new Text (its style becomes a span), and so here.
        body = list(Text("\n").join([text]).render(console))
        if room > text.cell_len:
            body.append(Segment(" " * (room - text.cell_len)))
        edge = [Segment(" " * pad)] if pad else []
        pre_style = base_style + Style.from_meta({"row": row_index, "column": column_index}) + component_style
        return [list(Segment.apply_style([*edge, *body, *edge], pre_style, post_style))]

    def notify_style_update(self) -> None:
        """New styles (a theme, CSS): nothing rendered before still looks right."""
        self._cells.clear()
        super().notify_style_update()

    @property
    def selected_id(self) -> int | None:
        """Id of the task under the cursor."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return int(str(row_key.value)) if row_key.value is not None else None

    def select_task(self, task_id: int) -> bool:
        """Move the cursor to a task's row; False if it is not shown."""
        try:
            index = self.get_row_index(str(task_id))
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    def on_resize(self, event: Resize) -> None:
        """Lay the columns out again for the new width."""
        if layout(event.size.width) != self._columns:
            self.show(self._tasks, force_layout=True)

    def _refresh_cells(self, cells: Sequence[tuple[int, int]]) -> None:
        """Forget the rendered ``(row, column)`` cells and repaint them: one region per row, from
        its first changed cell to its last, and nothing for rows scrolled out of view.

        (DataTable.refresh_coordinate sums the heights of every row above a cell, per cell: with
        50 rows that was half of what :meth:`show` cost.) Rows here are one line high.
        """
        offsets = [0]
        for shown in self.ordered_columns:
            offsets.append(offsets[-1] + shown.get_render_width(self))
        spans: dict[int, tuple[int, int]] = {}
        for row, index in cells:
            self._cells.pop((row, index), None)
            first, last = spans.get(row, (index, index))
            spans[row] = (min(first, index), max(last, index))
        top = self.header_height if self.show_header else 0
        window = self.window_region
        for row, (first, last) in spans.items():
            region = Region(offsets[first], top + row, offsets[last + 1] - offsets[first], 1)
            if window.overlaps(region):
                self.refresh(region.translate(-self.scroll_offset))

    def show(self, tasks: Sequence[TaskSnapshot], force_layout: bool = False) -> None:
        """Make the table show ``tasks`` in this order, touching only what changed."""
        self._tasks = list(tasks)
        selected = self.selected_id
        cursor_row = self.cursor_row
        columns = layout(self.size.width or 80)
        palette = theme_palette(self.app)
        changed: list[tuple[int, str]] = []
        structural = False
        with self.app.batch_update():
            self._quiet = True
            try:
                if force_layout or columns != self._columns:
                    structural = True
                    self.clear(columns=True)
                    self._shown.clear()
                    self._order = []
                    self._columns = columns
                    for col in columns:
                        label = Text(col.label, justify="right" if col.right else "left")
                        self.add_column(label, width=col.width, key=col.key)
                wanted = [t.id for t in tasks]
                wanted_set = set(wanted)
                for tid in [t for t in self._order if t not in wanted_set]:
                    structural = True
                    self.remove_row(str(tid))
                    del self._shown[tid]
                self._order = [t for t in self._order if t in wanted_set]
                for task in tasks:
                    cells = task_cells(task, columns, palette)
                    # Spans too: a new theme recolours a bar whose text is unchanged.
                    # (Compared as tuples: Rich styles compare by their cached hash, while repr() of
                    # the spans went through Rich's repr machinery for every cell of every row.)
                    plain = {k: (v.plain, v.style, tuple(v.spans)) for k, v in cells.items()}
                    old = self._shown.get(task.id)
                    if old is None:
                        structural = True
                        self.add_row(*(cells[c.key] for c in columns), key=str(task.id))
                        self._order.append(task.id)
                    else:
                        for key, value in plain.items():
                            if old.get(key) != value:
                                self.update_cell(str(task.id), key, cells[key])
                                changed.append((task.id, key))
                    self._shown[task.id] = plain
                if self._order != wanted:
                    structural = True
                    rank = {tid: i for i, tid in enumerate(wanted)}
                    self.sort("id", key=lambda cell: rank[int(cell.plain)])
                    self._order = wanted
            finally:
                self._quiet = False
            if structural:
                self._cells.clear()
                self.refresh()
            else:
                where = [(self.get_row_index(str(tid)), self.get_column_index(key)) for tid, key in changed]
                self._refresh_cells(where)
            self._cells_valid_at = self._update_count
            if selected is not None and selected in wanted_set:
                index = self.get_row_index(str(selected))
                if index != self.cursor_row:
                    self.move_cursor(row=index, animate=False, scroll=True)
            elif self.row_count:
                # The selected task went away: stay at the same height rather than jump to the top.
                self.move_cursor(row=min(cursor_row, self.row_count - 1), animate=False)
