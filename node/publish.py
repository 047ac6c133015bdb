"""Publish a model: tar + hash → seal → put/pin → metadata → put/pin → key vault → list → claim
→ operator.

The order is the safety argument:
- the ciphertext and the metadata JSON are pinned before ``list()`` is sent (``Store.put`` pins
  the root it returns, in both stores), so nothing is ever listed without its content pinned;
- the content key goes into the seller's key vault before ``list()``, so a crash after the
  listing never leaves a listing whose key is lost (the worker finds the key by the content CID
  in the listing's metadata if the model id was not yet recorded);
- the model directory is streamed (tar → seal → store.put through a pipe): memory stays flat and
  no plaintext copy of the model is written anywhere; each file is read once, hashed while it
  goes into the tar, and the manifest (model hash) is built from those very bytes;
- the seller's claim (``ModelRegistry.claimMetrics``) is the work digest of the evaluation report
  the model directory carries (``evaluation.json``, docs/formats.md section 7: the evaluation the
  card's metrics come from). It is read and checked before anything is pinned or listed (a report
  that is not one, or whose metrics are not the listing's, stops the publish), and sent right
  after ``list()``, before any validator can have the key, so before any round opens: only a
  claim made by then counts. If it fails after the listing, the error names the model and
  ``modex claim`` finishes it; ``claim_metrics`` never re-sends a claim already recorded (a new
  claim would count only from the next round). A directory without a report is listed without a
  claim: such a model can never become Verified (``NO_REPORT`` says so, and how to write one).

Metadata JSON is docs/formats.md §6, canonical JSON as in §1, plus ``cid_profile`` (§5).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from io import BytesIO
from pathlib import Path

from web3.logs import DISCARD

from node.amounts import ETH, Token
from node.content import manifest as manifest_mod
from node.content import seal, tarball
from node.errors import ChainError, InputError, ManifestError
from node.feedback import feedback_key_entry
from node.fetch import content_ref, load_metadata
from node.keyvault import KeyVault
from node.onchain import canonical_json, work_digest
from node.pipes import CountingReader, CountingWriter, pipeline
from node.protocol import EVALUATION_REPORT, REPORT_VERSION, declared_metrics_differences
from node.subscriptions import set_terms

log = logging.getLogger(__name__)

# progress(stage, bytes_done_delta, stage_total_bytes) — the CLI turns it into tqdm bars.
Progress = Callable[[str, int, int | None], None]

CHUNK_SIZE = 1 << 20
REPORT_KEYS = {"version", "eval_set", "protocol", "metrics", "outputs"}


def no_report(model_dir) -> str:
    """What a seller is told when ``model_dir`` carries no evaluation report."""
    return (
        f"{model_dir} carries no evaluation report ({EVALUATION_REPORT}), so the listing has no "
        f"claimed work digest and can never become Verified. `modex train` writes one; for "
        f"another model run `modex evaluate {model_dir} --eval-set NAME --output "
        f"{model_dir}/metrics.json --report {model_dir}/{EVALUATION_REPORT}` and publish that"
    )


@dataclass
class ListingInfo:
    """What a seller says about a model (all optional but the name)."""

    name: str
    description: str = ""
    task: str = ""
    license: str = ""
    framework: str = ""
    metrics: dict = field(default_factory=dict)
    card: str | None = None  # default: the model dir's README.md
    feedback_key: dict | None = None  # node.feedback.feedback_key_entry: who reads feedback


@dataclass
class Prepared:
    model_hash: bytes
    content_cid: str
    metadata_cid: str
    metadata: dict
    sealed_bytes: int
    work_digest: bytes | None = None  # the claim to send after list(); None: no report, no claim
    model_dir: Path | None = None


@dataclass
class Published(Prepared):
    model_id: int = 0
    tx_hash: str = ""
    price_wei: int = 0
    claim_tx: str = ""  # claimMetrics (empty without a claim)


def read_report(model_dir: str | os.PathLike) -> dict | None:
    """The evaluation report ``model_dir`` carries (``evaluation.json``), checked to be one
    (docs/formats.md section 7); None when there is none. ManifestError, saying how to write it
    again, for a file that is not a report."""
    path = Path(model_dir) / EVALUATION_REPORT
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ManifestError(
            f"cannot read the evaluation report {path} ({reason})", path=str(path)
        ) from None
    problem = None
    if not isinstance(report, dict) or set(report) != REPORT_KEYS:
        problem = f"it must be an object with exactly the keys {sorted(REPORT_KEYS)}"
    elif report["version"] != REPORT_VERSION:
        problem = f"version {report['version']!r}, expected {REPORT_VERSION}"
    elif not isinstance(report["eval_set"], str) or not report["eval_set"]:
        problem = "its eval_set must name the evaluation set"
    elif not isinstance(report["metrics"], dict):
        problem = "its metrics must be an object"
    elif (
        not isinstance(report["outputs"], list)
        or not report["outputs"]
        or not all(type(x) is int for x in report["outputs"])
    ):
        problem = "its outputs must be the predicted label id (an integer) of each example"
    if problem:
        raise ManifestError(
            f"{path} is not an evaluation report: {problem}; write it again with "
            f"`modex evaluate {model_dir} --eval-set NAME --report {path}`",
            path=str(path),
        )
    return report


def claim_for(model_dir: str | os.PathLike, metrics: dict) -> tuple[dict, bytes] | None:
    """(the listing's metrics, the work digest to claim) for ``model_dir`` listed with ``metrics``
    (empty: the report's own); None when the directory carries no report. ManifestError when the
    listing's metrics are not the report's: the card would show figures the claim does not back."""
    report = read_report(model_dir)
    if report is None:
        return None
    metrics = metrics or report["metrics"]
    _refuse_differences(model_dir, "the metrics to list", metrics, report)
    return metrics, work_digest(report)


def _refuse_differences(model_dir, whose: str, declared, report: dict) -> None:
    differences = declared_metrics_differences(declared, report)
    if differences:
        raise ManifestError(
            f"{whose} are not those of {Path(model_dir) / EVALUATION_REPORT} "
            f"({'; '.join(differences)}): list the metrics of the evaluation you claim (its "
            f"metrics.json), or evaluate again with `modex evaluate {model_dir} --eval-set NAME "
            f"--output {model_dir}/metrics.json --report {Path(model_dir) / EVALUATION_REPORT}`",
            model_dir=str(model_dir),
        )


def claim_metrics(chain, signer, model_id: int, digest: bytes) -> str:
    """``ModelRegistry.claimMetrics(model_id, digest)``; returns the transaction hash, or "" when
    that digest is already claimed (claiming it again would move its time past an open round's
    start, and the claim would not count in that round)."""
    registry = chain.registry.functions
    if bytes(chain.call(registry.claimedWorkDigest(model_id))) == digest:
        return ""
    receipt = chain.transact(registry.claimMetrics(model_id, digest), signer)
    log.info("model %d: claimed work digest 0x%s", model_id, digest.hex())
    return "0x" + bytes(receipt["transactionHash"]).hex()


def claim_listed(
    chain, signer, store, model_id: int, model_dir: str | os.PathLike
) -> tuple[bytes, str]:
    """Claim the work digest of the report in ``model_dir`` for the listed ``model_id`` (after a
    publish that could not send its claim): the directory must be the listed model (same model
    hash) and the listing's metadata must declare the report's metrics. Returns (digest, tx hash;
    "" when it was claimed already)."""
    listed_hash, metadata_cid = content_ref(chain, model_id)
    if manifest_mod.model_hash(model_dir) != listed_hash:
        raise ManifestError(
            f"{model_dir} is not the model listed as {model_id} (its hash is not "
            f"0x{listed_hash.hex()}): pass the directory you published",
            model_dir=str(model_dir),
        )
    report = read_report(model_dir)
    if report is None:
        raise ManifestError(no_report(model_dir), model_dir=str(model_dir))
    _refuse_differences(
        model_dir,
        f"the metrics listing {model_id} declares",
        load_metadata(store, metadata_cid).get("metrics"),
        report,
    )
    digest = work_digest(report)
    return digest, claim_metrics(chain, signer, model_id, digest)


def _emit(progress: Progress | None, stage: str, n: int, total: int | None) -> None:
    if progress:
        progress(stage, n, total)


def read_card(model_dir: Path) -> str:
    for name in ("README.md", "readme.md", "MODEL_CARD.md"):
        p = model_dir / name
        if p.is_file():
            return p.read_text(encoding="utf-8", errors="replace")
    return ""


def guess_framework(model_dir: Path) -> str:
    if (model_dir / "config.json").is_file():
        return "transformers"
    return "unknown"


def build_metadata(
    info: ListingInfo,
    manifest,
    *,
    content_cid: str,
    chunk_size: int,
    cid_profile: str,
    model_dir: Path,
    created: str | None = None,
) -> dict:
    """The listing's public metadata JSON (docs/formats.md §6)."""
    feedback = {"feedback_key": info.feedback_key} if info.feedback_key else {}
    return feedback | {
        "version": 1,
        "name": info.name,
        "description": info.description,
        "task": info.task,
        "license": info.license,
        "framework": info.framework or guess_framework(model_dir),
        "model_hash": "0x" + manifest.model_hash.hex(),
        "manifest": manifest.as_dict(),
        "sealed": True,
        "content_cid": content_cid,
        "cid_profile": cid_profile,
        "seal": {"scheme": "MDXSEAL1", "chunk_size": chunk_size},
        "metrics": dict(info.metrics),
        "card": info.card if info.card is not None else read_card(model_dir),
        "created": created or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def seal_and_put(
    model_dir: Path,
    listing: list[tuple[str, int]],
    key: bytes,
    store,
    *,
    cid_profile: str,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> tuple[str, int, manifest_mod.Manifest]:
    """Stream tar (hashing each file as it is read) → seal (a thread) → store.put (here).

    One read of the model: the manifest is built from the very bytes that went into the tar.
    Returns (content CID, sealed size, manifest); the manifest only once the seal is complete.
    """
    total = tarball.listing_tar_size(listing)
    made: list[manifest_mod.Manifest] = []

    def seal_into(w):
        counted = CountingWriter(w, lambda n: _emit(progress, "seal", n, total))
        with seal.SealWriter(counted, key, chunk_size=chunk_size) as sealer:
            _, manifest = tarball.write_tar_hashing(model_dir, listing, sealer)
        made.append(manifest)

    counted: list[CountingReader] = []

    def put(r):
        reader = CountingReader(r, lambda n: _emit(progress, "pin", n, None))
        counted.append(reader)
        return store.put(reader, profile=cid_profile)

    cid = pipeline(seal_into, put)
    return cid, counted[0].count, made[0]


def prepare(
    model_dir: str | os.PathLike,
    store,
    vault: KeyVault,
    info: ListingInfo,
    *,
    cid_profile: str = "unixfs-v1-2025",
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> Prepared:
    """Everything before the chain: refuse pickles, hash + seal + pin in one pass, metadata, key.

    ``store.put`` pins what it adds (both stores), so the ciphertext and the metadata are
    pinned when their CIDs come back; ``list()`` is only sent after that.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ManifestError(f"model directory {model_dir} does not exist or is not a directory")
    listing = manifest_mod.scan_dir(model_dir)
    if not listing:
        raise ManifestError(
            f"{model_dir} holds no regular files: nothing to publish", path=str(model_dir)
        )
    manifest_mod.refuse_pickle_paths(path for path, _ in listing)
    claim = claim_for(model_dir, info.metrics)  # before anything is pinned: a bad report stops here
    if claim is None:
        log.warning("%s", no_report(model_dir))
    else:
        info = replace(info, metrics=claim[0])
    key = secrets.token_bytes(32)
    content_cid, sealed_bytes, manifest = seal_and_put(
        model_dir,
        listing,
        key,
        store,
        cid_profile=cid_profile,
        chunk_size=chunk_size,
        progress=progress,
    )
    metadata = build_metadata(
        info,
        manifest,
        content_cid=content_cid,
        chunk_size=chunk_size,
        cid_profile=cid_profile,
        model_dir=model_dir,
    )
    metadata_cid = store.put(BytesIO(canonical_json(metadata)), profile=cid_profile)
    # Before list(): a listing must never exist without its key in the vault.
    vault.put(content_cid, key, model_hash=metadata["model_hash"])
    log.info(
        "sealed %s: model hash %s, content %s, metadata %s",
        model_dir,
        metadata["model_hash"],
        content_cid,
        metadata_cid,
    )
    return Prepared(
        manifest.model_hash,
        content_cid,
        metadata_cid,
        metadata,
        sealed_bytes,
        work_digest=claim[1] if claim else None,
        model_dir=model_dir,
    )


def list_prepared(
    chain,
    signer,
    prepared: Prepared,
    vault: KeyVault,
    *,
    price_wei: int,
    operator: str | None = None,
    token: Token = ETH,
    subscription: tuple[int, int] | None = None,
) -> Published:
    """Send ``list()``, then the claim (when the model carries a report) and ``setOperator``
    (when a worker address is given); record the id. A price in an ERC-20 ``token`` (in its
    units) or a ``subscription`` offer ((price per period, seconds), in the same token) is set
    right after the listing (``node.subscriptions.set_terms``): the listing is made at the
    registry's maximum price, so it is never on sale in ETH at a number meant for the token."""
    if price_wei < 0:
        raise ChainError("the price cannot be negative")
    registry = chain.registry
    plain = token.is_eth and subscription is None
    listed_at = price_wei if plain else int(chain.call(registry.functions.MAX_PRICE()))
    receipt = chain.transact(
        registry.functions.list(prepared.model_hash, prepared.metadata_cid, listed_at), signer
    )
    model_id = int(_emitted(receipt, registry.events.ModelListed, "list()")["modelId"])
    vault.assign(
        prepared.content_cid, chain_id=chain.chain_id, model_id=model_id, registry=registry.address
    )
    if not plain:
        set_terms(chain, signer, model_id, token=token, price=price_wei, subscription=subscription)
    claim_tx, claim_error = "", None
    if prepared.work_digest:
        try:
            claim_tx = claim_metrics(chain, signer, model_id, prepared.work_digest)
        except ChainError as exc:  # the listing stands: set its operator, then say how to finish
            claim_error = exc
    if operator and operator.lower() != signer.address.lower():
        chain.transact(registry.functions.setOperator(model_id, operator), signer)
        log.info("model %d: operator set to %s", model_id, operator)
    if claim_error is not None:
        raise ChainError(
            f"model {model_id} is listed, but its work digest was not claimed ({claim_error}); "
            f"claim it before a validator commits on it: `modex claim {model_id} "
            f"{prepared.model_dir or 'MODEL_DIR'}`",
            model_id=model_id,
        ) from claim_error
    return Published(
        **prepared.__dict__,
        model_id=model_id,
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        price_wei=price_wei,
        claim_tx=claim_tx,
    )


def _emitted(receipt, event, call: str):
    """The arguments of the registry's ``event`` in the receipt of ``call``."""
    events = event().process_receipt(receipt, errors=DISCARD)
    if not events:
        raise ChainError(
            f"{call} was mined in {receipt['transactionHash'].hex()} but emitted no "
            f"{event.event_name} event; check the deployment file's registry address"
        )
    return events[0]["args"]


def publish(
    chain,
    signer,
    store,
    vault: KeyVault,
    model_dir,
    info: ListingInfo,
    *,
    price_wei: int,
    operator: str | None = None,
    token: Token = ETH,
    subscription: tuple[int, int] | None = None,
    cid_profile: str = "unixfs-v1-2025",
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
) -> Published:
    """The whole publish journey; see the module docstring for the order and why."""
    if info.feedback_key is None:  # the seller's key for private feedback (node/feedback.py)
        info = replace(info, feedback_key=feedback_key_entry(signer, chain.chain_id))
    prepared = prepare(
        model_dir,
        store,
        vault,
        info,
        cid_profile=cid_profile,
        chunk_size=chunk_size,
        progress=progress,
    )
    return list_prepared(
        chain,
        signer,
        prepared,
        vault,
        price_wei=price_wei,
        operator=operator,
        token=token,
        subscription=subscription,
    )


# -- a new version of a listing (issue 15 §1; node/versions.py reads them) ------------------------


@dataclass
class PublishedVersion(Prepared):
    model_id: int = 0
    version: int = 0
    tx_hash: str = ""
    claim_tx: str = ""  # claimMetrics (empty without a claim)


def _check_owner(chain, signer, model_id: int) -> None:
    """ChainError unless ``signer`` owns the listing (before anything is sealed or pinned)."""
    owner = chain.call(chain.registry.functions.ownerOf(model_id))
    if owner.lower() != signer.address.lower():
        raise ChainError(
            f"model {model_id} belongs to {owner}, not to {signer.address}: only its owner "
            "publishes its versions (choose its wallet with --keystore)",
            model_id=model_id,
        )


def publish_version(
    chain,
    signer,
    store,
    vault: KeyVault,
    model_id: int,
    model_dir: str | os.PathLike,
    info: ListingInfo,
    **sealing,
) -> PublishedVersion:
    """Seal, pin and publish ``model_dir`` as the next version of ``model_id``, then claim its
    work digest (the claim is the new version's own); ``sealing``: ``prepare``'s cid_profile,
    chunk_size and progress. Refuses weights identical to the latest version's (InputError:
    nothing would change for a buyer)."""
    _check_owner(chain, signer, model_id)
    if info.feedback_key is None:  # the owner reads the new version's feedback too
        info = replace(info, feedback_key=feedback_key_entry(signer, chain.chain_id))
    latest = bytes(chain.call(chain.registry.functions.modelHash(model_id)))
    prepared = prepare(model_dir, store, vault, info, **sealing)
    if prepared.model_hash == latest:
        raise InputError(
            f"{model_dir} is the latest version of model {model_id} already (model hash "
            f"0x{latest.hex()}): publish changed weights",
            what="MODEL_DIR",
        )
    registry = chain.registry
    receipt = chain.transact(
        registry.functions.publishVersion(model_id, prepared.model_hash, prepared.metadata_cid),
        signer,
    )
    version = int(_emitted(receipt, registry.events.VersionPublished, "publishVersion")["version"])
    # The listing's key is the latest version's from now on (the worker delivers it to buyers).
    vault.assign(
        prepared.content_cid,
        chain_id=chain.chain_id,
        model_id=model_id,
        registry=registry.address,
        new_version=True,
    )
    log.info("model %d: version %d published (%s)", model_id, version, prepared.metadata_cid)
    claim_tx = ""
    if prepared.work_digest:
        try:
            claim_tx = claim_metrics(chain, signer, model_id, prepared.work_digest)
        except ChainError as exc:
            raise ChainError(
                f"version {version} of model {model_id} is published, but its work digest was "
                f"not claimed ({exc}); claim it before a validator commits on it: "
                f"`modex claim {model_id} {model_dir}`",
                model_id=model_id,
            ) from exc
    return PublishedVersion(
        **prepared.__dict__,
        model_id=model_id,
        version=version,
        tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
        claim_tx=claim_tx,
    )


def version_info(metadata: dict, **overrides) -> ListingInfo:
    """The listing's description carried over to a new version (name, task, licence, ...), with
    the given fields replaced; the metrics come from the new version's report, the card from its
    folder (its README) unless given."""
    info = ListingInfo(
        name=str(metadata.get("name") or ""),
        description=str(metadata.get("description") or ""),
        task=str(metadata.get("task") or ""),
        license=str(metadata.get("license") or ""),
        framework=str(metadata.get("framework") or ""),
    )
    return replace(info, **{k: v for k, v in overrides.items() if v})
