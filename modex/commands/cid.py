"""`modex cid FILE` and `modex store ...`: IPFS content identifiers and the content stores (§4.4).

`modex cid` prints the CID `ipfs add` gives a file under a profile, without storing anything, so
anyone can check a listing's content CID. `modex store` moves content in and out of the embedded
store (or a Kubo RPC daemon with --api) and through CAR files, serves the read-only gateway, and
starts a local js-ipfs daemon for development.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from modex.commands import tcp_port
from node.cid import DEFAULT_PROFILE, PROFILES, cid_of_file, cid_of_stream

log = logging.getLogger(__name__)

_PROFILE_HELP = (
    "CID profile (DESIGN.md §4.4): unixfs-v1-2025 = CIDv1, raw leaves, 1 MiB chunks, 1024 links "
    "(default); kubo-v1 = `ipfs add --cid-version=1` (256 KiB, 174 links); kubo-v0 = `ipfs add` "
    "(CIDv0, 256 KiB, 174 links)"
)


def _profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=list(PROFILES), default=DEFAULT_PROFILE, help=_PROFILE_HELP)


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="embedded store directory (default: <data dir>/ipfs, "
                                  "i.e. ./.modex/ipfs or ~/.modex/ipfs)")
    p.add_argument("--api", metavar="URL",
                   help="use the IPFS daemon whose Kubo RPC API is at URL "
                        "(e.g. http://127.0.0.1:5001) instead of the embedded store")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per daemon call (default 30)")


def _open(args):
    from node.store import open_store

    if args.api:
        return open_store("kubo", api_url=args.api, timeout=args.timeout)
    root = args.root
    if root is None:
        from node.config import default_data_dir

        root = default_data_dir() / "ipfs"
    return open_store("embedded", root=root)


def cmd_cid(args) -> int:
    if args.file == "-":
        print(cid_of_stream(sys.stdin.buffer, args.profile))
    else:
        try:
            print(cid_of_file(args.file, args.profile))
        except OSError as exc:
            print(f"modex: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
            return 1
    return 0


def cmd_put(args) -> int:
    store = _open(args)
    try:
        source = sys.stdin.buffer if args.file == "-" else args.file
        print(store.put(source, profile=args.profile))
    except OSError as exc:
        print(f"modex: error: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def _write_out(path: str, write) -> None:
    """Write to a temporary file beside ``path`` and rename it: nothing half-written is left."""
    if path == "-":
        write(sys.stdout.buffer)
        return
    import os

    from node.errors import StoreError
    from node.pipes import temp_beside

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
        print(f"modex: error: cannot read {args.car}: {exc.strerror}", file=sys.stderr)
        return 1
    with f:
        for root in store.import_car(f):
            print(root)
    return 0


def cmd_pin(args) -> int:
    _open(args).pin(args.cid)
    return 0


def cmd_gateway(args) -> int:
    from node.store.gateway import serve_gateway

    server = serve_gateway(_open(args), host="127.0.0.1", port=args.port)
    print(f"gateway: {server.url}/ipfs/<cid>  (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


def cmd_daemon(args) -> int:
    from node.ipfsdaemon import start_ipfs_daemon

    daemon = start_ipfs_daemon(args.repo)
    print(f"IPFS daemon (js-ipfs, Kubo RPC API) pid {daemon.process.pid}: api {daemon.api_url} "
          f"gateway {daemon.gateway_url}  (Ctrl-C stops it)", flush=True)
    try:
        daemon.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        daemon.stop()
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "cid",
        description="Compute the UnixFS CID that Kubo's `ipfs add` gives FILE under a profile, "
                    "streaming, without storing anything. CIDv1 prints in base32 (b...), CIDv0 "
                    "in base58 (Qm...). FILE '-' reads standard input.",
    )
    p.add_argument("file", metavar="FILE")
    _profile_arg(p)
    p.set_defaults(func=cmd_cid)

    store = sub.add_parser(
        "store",
        description="Work with the content store: the embedded one (blocks on disk, the default) "
                    "or an IPFS daemon through its Kubo RPC API (--api URL).",
    )
    ssub = store.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    q = ssub.add_parser("put", help="add FILE, pin it and print its CID")
    q.add_argument("file", metavar="FILE", help="file to add ('-' for standard input)")
    _profile_arg(q)
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

    q = ssub.add_parser("export-car", help="write CID's blocks as a CAR v1 file "
                                          "(`ipfs dag import` or a pinning service reads it)")
    q.add_argument("cid", metavar="CID")
    q.add_argument("out", metavar="OUT", help="CAR file to write ('-' for standard output)")
    _store_args(q)
    q.set_defaults(func=cmd_export_car)

    q = ssub.add_parser("import-car", help="store and pin the blocks of a CAR v1 file "
                                          "(each verified); prints its roots")
    q.add_argument("car", metavar="CAR")
    _store_args(q)
    q.set_defaults(func=cmd_import_car)

    q = ssub.add_parser("gateway", help="serve the store read-only at http://127.0.0.1:PORT/ipfs/<cid>")
    q.add_argument("--port", type=tcp_port, default=8080, help="port on 127.0.0.1 (default 8080; 0 = any free)")
    _store_args(q)
    q.set_defaults(func=cmd_gateway)

    q = ssub.add_parser("daemon", help="run a local js-ipfs daemon (Kubo RPC API) until Ctrl-C",
                        description="Start js-ipfs (installed by tools/setup.sh) offline on free "
                                    "127.0.0.1 ports and print its API URL for --api.")
    q.add_argument("--repo", help="IPFS repo directory (default: a fresh temporary one)")
    q.set_defaults(func=cmd_daemon)
