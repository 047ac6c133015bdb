"""Subcommands of `modex`: each module here has ``register(subparsers)`` (see node/cli.py)."""
