"""Reviews and reports (issue 15 §2): a licence holder's score with a short text, and a report of
a model by an account with access, each a signed document in the content store anchored by its
CID on Votes.

    review = canonical JSON {"modelId", "version", "score", "text", "reviewer", "chainId",
                             "votes", "signature"}
    report = canonical JSON {"modelId", "reason", "reporter", "chainId", "votes", "signature"}

``signature`` is the author's EIP-712 signature (``eth_signTypedData_v4``: a browser wallet signs
the same typed data as a keystore) of the other fields, domain {name "Modex Review", version "1",
chainId, verifyingContract: the Votes contract}. The review's score counts on-chain exactly as a
vote (``Votes.review``: the same licence rule, it replaces the live vote); the text is the
document's only. ``read`` checks a fetched document's fields and recovers its signer; the index
(node.indexer.documents) believes it only where that signer is the account of the event that
anchored it and, for a review, its model and score are the event's: anyone can copy a CID into
their own transaction, nobody can sign for another account.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from io import BytesIO

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import is_address, to_checksum_address
from eth_utils.exceptions import ValidationError

from node.channels import EIP712_DOMAIN_FIELDS
from node.errors import InputError, IntegrityError
from node.market import valid_score
from node.onchain import canonical_json
from node.pipes import as_reader

DOMAIN_NAME = "Modex Review"
DOMAIN_VERSION = "1"
MAX_TEXT_CHARS = 2_000  # a review's text, a report's reason
MAX_DOCUMENT_BYTES = 16 * 1024  # a reader fetches no more than this for one document
# A CID the dry run sends before the document is pinned: the outcome of review/report does not
# depend on which CID it is, only that there is one.
DRY_RUN_CID = "bafkqaaa"


def _members(spec: str) -> list[dict]:
    """EIP-712 struct members from ``"name:type name:type ..."``, in order."""
    return [{"name": name, "type": kind} for name, kind in (m.split(":") for m in spec.split())]


# Each kind of document: its EIP-712 type, its fields in order, and who signs it.
KINDS = {
    "review": (
        "Review",
        _members(
            "modelId:uint256 version:uint256 score:uint8 text:string reviewer:address "
            "chainId:uint256 votes:address"
        ),
        "reviewer",
    ),
    "report": (
        "Report",
        _members("modelId:uint256 reason:string reporter:address chainId:uint256 votes:address"),
        "reporter",
    ),
}
TEXT_FIELD = {"review": "text", "report": "reason"}


@dataclass(frozen=True)
class Document:
    """A review or report read back from the store, its signature checked."""

    cid: str
    kind: str  # "review" or "report"
    fields: dict  # the signed fields (KINDS), signature left out
    signer: str  # the checksum address that signed it

    @property
    def text(self) -> str:
        return self.fields[TEXT_FIELD[self.kind]]


@dataclass(frozen=True)
class Anchored:
    """A document pinned and anchored on Votes."""

    cid: str
    receipt: dict


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"Write the {what}: it cannot be empty.")
    if len(value) > MAX_TEXT_CHARS:
        raise InputError(f"The {what} is {len(value)} characters; keep it to {MAX_TEXT_CHARS}.")
    return value


def _uint(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**256:
        raise InputError(f"The {what} must be a whole number of 0 or more, not {value!r}.")
    return value


def _address(value, what: str) -> str:
    if not isinstance(value, str) or not is_address(value):
        raise InputError(f"The {what} must be an 0x address, not {value!r}.")
    return to_checksum_address(value)


def review_fields(
    chain_id: int, votes: str, model_id: int, version: int, score, text, reviewer: str
) -> dict:
    """The signed fields of a review, checked (InputError saying what to fix)."""
    return {
        "modelId": _uint(model_id, "model id"),
        "version": _uint(version, "version"),
        "score": valid_score(score),
        "text": _text(text, "review"),
        "reviewer": _address(reviewer, "reviewer"),
        "chainId": _uint(chain_id, "chain id"),
        "votes": _address(votes, "Votes address"),
    }


def report_fields(chain_id: int, votes: str, model_id: int, reason, reporter: str) -> dict:
    """The signed fields of a report, checked (InputError saying what to fix)."""
    return {
        "modelId": _uint(model_id, "model id"),
        "reason": _text(reason, "reason"),
        "reporter": _address(reporter, "reporter"),
        "chainId": _uint(chain_id, "chain id"),
        "votes": _address(votes, "Votes address"),
    }


def typed_data(kind: str, fields: dict) -> dict:
    """The full EIP-712 message of a document's fields (JSON, for eth_signTypedData_v4 too)."""
    primary, members, _ = KINDS[kind]
    domain = (DOMAIN_NAME, DOMAIN_VERSION, fields["chainId"], fields["votes"])
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_FIELDS, primary: members},
        "primaryType": primary,
        "domain": {f["name"]: v for f, v in zip(EIP712_DOMAIN_FIELDS, domain, strict=True)},
        "message": {m["name"]: fields[m["name"]] for m in members},
    }


