"""The one progress bar of ragft's commands: what is counted, the bar, done of total, time elapsed."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn


def progress_bar(*more: ProgressColumn, console: Console | None = None) -> Progress:
    """The shared columns, then `more` (a run that can tell its time left adds TimeRemainingColumn)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), *more, console=console
    )
