"""``python -m bnnc`` runs the command-line tool."""

from bnnc.cli import main

main()
