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


def readable_help_types() -> None:
    """Show click-style value names in ``--help`` (``PATH``, ``FLOAT``, ``TEXT``; nothing for a flag;
    ``...`` when an option repeats) instead of the Python type names recent Typer prints (``<bool>``,
    ``<list[Path]>``). Idempotent."""
    import typer.core as tc

    if getattr(tc, "_pianonotes_readable_types", False):
        return

    def display_type_rich(self, ctx):
        if self.metavar is not None:
            return self.metavar
        if getattr(self, "is_flag", False) or getattr(self, "count", False):
            return None
        label = str(original(self, ctx) or "").strip("<>").replace(" range", "")
        many = label.startswith("list[") or label.endswith("...")
        label = label.removeprefix("list[").rstrip(".").rstrip("]")
        if label == "bool":
            return None
        label = {"str": "TEXT", "int": "INTEGER"}.get(label, label.upper())
        return label + ("..." if many else "") if label else None

    original = tc.TyperOption.display_type
    for cls in (tc.TyperOption, tc.TyperArgument):
        cls.display_type_rich = display_type_rich
    one_line_usage_errors()
    tc._pianonotes_readable_types = True


def one_line_usage_errors() -> None:
    """A bad option value or a missing argument (click's usage errors, exit code 2) is one ``error:`` line
    that names the help to read, like every other failure, instead of Typer's usage + boxed panel."""
    import typer.rich_utils as ru

    def format_error(exc) -> None:
        if exc.__class__.__name__ == "NoArgsIsHelpError":
            return
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = " ".join(str(exc.format_message()).split())
        fail(f"{message}{hint}")

    ru.rich_format_error = format_error
