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


def one_line_usage_errors() -> None:
    """A bad option value or a missing argument (click's usage errors, exit code 2) is one ``error:`` line
    that names the help to read, like every other failure, instead of Typer's usage + boxed panel.

    Typer imports ``typer.rich_utils`` only to print help or an error; it pulls in rich's Markdown,
    syntax highlighting and tracebacks (about 65 ms), so it is patched when Typer first imports it, not
    imported here for every run."""
    import sys

    if "typer.rich_utils" in sys.modules:
        _one_line_format_error(sys.modules["typer.rich_utils"])
    elif not any(isinstance(f, _PatchRichUtilsOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchRichUtilsOnImport())


def _format_error(exc) -> None:
    if exc.__class__.__name__ == "NoArgsIsHelpError":
        return
    ctx = getattr(exc, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(str(exc.format_message()).split())
    fail(f"{message}{hint}")


def _one_line_format_error(rich_utils) -> None:
    rich_utils.rich_format_error = _format_error


class _PatchRichUtilsOnImport:
    """A meta path finder for ``typer.rich_utils`` alone: the module loads as usual, then gets
    :func:`_format_error`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "typer.rich_utils":
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module) -> None:
            exec_module(module)
            _one_line_format_error(module)

        spec.loader.exec_module = exec_and_patch  # this spec's own loader instance
        return spec


# What a progress display says while outputs are written (the export library's stage names).
EXPORT_STAGES = {"plan": "beats, meter and key", "score": "building the score", "musicxml": "writing MusicXML",
                 "midi": "writing MIDI", "engrave": "engraving", "pages": "writing pages", "roll": "piano roll"}


def export_stage(name: str, stage: str) -> str:
    """``NAME: what is being done`` for a progress line (``name`` is printed as it is, never as markup)."""
    from rich.markup import escape

    return f"{escape(name)}: {EXPORT_STAGES.get(stage, stage)}"


class ExportDisplay:
    """A transient progress bar that follows the export stages of one set of outputs (a take's score
    can take a while to build and engrave); nothing is shown when ``enabled`` is false (not a terminal).
    Use as a context manager; :meth:`update` is the ``progress(stage, fraction)`` callback."""

    def __init__(self, out, name: str, *, enabled: bool):
        self.out, self.name, self.enabled = out, name, enabled
        self._progress = self._task = self._shown = None

    def __enter__(self) -> "ExportDisplay":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn

            self._progress = Progress(TextColumn("{task.description}"), BarColumn(), console=self.out,
                                      transient=True)
            self._progress.__enter__()
        return self

    def update(self, stage: str, fraction: float) -> None:
        if self._progress is None:
            return
        what = export_stage(self.name, stage)
        if self._task is None:
            self._task = self._progress.add_task(what, total=1.0)
        self._progress.update(self._task, description=what, completed=fraction)
        if what != self._shown:  # a new stage shows at once, not at the next refresh
            self._shown = what
            self._progress.refresh()

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
