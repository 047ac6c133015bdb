"""The Kubo HTTP RPC API (``POST /api/v0/<endpoint>``) over httpx, for ``node.content.store.kubo``.

Every call has a timeout (a daemon waits forever for content it lacks). A call that cannot
connect is retried with exponential backoff, then StoreError names the endpoint; an upload is
sent once (its body is a stream that cannot be replayed). A daemon's error answer becomes
ContentNotFound when it says the CID was not found (or timed out looking), else StoreError.

Besides the plumbing (``send``, ``call``, ``upload``, ``download``), the daemon's block, pin and
DAG endpoints the store uses, as the daemon answers them: nothing here checks a block's bytes
against its CID (``KuboStore`` does).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import httpx

from node.content.cid import normalize_cid
from node.content.store.dag import ChunkStream
from node.content.store.http import no_answer
from node.errors import ContentNotFound, LocalStoreError, StoreError

log = logging.getLogger(
    "node.content.store.kubo"
)  # one logger for the Kubo store, as before the split

PIECE = 1 << 20  # bytes per piece of an upload or a download
_NOT_FOUND_HINTS = ("not found", "timed out", "timeout", "deadline exceeded", "no link named")


def _multipart(boundary: str, name: str, pieces: Iterator[bytes]) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    yield from pieces
    yield f"\r\n--{boundary}--\r\n".encode()


def _ndjson(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class KuboRpc:
    """One daemon's RPC API: ``send`` (the response), ``call`` (its NDJSON entries), ``upload``."""

    def __init__(
        self,
        api_url: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        find_timeout: float,
        transport: httpx.BaseTransport | None = None,
    ):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.find_timeout = find_timeout  # how long the daemon may look for absent content
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(
            base_url=f"{self.api_url}/api/v0/", timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._client.close()

    def send(
        self,
        endpoint: str,
        params=None,
        *,
        content=None,
        headers=None,
        stream: bool = False,
        replayable: bool = True,
        cid: str | None = None,
    ) -> httpx.Response:
        url = f"{self.api_url}/api/v0/{endpoint}"
        attempts = self.retries + 1 if replayable else 1
        for attempt in range(attempts):
            try:
                request = self._client.build_request(
                    "POST", endpoint, params=params, content=content, headers=headers
                )
                response = self._client.send(request, stream=stream)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt + 1 < attempts:
                    delay = self.backoff * (2**attempt)
                    log.warning(
                        "IPFS daemon at %s unreachable (%s); retry in %.1f s", url, exc, delay
                    )
                    time.sleep(delay)
                    continue
                raise StoreError(
                    f"cannot reach the IPFS daemon at {url} after {attempts} attempt(s): {exc}. "
                    "Is it running? (`modex store daemon` starts a local one)",
                    endpoint=url,
                ) from None
            except httpx.TimeoutException:
                raise no_answer("the IPFS daemon at", url, self.timeout, cid) from None
            except httpx.HTTPError as exc:
                raise StoreError(f"IPFS daemon call {url} failed: {exc}", endpoint=url) from None
        if response.status_code != 200:
            body = response.read().decode(errors="replace")
            response.close()
            try:
                message = json.loads(body).get("Message") or body
            except ValueError:
                message = body
            text = f"IPFS daemon {url} answered {response.status_code}: {message.strip()[:300]}"
            if cid and any(h in message.lower() for h in _NOT_FOUND_HINTS):
                raise ContentNotFound(f"{cid} not found: {text}", cid=cid, endpoint=url)
            raise StoreError(text, endpoint=url, status=response.status_code)
        return response

    def call(self, endpoint: str, params=None, **kw) -> list[dict]:
        response = self.send(endpoint, params, **kw)
        return _ndjson(response.text)

    def upload(
        self, endpoint: str, params: dict, filename: str, pieces: Iterator[bytes]
    ) -> list[dict]:
        """POST ``pieces`` as one multipart file, streamed and sent once (not replayable)."""
        boundary = uuid.uuid4().hex
        return self.call(
            endpoint,
            params,
            content=_multipart(boundary, filename, pieces),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            replayable=False,
        )

    def download(self, endpoint: str, cid: str) -> ChunkStream:
        """The body of ``endpoint`` for ``cid`` as a stream of pieces; StoreError if it stalls."""
        response = self.send(endpoint, {"arg": cid}, stream=True, cid=cid)

        def pieces() -> Iterator[bytes]:
            try:
                yield from response.iter_bytes(PIECE)
            except httpx.TimeoutException:
                raise StoreError(
                    f"the IPFS daemon at {self.api_url} stalled for {self.timeout} s while sending {cid}",
                    cid=cid,
                ) from None
            finally:
                response.close()

        return ChunkStream(pieces(), on_close=response.close)

    # -- the daemon's endpoints ---------------------------------------------------------------
    def find(self, cid: str) -> None:
        """ContentNotFound unless the daemon finds the root block within ``find_timeout``."""
        self.call("block/stat", {"arg": cid, "timeout": f"{self.find_timeout}s"}, cid=cid)

    def block(self, name: str) -> bytes:
        """The daemon's copy of one block (``block/get``), unchecked."""
        params = {"arg": name, "timeout": f"{self.find_timeout}s"}
        return self.send("block/get", params, cid=name).content

    def remove_block(self, name: str) -> None:
        """``block/rm``; LocalStoreError when the daemon will not remove it (pinned)."""
        for entry in self.call("block/rm", {"arg": name}, cid=name):
            if entry.get("Error"):
                raise LocalStoreError(
                    f"block {name} in the IPFS daemon at {self.api_url} is corrupt and the daemon "
                    f"will not remove it ({entry['Error']}): run `ipfs repo verify` there and "
                    "add the content again",
                    cid=name,
                    endpoint=self.api_url,
                )

    def pin(self, cid: str) -> None:
        self.call("pin/add", {"arg": cid, "recursive": "true"}, cid=cid)

    def dag_import(self, pieces: Iterator[bytes]) -> list[str]:
        """``dag/import`` of the CAR in ``pieces``, its roots pinned; returns the root CIDs."""
        entries = self.upload("dag/import", {"pin-roots": "true"}, "data.car", pieces)
        roots = []
        for entry in entries:
            root = entry.get("Root")
            if not root:
                continue
            if root.get("PinErrorMsg"):
                raise StoreError(f"the IPFS daemon could not pin {root}: {root['PinErrorMsg']}")
            roots.append(normalize_cid(root["Cid"]["/"]))
        return roots
