"""``python -m slicetwin.cli``: the ``slicetwin`` command."""

from slicetwin.cli.main import main

main()
