"""``python -m recsys`` runs the command line."""

from recsys.cli import main

main()
