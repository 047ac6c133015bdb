"""Publish: choose a model directory (one on this node, e.g. trained by ml/, or uploaded files),
name, description, task, licence, price -> a background job through node.publish (hash, seal,
pin, list) with progress -> the new model page. Uploaded files are written 0600 in 0700 folders
and removed when the job ends: this node keeps no plaintext of an uploaded model (so it does
not serve "Try it" for one; a folder of the node's own, e.g. trained here, is served).

A browser wallet (EIP-1193: this node never holds its key) publishes in two halves. The job
hashes, seals and pins as above, puts the content key in the node's key vault, removes the
upload's plaintext and keeps what the listing needs (model hash, metadata CID, claim, price) as a
pending record (publishing/<id>.json beside the key vault, 0600). The record's page
(/publish/pending/<id>) then has the wallet sign, one transaction at a time through
/api/tx/prepare's "publish" action: ``list`` ("step": "list"), ``claimMetrics`` when the folder
carries an evaluation report ("claim"), and ``setOperator`` naming this node's worker key
("operator"), so that the worker delivers buyers' keys for a model the browser wallet owns (only
from then: no validator has the key before the claim is made). The page sends back the hash of
the ``list`` it sent; the listing's id comes from that receipt's ModelListed event (or, for a
page that lost the hash, from the owner's ModelListed events since the upload was sealed). Which
step is next is read from the record and the chain each time, so a reload resumes where it was;
once nothing is left the record is removed. An upload its wallet never lists is removed
ABANDONED_AFTER (a day) after it was sealed, with its content key, when the next one is
submitted. A listing's owner sets its price and opens or closes its sale from the model page
("setPrice", "setActive").

Models published here are listed with this node's worker as operator, so the node's key-delivery
worker delivers buyers' keys while the seller is offline; the content key goes into the node's
key vault (node.keyvault), never into the database or a log. As `modex publish`, the job claims
the work digest of the folder's evaluation report (evaluation.json: models trained here carry
one); a folder without one is published with a warning that it can never become Verified, and a
report whose metrics are not the folder's metrics.json is refused before the job starts.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from pathlib import Path, PurePosixPath

from eth_utils import to_checksum_address
from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask import session as flask_session
from web3.exceptions import TransactionNotFound
from web3.logs import DISCARD
from werkzeug.exceptions import Conflict, NotFound

from app import session_keys
from app.helpers import InputError, NeedsWallet, parse_eth
from app.jobs import byte_progress, get_jobs
from app.lookups import TASKS
from app.resources import data_dir, get_chain, get_config, get_store
from node.errors import ManifestError
from node.feedback import feedback_key_entry
from node.fetch import PRIVATE_FILE, private_folder
from node.keyvault import atomic_write
from node.protocol import EVALUATION_REPORT
from node.publish import ListingInfo, Prepared, claim_for, list_prepared, prepare
from node.tokens import payment_token

log = logging.getLogger(__name__)
bp = Blueprint("publish", __name__, url_prefix="/publish")

LICENSES = ("apache-2.0", "mit", "cc-by-4.0", "cc-by-sa-4.0", "openrail", "proprietary")
MAX_NAME, MAX_DESCRIPTION, MAX_CARD = 80, 2000, 50_000
# A browser wallet's upload not listed within this many seconds is abandoned: when the next
# upload is submitted, its pending record and its content key (never assigned to a listing) are
# removed, as is any plaintext a stopped node left in uploads/. Its sealed archive stays pinned
# (ciphertext, whose key is gone).
ABANDONED_AFTER = 24 * 3600


def local_models() -> list[Path]:
    """Model directories this node offers in the form: ml/ outputs under <data dir>/models."""
    root = data_dir() / "models"
    if not root.is_dir():
        return []
    # Hidden folders are excluded: ml/train.py writes a model into ".<name>.*" before renaming it.
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file()
    )


@bp.route("/", methods=["GET"])
def index():
    # ?model_dir= preselects a directory (the training job's "Publish this model" link).
    return _form_page({"model_dir": request.args.get("model_dir", "")})


def browser_wallet() -> str | None:
    """The session's browser wallet (EIP-1193), or None (none, or a keystore unlocked here)."""
    return None if session_keys.current_signer() else session_keys.current_address()


