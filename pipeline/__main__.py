"""python -m pipeline -> entry.main() (the console script's entry point too)."""

from .entry import main

main()
