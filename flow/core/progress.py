"""The one progress bar of qflow: rich, on stderr, or nothing at all when disabled.

>>> with Bar("build", total=3, enabled=False) as bar:
...     bar.update(advance=1, description="streamline", info="")
>>> bar.completed
1
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar:
    """``label [#####     ] 3/10 description info elapsed``; ``enabled=False`` draws nothing.

    :meth:`pause` leaves the bar's current state on screen and stops redrawing (while another
    bar, e.g. a training's, is live); :meth:`resume` redraws it.
    """

    def __init__(self, label: str, total: int, *, enabled: bool = True, transient: bool = False, remaining: bool = False):
        self.total, self.completed = total, 0
        self._progress: Progress | None = None
        if enabled:
            columns = [TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                       TextColumn("{task.fields[info]}"), TimeElapsedColumn()]
            if remaining:
                columns.append(TimeRemainingColumn())
            self._progress = Progress(*columns, console=Console(stderr=True), transient=transient)
            self._task = self._progress.add_task("", total=total, info="")

    def __enter__(self) -> "Bar":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, *, completed: int | None = None, advance: int = 0, description: str | None = None, info: str | None = None) -> None:
        self.completed = (self.completed if completed is None else completed) + advance
        if self._progress is not None:
            fields = {} if info is None else {"info": info}
            self._progress.update(self._task, completed=self.completed, description=description, **fields)

    def pause(self) -> None:
        if self._progress is not None:
            self._progress.stop()

    def resume(self) -> None:
        if self._progress is not None:
            self._progress.start()


@contextlib.contextmanager
def step_bar(steps: list[str], enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """A progress bar over a build's steps (on stderr, when it is a terminal: elsewhere the bar would
    leave a blank line before an error); yields the callback that advances it."""
    with Bar("build", len(steps), transient=True, enabled=enabled and sys.stderr.isatty()) as bar:
        done: list[str] = []

        def advance(step: str) -> None:
            bar.update(advance=1 if done else 0, description=step)
            done.append(step)

        yield advance
        bar.update(completed=len(steps))