def _form_page(form):
    """The publish form (filled with ``form``), with the browser wallet's unfinished uploads."""
    owner = browser_wallet()
    return render_template(
        "publish.html",
        tasks=TASKS,
        licenses=LICENSES,
        models=local_models(),
        form=form,
        pending=PendingUploads().of(owner) if owner else [],
        abandoned_hours=ABANDONED_AFTER // 3600,
    )


def _form() -> dict:
    form = request.form
    name = (form.get("name") or "").strip()
    if not name or len(name) > MAX_NAME:
        raise InputError(f"Give the model a name of 1 to {MAX_NAME} characters.")
    description = (form.get("description") or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InputError(
            f"Keep the description under {MAX_DESCRIPTION} characters "
            "(put details in the model card)."
        )
    task = form.get("task") or ""
    if task not in TASKS:
        raise InputError(f"Choose a task among: {', '.join(TASKS)}.")
    license_ = form.get("license") or ""
    if license_ not in LICENSES:
        raise InputError(f"Choose a licence among: {', '.join(LICENSES)}.")
    card = form.get("card") or ""
    if len(card) > MAX_CARD:
        raise InputError(f"The model card is over {MAX_CARD} characters; shorten it.")
    price = parse_eth(form.get("price", ""), "price")
    return {
        "name": name,
        "description": description,
        "task": task,
        "license": license_,
        "card": card or None,
        "price": price,
    }


def uploads_folder() -> Path:
    """Where uploaded model folders are written until their job seals them."""
    return data_dir() / "uploads"


def _model_dir() -> tuple[Path, bool]:
    """The directory to publish and whether it is a temporary upload to delete afterwards."""
    uploads = [f for f in request.files.getlist("files") if f and f.filename]
    if uploads:
        target = uploads_folder() / uuid.uuid4().hex
        for upload in uploads:
            rel = PurePosixPath(upload.filename.replace("\\", "/"))
            parts = rel.parts[1:] if len(rel.parts) > 1 else rel.parts  # drop the chosen folder
            if rel.is_absolute() or not parts or any(p in ("", ".", "..") for p in parts):
                shutil.rmtree(target, ignore_errors=True)
                raise InputError(
                    f"The uploaded file name '{upload.filename[:80]}' is not a plain "
                    "relative path; upload the model folder itself."
                )
            dest = target.joinpath(*parts)
            try:
                private_folder(dest.parent, data_dir())
                _save_private(upload, dest)
            except (OSError, ValueError) as exc:  # a NUL byte, a name over 255 bytes, a full disk
                shutil.rmtree(target, ignore_errors=True)
                log.info("upload %r refused: %s", upload.filename[:80], exc)
                raise InputError(
                    f"The uploaded file '{upload.filename[:80]}' could not be stored "
                    f"on this node ({getattr(exc, 'strerror', None) or exc}); rename "
                    "it or upload the model folder itself."
                ) from None
        return target, True
    choice = request.form.get("model_dir") or ""
    allowed = {str(p): p for p in local_models()}
    if choice not in allowed:
        raise InputError("Choose a model directory from the list or upload a model folder.")
    return allowed[choice], False


def _save_private(upload, dest: Path) -> None:
    """Write an uploaded file readable by this node's user only (0600, in 0700 folders)."""
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    with open(fd, "wb") as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)  # a name uploaded twice: the file was there
        upload.save(out)


