"""`python -m modex`: the same command as the `modex` entry point."""

import sys

from modex.cli import main

sys.exit(main())
