"""`modex store ...`: the content stores (§4.4).

It moves content in and out of the embedded store (or a Kubo RPC daemon with --api) and through
CAR files, serves the read-only gateway, and starts a local js-ipfs daemon for development.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from modex.commands import tcp_port
from modex.commands.cid import profile_arg
from node.config import default_data_dir
from node.content.store import open_store
from node.content.store.gateway import serve_gateway
from node.errors import InputError, StoreError
from node.ipfsdaemon import start_ipfs_daemon
from node.pipes import temp_beside


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root",
        help="embedded store directory (default: <data dir>/ipfs, "
        "i.e. ./.modex/ipfs or ~/.modex/ipfs)",
    )
    p.add_argument(
        "--api",
        metavar="URL",
        help="use the IPFS daemon whose Kubo RPC API is at URL "
        "(e.g. http://127.0.0.1:5001) instead of the embedded store",
    )
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per daemon call (default 30)"
    )


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


def register(sub) -> None:
    store = sub.add_parser(
        "store",
        description="Work with the content store: the embedded one (blocks on disk, the default) "
        "or an IPFS daemon through its Kubo RPC API (--api URL).",
    )
    ssub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    q = ssub.add_parser("put", help="add FILE, pin it and print its CID")
    q.add_argument("file", metavar="FILE", help="file to add ('-' for standard input)")
    profile_arg(q)
    _store_args(q)
    q.set_defaults(func=cmd_put)

    q = ssub.add_parser("get", help="write the file of CID to OUT (verified block by block)")
    q.add_argument("cid", metavar="CID")
    q.add_argument("out", metavar="OUT", help="output file ('-' for standard output)")
    _store_args(q)
    q.set_defaults(func=cmd_get)

    q = ssub.add_parser("pin", help="pin CID (and check its whole DAG is present)")
    q.add_argument("cid", metavar="CID")
    _store_args(q)
    q.set_defaults(func=cmd_pin)

    q = ssub.add_parser(
        "export-car",
        help="write CID's blocks as a CAR v1 file "
        "(`ipfs dag import` or a pinning service reads it)",
    )
    q.add_argument("cid", metavar="CID")
    q.add_argument("out", metavar="OUT", help="CAR file to write ('-' for standard output)")
    _store_args(q)
    q.set_defaults(func=cmd_export_car)

    q = ssub.add_parser(
        "import-car",
        help="store and pin the blocks of a CAR v1 file (each verified); prints its roots",
    )
    q.add_argument("car", metavar="CAR")
    _store_args(q)
    q.set_defaults(func=cmd_import_car)

    q = ssub.add_parser(
        "gateway", help="serve the store read-only at http://127.0.0.1:PORT/ipfs/<cid>"
    )
    q.add_argument(
        "--port", type=tcp_port, default=8080, help="port on 127.0.0.1 (default 8080; 0 = any free)"
    )
    _store_args(q)
    q.set_defaults(func=cmd_gateway)

    q = ssub.add_parser(
        "daemon",
        help="run a local js-ipfs daemon (Kubo RPC API) until Ctrl-C",
        description="Start js-ipfs (installed by tools/setup.sh) offline on free "
        "127.0.0.1 ports and print its API URL for --api.",
    )
    q.add_argument("--repo", help="IPFS repo directory (default: a fresh temporary one)")
    q.set_defaults(func=cmd_daemon)
