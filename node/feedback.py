"""Private feedback (issue 15 §3): a licence or subscription holder corrects a model's answer,
and only the model's seller can read the correction.

    item   = canonical JSON {"modelId", "version", "input", "output", "label" | "note",
                             "sender", "createdAt"}
    info   = b"modex/v1/feedback" || u64be(chainId) || Votes address (20) || u256be(modelId)
    stored = MAGIC (8) || enc (32) || HPKE ciphertext of the item (keywrap's suite, aad = b"")

The item is sealed to the seller's wallet-derived X25519 key, which the seller publishes in the
listing's metadata (``feedback_key``: the owner's address and its public key, written by
``node.publish.publish``), and pinned; only its CID is public, anchored by
``Votes.sendFeedback(modelId, cid)`` (the contract checks ``Marketplace.hasAccess``). The sender
withdraws consent with ``Votes.withdrawFeedback``. The seller's ``read_feedback`` decrypts the
anchored items of one model and skips withdrawn ones, and refuses an item sealed for another
model (the HPKE ``info`` binds it), one whose ``modelId`` or ``sender`` is not the anchor's (a
CID copied into another account's anchor), and anything that is not a well-formed item.
Nothing here logs an item's text: log lines name CIDs, models and accounts only.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from io import BytesIO

from eth_utils import is_address, to_checksum_address

from node.content import keywrap
from node.errors import ChainError, InputError, KeyWrapError, ModexError, StoreError
from node.fetch import content_ref, load_metadata, sale_terms
from node.onchain import canonical_json
from node.pipes import as_reader

log = logging.getLogger(__name__)

MAGIC = b"MDXFEED1"
MAX_INPUT_CHARS = 10_000  # the text the model was asked about
MAX_OUTPUT_CHARS = 1_000  # what it answered
MAX_NOTE_CHARS = 2_000
MAX_STORED_BYTES = 64 * 1024  # a reader fetches no more than this for one item
METADATA_FIELD = "feedback_key"
ITEM_FIELDS = {"modelId", "version", "input", "output", "sender", "createdAt"}


class FeedbackError(ModexError):
    """A feedback item that cannot be sent or read: no access, no published seller key, or an
    item that does not open or does not belong to its anchor (the message says which)."""

    error_code = "feedback_refused"  # the word of the app's JSON error (app.errors)


@dataclass(frozen=True)
class FeedbackItem:
    """One decrypted correction, as the seller reads it."""

    cid: str
    model_id: int
    version: int
    input: str
    output: str
    sender: str
    created_at: int
    label: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class SentFeedback:
    cid: str
    model_id: int
    tx_hash: str


def feedback_info(chain_id: int, votes: str | bytes, model_id: int) -> bytes:
    """The HPKE ``info`` binding an item to one model of one Votes contract on one chain: the
    layout of the key wrapping's ``info`` with the feedback label (same checks on each part)."""
    bound = keywrap.key_info(chain_id, votes, model_id)
    return keywrap.FEEDBACK_INFO_LABEL + bound[len(keywrap.INFO_LABEL) :]


def feedback_key_entry(signer, chain_id: int) -> dict:
    """The listing metadata's ``feedback_key``: who may read feedback, and its X25519 key."""
    _secret, public = keywrap.derive_x25519(signer, chain_id)
    return {"account": to_checksum_address(signer.address), "x25519": "0x" + public.hex()}


