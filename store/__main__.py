"""``python -m wbg``: the ``wbg`` command."""

from wbg.cli.main import main

main()
