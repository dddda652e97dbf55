"""A rich progress bar that shows items/s and tokens/s (and stays silent when disabled or not a TTY)."""

from __future__ import annotations

import sys
import time
from typing import Any


class RateProgress:
    """Context manager: ``advance(items, tokens)``; prints a final summary line when not interactive."""

    def __init__(self, label: str, total: int | None = None, enabled: bool = True, unit: str = "docs") -> None:
        self.label, self.total, self.enabled, self.unit = label, total, enabled, unit
        self.items = self.tokens = 0
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> RateProgress:
        self._t0 = time.perf_counter()
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed} " + self.unit),
                                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                      transient=False, disable=not sys.stderr.isatty(), console=_stderr_console())
            self._progress.__enter__()
            self._task = self._progress.add_task(self.label, total=self.total, rate="")
        return self

    def advance(self, items: int, tokens: int = 0, **fields: Any) -> None:
        self.items += items
        self.tokens += tokens
        if self._progress is not None:
            dt = max(time.perf_counter() - self._t0, 1e-9)
            rate = f"{self.items / dt:.1f} {self.unit}/s"
            if self.tokens:
                rate += f"  {self.tokens / dt:,.0f} tok/s"
            extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            self._progress.update(self._task, advance=items, rate=(rate + "  " + extra).strip())

    def report(self, done: int, total: int) -> None:
        """A ``progress(done, total)`` callback (the AV's batches): sets the total, advances to ``done``."""
        if self._progress is not None and self.total != total:
            self.total = total
            self._progress.update(self._task, total=total)
        self.advance(done - self.items)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
