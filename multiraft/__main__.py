"""``python -m multiraft`` runs the command-line interface."""

from multiraft.cli.main import run

run()
