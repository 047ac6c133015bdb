"""Decrypted weights and uploads are private to the node's user (issue 16 §5): files 0600 in
0700 folders, read with os.stat; an upload's plaintext is gone once its publish job ends."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from app import publish as publish_page
from node.fetch import fetch_model
from tests.app.conftest import post, publish_listing, settle, unlock, wait_job


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def assert_private_tree(root: Path) -> list[Path]:
    """Every folder under root (itself too) 0700, every file 0600; returns the files."""
    files = []
    assert mode(root) == 0o700, root
    for path in root.rglob("*"):
        if path.is_dir():
            assert mode(path) == 0o700, path
        else:
            assert mode(path) == 0o600, path
            files.append(path)
    return files


def test_fetched_weights_are_0600_in_0700_folders(client, stack, tmp_path):
    model_id = publish_listing(stack, tmp_path / "models", "private", "Private weights")
    settle(stack)
    buyer = unlock(client, stack, "buyer")
    assert post(client, f"/models/{model_id}/buy", {"max_price": "0.1"}).status_code == 302
    settle(stack)
    job = wait_job(client, post(client, f"/models/{model_id}/fetch").headers["Location"])
    assert job["state"] == "done", job
    fetched = Path(job["result"]["path"])
    assert fetched == stack.config.data_dir / "fetched" / buyer.lower() / str(model_id)
    assert {p.name for p in assert_private_tree(fetched)} >= {"config.json", "model.safetensors"}
    assert mode(fetched.parent) == 0o700 and mode(fetched.parent.parent) == 0o700

    # modex fetch's --out: the folders it makes are 0700; a folder that was there keeps its mode.
    os.chmod(tmp_path, 0o755)
    out = tmp_path / "made" / "out"
    fetch_model(stack.chain, stack.demo_accounts["buyer"], stack.store, model_id, out)
    assert_private_tree(out)
    assert mode(out.parent) == 0o700 and mode(tmp_path) == 0o755


def upload_form(*files) -> dict:
    return {
        "name": "Private upload",
        "description": "",
        "task": "other",
        "license": "mit",
        "price": "0.01",
        "card": "",
        "files": list(files),
    }


def test_uploads_are_written_0600_in_0700_folders(app, stack):
    files = [
        (io.BytesIO(b"{}"), "m/config.json"),
        (io.BytesIO(b"w" * 100), "m/sub/model.safetensors"),
    ]
    with app.test_request_context(
        "/publish/", method="POST", data={"files": files}, content_type="multipart/form-data"
    ):
        model_dir, temporary = publish_page._model_dir()
    try:
        assert temporary and model_dir.parent == stack.config.data_dir / "uploads"
        assert {p.name for p in assert_private_tree(model_dir)} == {
            "config.json",
            "model.safetensors",
        }
        assert mode(model_dir.parent) == 0o700
    finally:
        publish_page.shutil.rmtree(model_dir)


def test_an_uploads_plaintext_is_removed_when_its_job_ends(client, stack):
    unlock(client, stack, "seller")
    uploads = stack.config.data_dir / "uploads"

    def publish_upload(*files) -> dict:
        before = set(uploads.iterdir()) if uploads.is_dir() else set()
        r = post(
            client,
            "/publish/",
            upload_form(*files),
            token_from="/publish/",
            content_type="multipart/form-data",
        )
        assert r.status_code == 302, r.get_data(as_text=True)
        job = wait_job(client, r.headers["Location"])
        assert set(uploads.iterdir()) == before, job  # nothing of the upload is left
        return job

    listed = publish_upload(
        (io.BytesIO(b'{"model_type":"bert"}'), "m/config.json"),
        (io.BytesIO(b"w" * 2048), "m/model.safetensors"),
    )
    assert listed["state"] == "done", listed
    assert listed["result"]["model_id"] not in stack.models  # no plaintext left to serve
    settle(stack)
    assert "Private upload" in client.get(f"/models/{listed['result']['model_id']}").get_data(
        as_text=True
    )
    failed = publish_upload(
        (io.BytesIO(b"{}"), "m/config.json"), (io.BytesIO(b"x"), "m/pytorch_model.bin")
    )
    assert failed["state"] == "failed" and "safetensors" in failed["error"]
