"""`python -m sage_client` runs the `sage` command line."""

from .cli import main

main()
