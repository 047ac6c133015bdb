"""A browser wallet's upload that is sealed and pinned but never listed (the seller closed the
page before signing ``list``) is abandoned after app.publish.ABANDONED_AFTER: the next upload
removes its pending record and its content key; an upload whose ``list`` was mined is kept (its
wallet has steps left), and so is a younger one. Plaintext a stopped node left in uploads/ goes
after the same age; a folder a running job still uses stays."""

from __future__ import annotations

import json
import os
import shutil
import time

from app.publish import ABANDONED_AFTER
from tests.app.test_publish_wallet import browser_wallet, prepare, records, sealed_upload, send


def age(path, seconds: float) -> None:
    """Make ``path`` look ``seconds`` old (its modification time)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_an_upload_never_listed_is_removed_after_its_stated_age(client, stack):
    wallet = browser_wallet(client, stack)
    abandoned = sealed_upload(client, stack, "Never listed", "abandoned")
    listed = sealed_upload(client, stack, "Listed, steps left", "listed-late")
    young = sealed_upload(client, stack, "Sealed an hour ago", "young")
    send(stack, wallet, prepare(client, {"action": "publish", "upload": listed}).get_json()["tx"])
    cid = json.loads((records(stack) / f"{abandoned}.json").read_text())["content_cid"]
    assert stack.vault.get(cid).model_id is None
    for upload in (abandoned, listed):
        age(records(stack) / f"{upload}.json", ABANDONED_AFTER + 60)
    age(records(stack) / f"{young}.json", 3600)
    uploads = stack.config.data_dir / "uploads"
    stale, running = uploads / ("a" * 32), uploads / ("b" * 32)
    for folder in (stale, running):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"plaintext weights")
    age(stale, ABANDONED_AFTER + 60)

    try:
        sealed_upload(client, stack, "The next upload", "next")  # it sweeps what is abandoned
        assert not stale.exists() and (running / "model.safetensors").is_file()
    finally:
        shutil.rmtree(running)  # the session's exchange: other tests count its uploads
    assert not (records(stack) / f"{abandoned}.json").exists()
    assert stack.vault.get(cid) is None  # its key is gone with it
    assert client.get(f"/publish/pending/{abandoned}").status_code == 404
    r = prepare(client, {"action": "publish", "upload": abandoned})
    assert r.status_code == 400 and "No unfinished upload" in r.get_json()["error"]["message"]
    kept = json.loads((records(stack) / f"{listed}.json").read_text())
    assert kept["model_id"] is not None  # its list was mined: claim and operator are left
    assert stack.vault.get(kept["content_cid"]).model_id == kept["model_id"]
    assert (records(stack) / f"{young}.json").is_file()
    page = client.get("/publish/").get_data(as_text=True)
    assert "Never listed" not in page and "removed 24 hours after it is sealed" in page
