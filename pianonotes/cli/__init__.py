"""The command line: the Typer app and everything that owns the terminal."""
