"""``python -m cvkit``, the command line; what ``torchrun -m cvkit train CFG`` starts."""

import sys

from cvkit.cli import main

if __name__ == "__main__":
    sys.exit(main())
