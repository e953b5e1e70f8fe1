"""``fetchtop get``'s progress rows on an 80-column terminal: a failed file says why, the bar stays
readable whatever the name's length. A real engine downloads from the fault server on 127.0.0.1."""

from __future__ import annotations

import io
import re
from pathlib import Path

from faultserver.content import KiB, file_matches
from faultserver.server import FaultServer
from tests.support.downloads import fast_config, opts
from tui.get import NAME_WIDTH, RichReporter, download
from tui.options import DownloadRequest

LONG = "a-file-name-much-longer-than-any-progress-row-would-give-it-room-for.bin"


class Screen(io.StringIO):
    """What the reporter's console writes to; it says it is a terminal, so bars are drawn."""

    def isatty(self) -> bool:
        return True


def request(urls: list[str], directory: Path) -> DownloadRequest:
    options = opts(directory, retries=0)
    return DownloadRequest(
        urls=urls,
        options=options,
        config=fast_config(defaults=options),
        metrics_addr="127.0.0.1",
        metrics_port=None,
        quiet=False,
    )


def final_rows(screen: Screen) -> list[str]:
    """The rows of the last frame Rich drew, without colours and cursor moves."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    lines = [line.rstrip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-2:]


async def test_failed_row_says_why_and_the_bar_keeps_its_width(
    fault_server: FaultServer, download_dir: Path
) -> None:
    good = fault_server.add_file(LONG, 300 * KiB)
    missing = fault_server.base_url + "/f/not-there.bin"
    screen, err = Screen(), io.StringIO()
    reporter = RichReporter(screen, err, width=80)

    status = await download(request([good, missing], download_dir), reporter)

    assert status == 1
    assert file_matches(str(download_dir / LONG), LONG, 300 * KiB)
    done, failed = final_rows(screen)
    assert all(len(row) <= 80 for row in (done, failed)), (done, failed)
    # The finished row: the name cut to its column, a full bar still wide enough to read.
    assert done.startswith(LONG[: NAME_WIDTH - 1]) and LONG not in done, done
    bar = max(re.findall(r"━+", done), key=len)
    assert len(bar) >= 10, done
    assert "100.0%" in done and "done" in done, done
    # The failed row: the reason where the bar would be, and no 0% figures.
    assert "failed: HTTP 404" in failed, failed
    assert "0.0%" not in failed and "ETA" not in failed and "━" not in failed, failed