def signer_of(kind: str, fields: dict, signature: bytes | str) -> str:
    """The checksum address that signed the document's fields; InputError for a malformed
    signature."""
    try:
        return Account.recover_message(
            encode_typed_data(full_message=typed_data(kind, fields)), signature=signature
        )
    except (ValueError, TypeError, ValidationError) as exc:
        raise InputError(
            f"the {kind}'s signature is malformed ({exc}): it must be 65 bytes (r, s, v), 0x-hex"
        ) from None


def _pin(store, fields: dict, signature: bytes | str) -> str:
    """Put the signed document in ``store`` (pinned); its CID."""
    if isinstance(signature, str):
        signature = bytes.fromhex(signature.removeprefix("0x"))
    document = {**fields, "signature": "0x" + bytes(signature).hex()}
    return store.put(BytesIO(canonical_json(document)))


def latest_version(chain, model_id: int) -> int:
    """The model's latest version (ModelRegistry.versionCount), what a review is written about."""
    return int(chain.call(chain.registry.functions.versionCount(model_id)))


def _votes_call(chain, kind: str, fields: dict, cid: str):
    votes = chain.votes.functions
    if kind == "review":
        return votes.review(fields["modelId"], fields["score"], cid)
    return votes.report(fields["modelId"], cid)


def prepare(chain, store, kind: str, fields: dict, signature: bytes | str):
    """The Votes call that anchors a signed document, for its author to send: checks the
    signature, dry-runs the call (refused: no licence, no access... before anything is pinned),
    pins the document. Returns (its CID, the call)."""
    author = fields[KINDS[kind][2]]
    if signer_of(kind, fields, signature) != author:
        raise InputError(f"the {kind} is not signed by {author}: sign it with that wallet")
    chain.call(_votes_call(chain, kind, fields, DRY_RUN_CID), sender=author)
    cid = _pin(store, fields, signature)
    return cid, _votes_call(chain, kind, fields, cid)


def _sign_and_send(chain, signer, store, kind: str, fields: dict) -> Anchored:
    signature = signer.sign_typed_data(typed_data(kind, fields))
    cid, call = prepare(chain, store, kind, fields, signature)
    return Anchored(cid, chain.transact(call, signer))


def review(
    chain, signer, store, model_id: int, score, text, *, version: int | None = None
) -> Anchored:
    """Review a model the signer holds a voting licence for, about ``version`` (default: the
    latest): sign the document, pin it, send ``Votes.review``."""
    if version is None:
        version = latest_version(chain, model_id)
    fields = review_fields(
        chain.chain_id, chain.votes.address, model_id, version, score, text, signer.address
    )
    return _sign_and_send(chain, signer, store, "review", fields)


def report(chain, signer, store, model_id: int, reason) -> Anchored:
    """Report a model the signer has access to (licence or subscription), as ``review`` does."""
    fields = report_fields(chain.chain_id, chain.votes.address, model_id, reason, signer.address)
    return _sign_and_send(chain, signer, store, "report", fields)


def read(store, cid: str, kind: str) -> Document:
    """A review or report document from the store, its fields and signature checked
    (IntegrityError when it is not one)."""
    data = as_reader(store.get(cid)).read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise IntegrityError(f"the {kind} at {cid} is over {MAX_DOCUMENT_BYTES} bytes", cid=cid)
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("not an object")
        signature = document.pop("signature")
        members = [m["name"] for m in KINDS[kind][1]]
        if sorted(document) != sorted(members):
            raise ValueError(f"its fields are {sorted(document)}, not {sorted(members)}")
        fields = _fields_of(kind, document)
        signer = signer_of(kind, fields, signature)
    except (ValueError, KeyError, TypeError) as exc:  # InputError is a ValueError
        raise IntegrityError(f"the {kind} at {cid} is not a Modex {kind}: {exc}", cid=cid) from None
    return Document(cid, kind, fields, signer)


def _fields_of(kind: str, d: dict) -> dict:
    """A document's fields, checked as its author's node checked them."""
    if kind == "review":
        return review_fields(
            d["chainId"],
            d["votes"],
            d["modelId"],
            d["version"],
            d["score"],
            d["text"],
            d["reviewer"],
        )
    return report_fields(d["chainId"], d["votes"], d["modelId"], d["reason"], d["reporter"])
