"""`modex store ...`: the content stores (§4.4).

It moves content in and out of the embedded store (or a Kubo RPC daemon with --api) and through
CAR files, serves the read-only gateway, and starts a local js-ipfs daemon for development.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from modex.commandline import add_command
from modex.commands import tcp_port
from modex.commands.cid import profile_arg
from node.config import default_data_dir
from node.content.store import open_store
from node.content.store.gateway import serve_gateway
from node.errors import InputError, StoreError
from node.ipfsdaemon import start_ipfs_daemon
from node.pipes import temp_beside

# The options that choose the content store an action works on (_open reads them): flag ->
# add_argument's keywords.
STORE_OPTIONS = {
    "--root": {
        "help": "embedded store directory (default: <data dir>/ipfs, "
        "i.e. ./.modex/ipfs or ~/.modex/ipfs)"
    },
    "--api": {
        "metavar": "URL",
        "help": "use the IPFS daemon whose Kubo RPC API is at URL "
        "(e.g. http://127.0.0.1:5001) instead of the embedded store",
    },
    "--timeout": {"type": float, "default": 30.0, "help": "seconds per daemon call (default 30)"},
}


def _open(args):
    if args.api:
        return open_store("kubo", api_url=args.api, timeout=args.timeout)
    root = args.root
    if root is None:
        root = default_data_dir() / "ipfs"
    return open_store("embedded", root=root)


def cmd_put(args) -> int:
    store = _open(args)
    try:
        source = sys.stdin.buffer if args.file == "-" else args.file
        print(store.put(source, profile=args.profile))
    except OSError as exc:
        raise InputError(f"cannot read {args.file}: {exc.strerror}") from None
    return 0


def _write_out(path: str, write) -> None:
    """Write to a temporary file beside ``path`` and rename it: nothing half-written is left."""
    if path == "-":
        write(sys.stdout.buffer)
        return
    fd, tmp = temp_beside(path, StoreError, prefix=".modex-")
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def cmd_get(args) -> int:
    store = _open(args)

    def write(out) -> None:
        with store.get(args.cid) as stream:
            for chunk in stream:
                out.write(chunk)

    _write_out(args.out, write)
    return 0


def cmd_export_car(args) -> int:
    store = _open(args)
    _write_out(args.out, lambda out: store.export_car(args.cid, out))
    return 0


def cmd_import_car(args) -> int:
    store = _open(args)
    try:
        f = open(args.car, "rb")  # noqa: SIM115 (closed below; only the open is guarded)
    except OSError as exc:
        raise InputError(f"cannot read {args.car}: {exc.strerror}") from None
    with f:
        for root in store.import_car(f):
            print(root)
    return 0


def cmd_pin(args) -> int:
    _open(args).pin(args.cid)
    return 0


def cmd_gateway(args) -> int:
    server = serve_gateway(_open(args), host="127.0.0.1", port=args.port)
    print(f"gateway: {server.url}/ipfs/<cid>  (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def cmd_daemon(args) -> int:
    """Start js-ipfs (installed by tools/setup.sh) offline on free 127.0.0.1 ports and print its
    API URL for --api."""
    daemon = start_ipfs_daemon(args.repo)
    print(
        f"IPFS daemon (js-ipfs, Kubo RPC API) pid {daemon.process.pid}: api {daemon.api_url} "
        f"gateway {daemon.gateway_url}  (Ctrl-C stops it)",
        flush=True,
    )
    try:
        daemon.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.stop()
    return 0


def _port_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port", type=tcp_port, default=8080, help="port on 127.0.0.1 (default 8080; 0 = any free)"
    )


_CID = ("cid", None)  # the positional CID argument (no help of its own)

# The actions on a content store, in the order `modex store --help` lists them: name, handler,
# one-line help, positional arguments as (name, help; the metavar is the name in capitals), and
# what adds the action's own options (before the options that choose the store).
STORE_ACTIONS = (
    (
        "put",
        cmd_put,
        "add FILE, pin it and print its CID",
        [("file", "file to add ('-' for standard input)")],
        profile_arg,
    ),
    (
        "get",
        cmd_get,
        "write the file of CID to OUT (verified block by block)",
        [_CID, ("out", "output file ('-' for standard output)")],
        None,
    ),
    ("pin", cmd_pin, "pin CID (and check its whole DAG is present)", [_CID], None),
    (
        "export-car",
        cmd_export_car,
        "write CID's blocks as a CAR v1 file (`ipfs dag import` or a pinning service reads it)",
        [_CID, ("out", "CAR file to write ('-' for standard output)")],
        None,
    ),
    (
        "import-car",
        cmd_import_car,
        "store and pin the blocks of a CAR v1 file (each verified); prints its roots",
        [("car", None)],
        None,
    ),
    (
        "gateway",
        cmd_gateway,
        "serve the store read-only at http://127.0.0.1:PORT/ipfs/<cid>",
        [],
        _port_arg,
    ),
)


def register(sub) -> None:
    store = sub.add_parser(
        "store",
        description="Work with the content store: the embedded one (blocks on disk, the default) "
        "or an IPFS daemon through its Kubo RPC API (--api URL).",
    )
    actions = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    for name, func, summary, positionals, add_options in STORE_ACTIONS:
        q = actions.add_parser(name, help=summary)
        for dest, text in positionals:
            q.add_argument(dest, metavar=dest.upper(), help=text)
        if add_options:
            add_options(q)
        for flag, options in STORE_OPTIONS.items():
            q.add_argument(flag, **options)
        q.set_defaults(func=func)

    q = add_command(
        actions,
        "daemon",
        cmd_daemon,
        help="run a local js-ipfs daemon (Kubo RPC API) until Ctrl-C",
    )
    q.add_argument("--repo", help="IPFS repo directory (default: a fresh temporary one)")