@bp.route("/", methods=["POST"])
def submit():
    signer = session_keys.current_signer()
    owner = browser_wallet()
    if signer is None and owner is None:
        raise NeedsWallet()
    vault = current_app.config.get("MODEX_KEYVAULT")
    if vault is None or (owner and not current_app.config.get("MODEX_OPERATOR")):
        flash(
            "This node has no key vault for sellers' content keys or no worker key, so it "
            "cannot deliver keys for you: start it with `modex up`, or publish with "
            "`modex publish`.",
            "error",
        )
        return redirect(url_for(".index"))
    remove_stale_plaintext(uploads_folder(), now=time.time())
    try:
        fields = _form()
        model_dir, temporary = _model_dir()
    except InputError as exc:
        flash(str(exc), "error")
        return _form_page(request.form), 400
    try:
        claim = claim_for(model_dir, _declared_metrics(model_dir))  # before any work: a sentence
    except ManifestError as exc:
        if temporary:
            shutil.rmtree(model_dir, ignore_errors=True)
        flash(str(exc).replace(str(model_dir), "MODEL_DIR"), "error")
        return _form_page(request.form), 400
    if claim is None:
        flash(
            f"This folder carries no evaluation report ({EVALUATION_REPORT}): it is listed "
            "without a claimed work digest and can never become Verified. Models trained on this "
            "node carry one; for another model run `modex evaluate MODEL_DIR --eval-set NAME "
            f"--output MODEL_DIR/metrics.json --report MODEL_DIR/{EVALUATION_REPORT}` and "
            "publish the folder again.",
            "warning",
        )
    fields["feedback_key"] = _feedback_key(signer, owner)
    if owner:  # a browser wallet: seal and pin here, then its page has the wallet sign
        pending = PendingUploads()
        pending.remove_abandoned(get_chain(), vault, now=time.time())
        job = get_jobs().submit(
            "publish",
            session_keys.session_id(),
            _seal_job,
            get_chain(),
            get_store(),
            get_config(),
            vault,
            owner,
            model_dir,
            temporary,
            fields,
            pending,
        )
        return redirect(url_for("api.job_page", job_id=job.id))
    job = get_jobs().submit(
        "publish",
        session_keys.session_id(),
        _publish_job,
        get_chain(),
        get_store(),
        get_config(),
        signer,
        model_dir,
        temporary,
        fields,
        current_app.config.get("MODEX_OPERATOR"),
        vault,
        current_app.config.get("MODEX_MODELS"),
    )
    return redirect(url_for("api.job_page", job_id=job.id))


def _feedback_key(signer, owner: str | None) -> dict | None:
    """The listing's key for private feedback (node.feedback): the keystore wallet's, or the one
    the browser wallet derived in its page (POST /api/wallet/encryption-key; none yet: the
    listing names none, and buyers are told to ask for a new version)."""
    if owner is None:
        return feedback_key_entry(signer, get_chain().chain_id)
    public = flask_session.get("browser_x25519")
    return {"account": to_checksum_address(owner), "x25519": public} if public else None


