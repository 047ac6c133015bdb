"""A read-only HTTP gateway over a store: ``GET /ipfs/<cid>`` streams the file.

200 with the bytes (streamed, verified by the store as read), 404 for content the store does
not hold, 400 for a malformed CID, 405 for anything but GET/HEAD. ``create_gateway(store)`` is
a WSGI app (werkzeug); ``serve_gateway(store, port=0)`` runs it on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Self

from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from node.cid import cid_to_str, parse_cid
from node.errors import ContentNotFound, StoreError

log = logging.getLogger(__name__)

_URLS = Map([Rule("/ipfs/<path:cid>", endpoint="ipfs")], strict_slashes=False)


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
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(timeout=10)
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_gateway(store, host: str = "127.0.0.1", port: int = 0) -> GatewayServer:
    """Serve ``create_gateway(store)`` on ``host:port`` (0: a free port) in a daemon thread."""
    server = make_server(host, port, create_gateway(store), threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="modex-gateway", daemon=True)
    thread.start()
    log.info("gateway serving %r at http://%s:%d/ipfs/<cid>", store, host, server.server_port)
    return GatewayServer(server, thread)
