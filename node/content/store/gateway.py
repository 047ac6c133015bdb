"""A read-only HTTP gateway over a store: ``GET /ipfs/<cid>`` streams the file.

200 with the bytes (streamed, verified by the store as read), 404 for content the store does
not hold, 400 for a malformed CID, 405 for anything but GET/HEAD. ``?format=raw`` (or ``Accept:
application/vnd.ipld.raw``) answers one verified block, as IPFS trustless gateways do; 502 when
the store's own copy of it is unusable. ``create_gateway(store)`` is a WSGI app (werkzeug);
``serve_gateway(store, port=0)`` runs it on 127.0.0.1 in a thread.

``GatewaySource(url)`` is the client side: ``get_block(cid)`` fetches one block from any such
gateway (this one, a peer's, Kubo's) and verifies it; the embedded store uses it as its source.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Self

import httpx
from werkzeug.exceptions import BadGateway, BadRequest, HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from node.content.cid import cid_to_str, parse_cid, verify_block
from node.content.store.http import no_answer
from node.errors import ContentNotFound, IntegrityError, LocalStoreError, StoreError

log = logging.getLogger(__name__)

RAW_BLOCK = "application/vnd.ipld.raw"
_URLS = Map([Rule("/ipfs/<path:cid>", endpoint="ipfs")], strict_slashes=False)


def _raw_block(store, cid: str) -> Response:
    try:
        block = store.get_block(parse_cid(cid))
    except ContentNotFound:
        raise NotFound(f"{cid} is not in this store") from None
    except (LocalStoreError, IntegrityError) as exc:
        log.warning("gateway: cannot serve block %s: %s", cid, exc)
        raise BadGateway(f"this gateway's copy of {cid} is unusable") from None
    response = Response(block, mimetype=RAW_BLOCK)
    response.headers["X-Ipfs-Path"] = f"/ipfs/{cid}"
    response.headers["Cache-Control"] = "public, max-age=29030400, immutable"
    response.set_etag(f"{cid}.raw")
    return response


def create_gateway(store):
    """A WSGI app serving ``store`` read-only."""

    def serve(request: Request) -> Response:
        adapter = _URLS.bind_to_environ(request.environ)
        _endpoint, args = adapter.match()
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(valid_methods=["GET", "HEAD"])
        text = args["cid"].strip("/")
        if "/" in text:
            raise NotFound("paths inside content are not served: Modex content is single files")
        try:
            cid = cid_to_str(parse_cid(text))
        except StoreError as exc:
            raise BadRequest(str(exc)) from None
        if request.args.get("format") == "raw" or RAW_BLOCK in request.headers.get("Accept", ""):
            return _raw_block(store, cid)
        try:
            stream = store.get(cid)
        except ContentNotFound:
            raise NotFound(f"{cid} is not in this store") from None
        response = Response(
            iter(stream) if request.method == "GET" else b"",
            mimetype="application/octet-stream",
            direct_passthrough=True,
        )
        response.headers["X-Ipfs-Path"] = f"/ipfs/{cid}"
        response.headers["Cache-Control"] = "public, max-age=29030400, immutable"
        response.set_etag(cid)
        if request.method == "HEAD":
            stream.close()
        else:
            response.call_on_close(stream.close)
        return response

    def app(environ, start_response):
        request = Request(environ)
        try:
            response = serve(request)
        except HTTPException as exc:
            response = exc.get_response(environ)
        return response(environ, start_response)

    return app


@dataclass
class GatewayServer:
    server: BaseWSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"  # werkzeug's: also set when given a socket

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_gateway(
    store, host: str = "127.0.0.1", port: int = 0, *, sock: socket.socket | None = None
) -> GatewayServer:
    """Serve ``create_gateway(store)`` on ``host:port`` (0: a free port) in a daemon thread, or
    on ``sock``, a listening socket the caller bound (this takes it over and closes it)."""
    if sock is None:
        server = make_server(host, port, create_gateway(store), threaded=True)
    else:
        with sock:  # werkzeug serves on a duplicate of its descriptor
            server = make_server(host, port, create_gateway(store), threaded=True, fd=sock.fileno())
    thread = threading.Thread(target=server.serve_forever, name="modex-gateway", daemon=True)
    thread.start()
    log.info("gateway serving %r at http://%s:%d/ipfs/<cid>", store, host, server.port)
    return GatewayServer(server, thread)


class GatewaySource:
    """Blocks from an IPFS HTTP gateway (``GET /ipfs/<cid>?format=raw``), each verified.

    ``get_block(cid)`` → the block; ContentNotFound on 404, StoreError when the gateway cannot
    be reached or answers otherwise, IntegrityError when its bytes do not hash to the CID (the
    copy the network serves is bad).
    """

    def __init__(self, url: str, *, timeout: float = 30.0, transport=None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"GatewaySource({self.url!r})"

    def close(self) -> None:
        self._client.close()

    def get_block(self, cid: bytes) -> bytes:
        name = cid_to_str(cid)
        url = f"{self.url}/ipfs/{name}?format=raw"
        try:
            response = self._client.get(url, headers={"Accept": RAW_BLOCK})
        except httpx.TimeoutException:
            raise no_answer("the IPFS gateway", url, self.timeout, name) from None
        except httpx.HTTPError as exc:
            raise StoreError(
                f"cannot reach the IPFS gateway at {self.url}: {exc}; is it "
                "running? (check store_source)",
                endpoint=url,
                cid=name,
            ) from None
        if response.status_code == 404:
            raise ContentNotFound(
                f"block {name} is not at the IPFS gateway {self.url}", cid=name, endpoint=url
            )
        if response.status_code != 200:
            raise StoreError(
                f"the IPFS gateway {url} answered {response.status_code}: "
                f"{response.text.strip()[:200]}",
                endpoint=url,
                cid=name,
                status=response.status_code,
            )
        try:
            verify_block(cid, response.content)
        except IntegrityError:
            raise IntegrityError(
                f"the IPFS gateway {self.url} served bytes for block {name} "
                "that do not hash to it: the network's copy is corrupt",
                cid=name,
                endpoint=url,
            ) from None
        return response.content
