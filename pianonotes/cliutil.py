"""Terminal helpers shared by the command modules (the only layer that prints or exits)."""

from __future__ import annotations

import typer


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def fail(message: str, code: int = 1) -> typer.Exit:
    """One red line on stderr; return the Exit to raise (non-zero). ``message`` is plain text: brackets
    (``pianonotes[train]``, paths) are printed as they are, never read as Rich markup."""
    from rich.markup import escape

    console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)
