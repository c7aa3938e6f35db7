"""python -m pipeline -> cli.main()."""

from .cli import main

main()
