"""The ``multiraft`` command-line interface (typer), one file per command group."""
