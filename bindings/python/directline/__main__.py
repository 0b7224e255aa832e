"""``python3 -m directline``: the ``directline`` command (see ``directline.cli``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
