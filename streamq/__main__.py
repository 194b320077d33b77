"""``python -m streamq``: the command line."""

from streamq._cli import main

main()
