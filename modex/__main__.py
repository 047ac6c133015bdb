"""`python -m modex`: the same command as the `modex` entry point."""

import sys

from modex.cli import main

if __name__ == "__main__":
    sys.exit(main())
