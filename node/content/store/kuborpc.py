"""The Kubo HTTP RPC API (``POST /api/v0/<endpoint>``) over httpx, for ``node.content.store.kubo``.

Every call has a timeout (a daemon waits forever for content it lacks). A call that cannot
connect is retried with exponential backoff, then StoreError names the endpoint; an upload is
sent once (its body is a stream that cannot be replayed). A daemon's error answer becomes
ContentNotFound when it says the CID was not found (or timed out looking), else StoreError.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator

import httpx

from node.errors import ContentNotFound, StoreError

log = logging.getLogger(
    "node.content.store.kubo"
)  # one logger for the Kubo store, as before the split

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
        transport: httpx.BaseTransport | None = None,
    ):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
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
                raise StoreError(
                    f"the IPFS daemon at {url} did not answer within {self.timeout} s",
                    endpoint=url,
                    cid=cid,
                ) from None
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