def _declared_metrics(model_dir: Path) -> dict:
    try:
        metrics = json.loads((model_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _publish_job(
    chain, store, config, signer, model_dir, temporary, fields, operator, vault, models, *, progress
):
    fields = dict(fields)
    price = fields.pop("price")
    try:
        prepared = _seal(store, config, vault, model_dir, fields, progress)
        progress("Listing on-chain")
        result = list_prepared(chain, signer, prepared, vault, price_wei=price, operator=operator)
    finally:
        # An upload's plaintext leaves this node once it is sealed and listed, and when the job
        # fails too (the form cannot pick an old upload: a retry uploads the folder again).
        if temporary:
            shutil.rmtree(model_dir, ignore_errors=True)
    if models is not None and not temporary:
        models[result.model_id] = model_dir  # served for inference by this node from now on
    return {
        "model_id": result.model_id,
        "url": f"/models/{result.model_id}",
        "work_digest": "0x" + result.work_digest.hex() if result.work_digest else None,
    }


def _seal(store, config, vault, model_dir: Path, fields: dict, progress) -> Prepared:
    """Hash, seal and pin ``model_dir`` and put its content key in the vault (node.publish)."""
    # A directory from ml/ declares its evaluation (eval set + metrics): validators re-run it.
    metrics = _declared_metrics(model_dir)
    return prepare(
        model_dir,
        store,
        vault,
        ListingInfo(**fields, metrics=metrics),
        cid_profile=config.cid_profile,
        progress=byte_progress(progress),
    )


def _seal_job(
    chain, store, config, vault, owner, model_dir, temporary, fields, uploads, *, progress
):
    """The browser wallet's first half: sealed, pinned and keyed, kept as a pending record."""
    fields = dict(fields)
    price = fields.pop("price")
    try:
        prepared = _seal(store, config, vault, model_dir, fields, progress)
    finally:
        # Sealed and pinned (or failed): the listing needs no plaintext, so an upload's goes now.
        if temporary:
            shutil.rmtree(model_dir, ignore_errors=True)
    upload_id = uuid.uuid4().hex
    block = chain.block_number()  # its list() can only be mined after this block
    uploads.save(
        {
            "id": upload_id,
            "owner": owner,
            "name": fields["name"],
            "price": price,
            "model_hash": "0x" + prepared.model_hash.hex(),
            "content_cid": prepared.content_cid,
            "metadata_cid": prepared.metadata_cid,
            "work_digest": "0x" + prepared.work_digest.hex() if prepared.work_digest else None,
            "model_dir": None if temporary else str(model_dir),  # served once listed
            "model_id": None,
            "block": block,
        }
    )
    return {"url": url_for_pending(upload_id)}


def url_for_pending(upload_id: str) -> str:
    return f"/publish/pending/{upload_id}"


UPLOAD_ID = re.compile(r"[0-9a-f]{32}")


class PendingUploads:
    """A browser wallet's sealed, pinned uploads not published yet: one JSON file each (0600 in a
    0700 folder), until its last transaction is mined."""

    def __init__(self, folder: Path | None = None):
        # Beside the key vault that holds their content keys: `modex up` keeps both with the
        # chain they are for (a new chain starts without the old chain's uploads).
        self.folder = folder or Path(get_config().keyvault).parent / "publishing"

    def save(self, record: dict) -> None:
        private_folder(self.folder, self.folder.parent)
        atomic_write(self.folder / f"{record['id']}.json", json.dumps(record).encode())

    def get(self, upload_id, owner: str | None) -> dict:
        """The record ``upload_id`` of ``owner``; InputError for another's or an unknown one."""
        record = None
        if isinstance(upload_id, str) and UPLOAD_ID.fullmatch(upload_id):
            try:
                record = json.loads((self.folder / f"{upload_id}.json").read_text())
            except FileNotFoundError:
                record = None
        if record is None or not owner or record["owner"] != owner:
            raise InputError(
                "No unfinished upload of your browser wallet has that id: publish the model "
                "folder again (the Publish page lists your unfinished uploads)."
            )
        return record

    def of(self, owner: str) -> list[dict]:
        if not self.folder.is_dir():
            return []
        records = (json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json")))
        return [r for r in records if r["owner"] == owner]

    def remove(self, upload_id: str) -> None:
        (self.folder / f"{upload_id}.json").unlink(missing_ok=True)

    def remove_abandoned(self, chain, vault, *, now: float) -> list[str]:
        """Remove the uploads not listed ABANDONED_AFTER seconds after they were sealed (the
        time of their record), with their content keys; the ids removed. One whose ``list``
        was mined meanwhile is kept (its listing recorded): the wallet has steps left."""
        removed = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            if path.stat().st_mtime > now - ABANDONED_AFTER:
                continue
            record = json.loads(path.read_text())
            _find_listing(chain, record, None)
            if record["model_id"] is None:
                vault.discard_unassigned(record["content_cid"])
                self.remove(record["id"])
                removed.append(record["id"])
        return removed


def remove_stale_plaintext(uploads: Path, *, now: float) -> None:
    """Remove upload folders older than ABANDONED_AFTER: a job removes its own when it ends,
    so these are the plaintext of jobs a stopped node never finished."""
    for folder in uploads.iterdir() if uploads.is_dir() else []:
        if folder.stat().st_mtime <= now - ABANDONED_AFTER:
            shutil.rmtree(folder, ignore_errors=True)


STEP_NAMES = {
    "list": "List it on-chain (ModelRegistry.list)",
    "claim": "Claim the work digest of its evaluation (claimMetrics)",
    "operator": "Let this node's worker deliver buyers' keys (setOperator)",
}


def steps_left(chain, record: dict, operator: str) -> list[str]:
    """The transactions the wallet has still to sign for ``record``, next first (the chain says
    which of the claim and the operator are done)."""
    model_id = record["model_id"]
    claim = ["claim"] if record["work_digest"] else []
    if model_id is None:
        return ["list", *claim, "operator"]
    registry = chain.registry.functions
    left = []
    if (
        claim
        and "0x" + bytes(chain.call(registry.claimedWorkDigest(model_id))).hex()
        != (record["work_digest"])
    ):
        left.append("claim")
    if chain.call(registry.operatorOf(model_id)).lower() != operator.lower():
        left.append("operator")
    return left


@bp.route("/pending/<upload_id>")
def pending(upload_id: str):
    """A browser wallet's upload: the transactions left to sign, or (none left) its model page."""
    owner = browser_wallet()
    try:
        record = PendingUploads().get(upload_id, owner)
    except InputError as exc:
        raise NotFound(str(exc)) from None
    _find_listing(get_chain(), record, None)
    left = steps_left(get_chain(), record, current_app.config["MODEX_OPERATOR"])
    if left:
        return render_template("publish_pending.html", record=record, left=left, steps=STEP_NAMES)
    models = current_app.config.get("MODEX_MODELS")
    if models is not None and record["model_dir"]:
        models[record["model_id"]] = Path(record["model_dir"])  # served by this node from now on
    PendingUploads().remove(upload_id)
    flash(f"Published: model #{record['model_id']}; this node's worker delivers its keys.", "ok")
    return redirect(url_for("market.model", model_id=record["model_id"]))


# --- /api/tx/prepare actions (app.api): (chain, address, body, modelId, score) -> (call, wei, step)


def prepare_publish(chain, address, data, model_id, score):
    """The next transaction of the browser wallet's upload ``data["upload"]``; ``data["tx"]`` is
    the hash of the ``list`` it sent, whose mined receipt names the new listing."""
    record = PendingUploads().get(data.get("upload"), address)
    _find_listing(chain, record, data.get("tx"))
    operator = current_app.config["MODEX_OPERATOR"]
    left = steps_left(chain, record, operator)
    if not left:
        raise Conflict(f"Model #{record['model_id']} is published: nothing is left to sign.")
    registry, model_id = chain.registry.functions, record["model_id"]
    if left[0] == "list":
        fn = registry.list(
            bytes.fromhex(record["model_hash"][2:]), record["metadata_cid"], record["price"]
        )
    elif left[0] == "claim":
        fn = registry.claimMetrics(model_id, bytes.fromhex(record["work_digest"][2:]))
    else:
        fn = registry.setOperator(model_id, operator)
    return fn, 0, {"step": left[0], "upload": record["id"], "left": len(left)}


def _find_listing(chain, record: dict, tx_hash) -> None:
    """Record the model id ``record``'s upload was listed as, once: from the mined ``list``
    transaction ``tx_hash`` the page names, else from the owner's ModelListed events since the
    upload was sealed (a page that lost the hash: another tab, a closed one). Its content key
    in the vault is assigned to that listing."""
    if record["model_id"] is not None:
        return
    if tx_hash:
        model_id = _listed_by(chain, record, str(tx_hash))
    else:
        listed = [
            int(event["args"]["modelId"])
            for event in chain.events(
                "ModelListed", from_block=record["block"], seller=record["owner"]
            )
            if _lists(chain, event, record)
        ]
        if not listed:
            return
        model_id = listed[0]
    record["model_id"] = model_id
    current_app.config["MODEX_KEYVAULT"].assign(
        record["content_cid"],
        chain_id=chain.chain_id,
        model_id=model_id,
        registry=chain.registry.address,
    )
    PendingUploads().save(record)


def _lists(chain, event, record: dict) -> bool:
    """Whether the ModelListed ``event`` is the listing of ``record``'s upload by its owner."""
    args = event["args"]
    return (
        event["address"] == chain.registry.address
        and args["seller"] == record["owner"]
        and "0x" + bytes(args["modelHash"]).hex() == record["model_hash"]
        and args["metadataCid"] == record["metadata_cid"]
    )


def _listed_by(chain, record: dict, tx_hash: str) -> int:
    """The model id the mined ``list`` transaction ``tx_hash`` gave ``record``'s upload."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", tx_hash):
        raise InputError("tx must be the hash of the list transaction (0x + 64 hex digits).")
    try:
        receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        raise Conflict(
            f"The list transaction {tx_hash} is not mined yet: ask again once it is."
        ) from None
    for event in chain.registry.events.ModelListed().process_receipt(receipt, errors=DISCARD):
        if _lists(chain, event, record):
            return int(event["args"]["modelId"])
    raise InputError(
        f"The transaction {tx_hash} did not list this upload (no ModelListed of it by "
        f"{record['owner']}): send the list transaction this page prepares."
    )


def _owned(chain, address: str, model_id: int) -> None:
    if chain.call(chain.registry.functions.ownerOf(model_id)) != address:
        raise InputError(f"Only the owner of model #{model_id} can change its listing.")


def prepare_set_price(chain, address, data, model_id, score):
    """setPrice, in the listing's own token (ETH or an ERC-20)."""
    _owned(chain, address, model_id)
    price = payment_token(chain, model_id).parse(data.get("price"), "price")
    return chain.registry.functions.setPrice(model_id, price), 0, {}


def prepare_set_active(chain, address, data, model_id, score):
    """setActive: open (true) or close (false) the listing for sale."""
    _owned(chain, address, model_id)
    active = data.get("active")
    if not isinstance(active, bool):
        raise InputError("active must be true (put it on sale) or false (stop selling).")
    return chain.registry.functions.setActive(model_id, active), 0, {}