def seller_key(chain, store, model_id: int) -> bytes:
    """The X25519 key feedback on ``model_id`` is sealed to: the one its metadata publishes,
    provided it belongs to the model's current owner."""
    _hash, metadata_cid = content_ref(chain, model_id)
    entry = load_metadata(store, metadata_cid).get(METADATA_FIELD)
    owner = sale_terms(chain, model_id).owner
    if not isinstance(entry, dict):
        raise FeedbackError(
            f"the seller of model {model_id} publishes no feedback key in its metadata (listed "
            f"before private feedback existed): ask the seller ({owner}) to publish a new version",
            model_id=model_id,
        )
    account, public = str(entry.get("account", "")), str(entry.get("x25519", ""))
    if not is_address(account) or account.lower() != str(owner).lower():
        raise FeedbackError(
            f"the feedback key in model {model_id}'s metadata belongs to {account or 'nobody'}, "
            f"not to the model's owner {owner}: nothing was sent (the key would let someone "
            "other than the seller read it)",
            model_id=model_id,
        )
    try:
        raw = bytes.fromhex(public.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise FeedbackError(
            f"model {model_id}'s metadata has a malformed feedback key ({public[:20]!r}): it "
            "must be 0x + 64 hex characters",
            model_id=model_id,
        )
    return raw


def _text(value, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InputError(f"the feedback's {name} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise InputError(f"the feedback's {name} has {len(value)} characters; at most {limit}")
    return value


def build_item(
    model_id: int,
    version: int,
    *,
    text: str,
    output: str,
    sender: str,
    label: int | None = None,
    note: str | None = None,
    created_at: int | None = None,
) -> dict:
    """The item's JSON object (checked: exactly one of ``label`` and ``note``)."""
    if (label is None) == (note is None):
        raise InputError(
            "give the right label (a label id) or a note saying what is wrong, not both"
        )
    if not _text(text, "input", MAX_INPUT_CHARS).strip():
        raise InputError("the feedback needs the text the model answered wrongly")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InputError(f"a model version is a number from 1, got {version!r}")
    item = {
        "modelId": int(model_id),
        "version": version,
        "input": text,
        "output": _text(output, "output", MAX_OUTPUT_CHARS),
        "sender": to_checksum_address(sender),
        "createdAt": int(time.time()) if created_at is None else int(created_at),
    }
    if label is not None:
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise InputError(f"the right label is a label id (0, 1, ...), got {label!r}")
        item["label"] = label
    else:
        if not _text(note, "note", MAX_NOTE_CHARS).strip():
            raise InputError("the note is empty: say what is wrong with the answer")
        item["note"] = note
    return item


def seal_item(
    item: dict, seller_public: bytes, *, chain_id: int, votes: str, model_id: int
) -> bytes:
    """The stored form of ``item``, readable only with the seller's X25519 secret."""
    info = feedback_info(chain_id, votes, model_id)
    enc, ciphertext = keywrap.hpke_seal(seller_public, canonical_json(item), info=info)
    return MAGIC + enc + ciphertext


def open_item(
    blob: bytes, seller_secret: bytes, *, chain_id: int, votes: str, model_id: int
) -> dict:
    """Decrypt and check one stored item for ``model_id``; FeedbackError if it is not one."""
    head = len(MAGIC) + keywrap.ENC_SIZE
    if not blob.startswith(MAGIC) or len(blob) <= head:
        raise FeedbackError(f"not a Modex feedback item (no {MAGIC.decode()} header)")
    try:
        plain = keywrap.hpke_open(
            blob[len(MAGIC) : head],
            seller_secret,
            blob[head:],
            info=feedback_info(chain_id, votes, model_id),
        )
    except KeyWrapError:
        raise FeedbackError(
            f"the item does not open as feedback on model {model_id} for this wallet (sealed "
            "to another key, for another model, chain or Votes contract, or altered)",
            model_id=model_id,
        ) from None
    try:
        item = json.loads(plain)
    except ValueError:
        raise FeedbackError("the decrypted item is not JSON") from None
    if not isinstance(item, dict) or not item.keys() >= ITEM_FIELDS:
        raise FeedbackError("the decrypted item lacks the fields of a feedback item")
    if item["modelId"] != model_id:
        raise FeedbackError(
            f"the item is about model {item['modelId']!r}, not {model_id}", model_id=model_id
        )
    try:
        build_item(
            model_id,
            item["version"],
            text=item["input"],
            output=item["output"],
            sender=item["sender"],
            label=item.get("label"),
            note=item.get("note"),
            created_at=item["createdAt"],
        )
    except (InputError, ValueError, TypeError) as exc:
        raise FeedbackError(f"the decrypted item is malformed: {exc}") from None
    return item


def latest_version(chain, model_id: int) -> int:
    """The listing's latest version (``ModelRegistry.versionCount``; 1 on a registry deployed
    before versions existed, where the listing is its only version)."""
    registry = chain.registry
    if not any(entry.get("name") == "versionCount" for entry in registry.abi):
        return 1
    return int(chain.call(registry.functions.versionCount(model_id)))


def send_feedback(
    chain,
    store,
    signer,
    model_id: int,
    *,
    text: str,
    output: str = "",
    label: int | None = None,
    note: str | None = None,
    version: int | None = None,
) -> SentFeedback:
    """Seal a correction to the seller, pin it and anchor its CID with ``Votes.sendFeedback``."""
    if not chain.call(chain.marketplace.functions.hasAccess(model_id, signer.address)):
        raise FeedbackError(
            f"{signer.address} holds no licence or live subscription for model {model_id}: only "
            f"its users send feedback (`modex buy {model_id}` or `modex subscribe {model_id}`)",
            model_id=model_id,
        )
    item = build_item(
        model_id,
        latest_version(chain, model_id) if version is None else version,
        text=text,
        output=output,
        sender=signer.address,
        label=label,
        note=note,
    )
    votes = chain.votes.address
    blob = seal_item(
        item,
        seller_key(chain, store, model_id),
        chain_id=chain.chain_id,
        votes=votes,
        model_id=model_id,
    )
    cid = store.put(BytesIO(blob))
    receipt = chain.transact(chain.votes.functions.sendFeedback(model_id, cid), signer)
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()
    log.info("feedback %s on model %d anchored in %s", cid, model_id, tx_hash)
    return SentFeedback(cid, model_id, tx_hash)


def withdraw_feedback(chain, signer, model_id: int, cid: str) -> str:
    """Withdraw consent for one item (only its sender may): the seller's reader skips it."""
    votes = chain.votes.functions
    sender = chain.call(votes.feedbackSender(model_id, cid))
    if str(sender).lower() != signer.address.lower():
        raise FeedbackError(
            f"item {cid} on model {model_id} was not sent by {signer.address}: only its sender "
            f"withdraws it (`modex feedback {model_id} --list` shows yours)",
            model_id=model_id,
        )
    receipt = chain.transact(votes.withdrawFeedback(model_id, cid), signer)
    return "0x" + bytes(receipt["transactionHash"]).hex()


def anchors(chain, model_id: int, *, sender: str | None = None) -> list[tuple[str, str, bool]]:
    """(CID, sender, withdrawn) of each item anchored for ``model_id`` (optionally one sender's),
    oldest first."""
    filters: dict[str, object] = {"modelId": model_id}
    if sender is not None:
        filters["sender"] = to_checksum_address(sender)
    withdrawn = {
        (e["args"]["itemCid"], e["args"]["sender"])
        for e in chain.events("FeedbackWithdrawn", **filters)
    }
    return [
        (
            e["args"]["itemCid"],
            e["args"]["sender"],
            (e["args"]["itemCid"], e["args"]["sender"]) in withdrawn,
        )
        for e in chain.events("FeedbackSent", **filters)
    ]


def _fetch(store, cid: str) -> bytes:
    data = as_reader(store.get(cid)).read(MAX_STORED_BYTES + 1)
    if len(data) > MAX_STORED_BYTES:
        raise FeedbackError(f"item {cid} is over {MAX_STORED_BYTES} bytes: not a feedback item")
    return data


def read_item(chain, store, secret: bytes, model_id: int, cid: str, sender: str) -> FeedbackItem:
    """One anchored item, decrypted and checked against its anchor (model and sender)."""
    item = open_item(
        _fetch(store, cid),
        secret,
        chain_id=chain.chain_id,
        votes=chain.votes.address,
        model_id=model_id,
    )
    if str(item["sender"]).lower() != str(sender).lower():
        raise FeedbackError(
            f"item {cid} was written by {item['sender']} but anchored by {sender}: a copied "
            "CID, refused",
            model_id=model_id,
        )
    return FeedbackItem(
        cid=cid,
        model_id=model_id,
        version=item["version"],
        input=item["input"],
        output=item["output"],
        sender=to_checksum_address(item["sender"]),
        created_at=item["createdAt"],
        label=item.get("label"),
        note=item.get("note"),
    )


def read_feedback(chain, store, signer, model_id: int) -> list[FeedbackItem]:
    """The seller's side: every item anchored for ``model_id`` and not withdrawn, decrypted with
    the wallet's X25519 key, oldest first. Items that do not open or do not match their anchor
    are skipped with a warning naming the CID (never their content)."""
    owner = sale_terms(chain, model_id).owner
    if str(owner).lower() != signer.address.lower():
        raise FeedbackError(
            f"model {model_id} belongs to {owner}, not {signer.address}: only its seller reads "
            "its feedback",
            model_id=model_id,
        )
    secret, _public = keywrap.derive_x25519(signer, chain.chain_id)
    items = []
    for cid, sender, withdrawn in anchors(chain, model_id):
        if withdrawn:
            continue
        try:
            items.append(read_item(chain, store, secret, model_id, cid, sender))
        except (FeedbackError, ChainError, StoreError) as exc:
            log.warning("feedback %s on model %d skipped: %s", cid, model_id, exc)
    return items
