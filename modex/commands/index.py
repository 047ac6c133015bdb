"""`modex index [--follow] [--rebuild]`: bring the local SQLite index up to date with the chain."""

from __future__ import annotations

from modex.commandline import add_command, add_node_options, run_until_signalled
from modex.commands.models import open_index
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "index", run)
    for flag, text in (
        ("--follow", "keep following new blocks (Ctrl-C stops)"),
        ("--rebuild", "first rebuild every table from the stored event log"),
        ("--from-scratch", "forget everything and re-read the chain from the deployment block"),
    ):
        p.add_argument(flag, action="store_true", help=text)
    add_node_options(p)


def run(args) -> int:
    """Read the Modex contracts' events into the local SQLite index (the UI and `modex models`
    read it), staying `confirmations` blocks behind the head. Reorgs are rolled back
    automatically. --follow keeps going until interrupted."""
    stack = Stack.from_args(args)
    index = open_index(stack, sync=False)
    if args.from_scratch:
        index.rollback(index.start_block - 1)
    elif args.rebuild:
        index.rebuild()
    count = index.sync()
    checkpoint = index.checkpoint()
    print(
        f"indexed {count} new events; at block {checkpoint[0] if checkpoint else '-'} "
        f"({index.event_count()} events in {stack.config.index_db})"
    )
    if args.follow:
        return run_until_signalled(
            lambda stop, interval: index.follow(stop, poll_interval=interval),
            stack.config.poll_interval,
        )
    return 0
