"""Wallet: create or import an encrypted keystore (scrypt), unlock it for this session, see the
address, balance, encryption key and earnings (withdrawable now, and held in their challenge
period until when), withdraw (the sales past their challenge period are released first); or
connect a browser wallet (EIP-1193).

Keystores live in `<data dir>/wallets/<address>.json` (node.keystore writes them 0600,
atomically). The password is used once to unlock and never stored; the unlocked signer stays
in server memory for the session (app.session_keys).

The gate a hosted exchange needs: a session sees only its own wallets (created, imported or
unlocked in it, the one it signed in with, and the named demo wallets of a demo exchange);
unlocking waits after 5 wrong passwords per session and per address (30 s, doubled each time,
at most an hour: session_keys.Backoff);
no message names a file on the server; a hosted exchange (MODEX_HOSTED, `modex up --hosted`)
refuses every keystore route (create, import, unlock: 403) and offers only the browser wallet;
the faucet exists only on a demo exchange and gives each
address one drip per MODEX_FAUCET_INTERVAL seconds, MODEX_FAUCET_MAX_DRIPS in all.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from pathlib import Path

from eth_utils import to_checksum_address
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from app import session_keys
from app.errors import flash_error, format_eth
from app.helpers import local_path, require_signer
from app.lookups import seller_earnings
from app.payments import wallet_payments
from app.resources import data_dir, get_chain, get_indexer, get_ui_state
from app.ui_state import UiState
from node import market
from node.content.keywrap import derive_x25519
from node.deploy import STABLECOIN
from node.errors import KeystoreError, ModexError
from node.keystore import create_keystore, import_private_key, load_signer
from node.signer import signer_from_key
from node.tokens import stablecoin

log = logging.getLogger(__name__)
bp = Blueprint("wallet", __name__, url_prefix="/wallet")

MIN_PASSWORD = 8
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
FAUCET_INTERVAL_S = 10 * 60
FAUCET_MAX_DRIPS = 3
FAUCET_STABLECOIN = "1000"  # test dollars (mUSD) per drip, where the deployment has the coin
# The routes that create, import or unlock a keystore on this server: a hosted exchange has none.
KEYSTORE_ENDPOINTS = frozenset({"wallet.create", "wallet.import_key", "wallet.unlock"})


class KeystoresRefused(KeystoreError):
    """A keystore route on a hosted exchange (403 as every KeystoreError, JSON code
    hosted_no_keystores)."""

    error_code = "hosted_no_keystores"
    SENTENCE = (
        "This exchange is hosted for many people and never holds anyone's key: wallets cannot "
        "be created, imported or unlocked on it. Connect your browser wallet (MetaMask or "
        "another EIP-1193 wallet) on the Wallet page and sign in with it."
    )


def is_hosted() -> bool:
    return bool(current_app.config.get("MODEX_HOSTED"))


@bp.before_request
def _refuse_keystores_when_hosted() -> None:
    if is_hosted() and request.endpoint in KEYSTORE_ENDPOINTS:
        raise KeystoresRefused(KeystoresRefused.SENTENCE)


def wallets_dir() -> Path:
    path = data_dir() / "wallets"
    path.mkdir(parents=True, exist_ok=True)
    return path


def keystore_path(address: str) -> Path:
    return wallets_dir() / f"{address.lower()}.json"


def session_wallets() -> list[str]:
    """The stored wallets this session may pick from: its own, the one it signed in with, and
    on a demo exchange the demo wallets (their password is printed); never the others'; none on
    a hosted exchange (it unlocks no keystore)."""
    if is_hosted():
        return []
    candidates = [*session_keys.own_wallets(), session_keys.signed_in_address()]
    if current_app.config.get("MODEX_DEMO"):
        candidates += (current_app.config.get("MODEX_DEMO_WALLETS") or {}).values()
    return sorted({to_checksum_address(a) for a in candidates if a and keystore_path(a).is_file()})


def _without_paths(exc: ModexError) -> str:
    """The error's sentence with the keystore's server path replaced by what a person knows."""
    text = str(exc)
    path = exc.context.get("path")
    if not path:
        return text
    return text.replace(f"keystore {path}", "this wallet's keystore").replace(
        str(path), "this wallet's keystore"
    )


def _safe_next(default: str) -> str:
    # Only same-site paths: an open redirect would let another site send a person anywhere.
    return local_path(request.values.get("next"), default)


def _kdf() -> dict:
    # Tests lower the scrypt cost through the app config; the node's default is used otherwise.
    n = current_app.config.get("MODEX_SCRYPT_N")
    return {"scrypt_n": int(n)} if n else {}


def _unlock(signer) -> None:
    chain = get_chain()
    secret, public = derive_x25519(signer, chain.chain_id)
    session_keys.unlock(signer, x25519=(secret, public))
    session_keys.add_own_wallet(signer.address)


@bp.route("/")
def index():
    # The session's wallet as the request found it: the page reads the chain for a while, and an
    # unlock that times out meanwhile must not show half the page unlocked.
    entry = session_keys.current()
    address = session_keys.current_address()
    info = {}
    if address:
        chain = get_chain()
        info["balance"] = chain.balance(address)
        info["earnings"] = earnings = seller_earnings(address)
        info["withdrawable"] = earnings.withdrawable
        info["payments"] = wallet_payments(address)
        if entry and entry.x25519_public:
            info["x25519"] = "0x" + entry.x25519_public.hex()
    return render_template(
        "wallet.html",
        address=address,
        info=info,
        wallets=session_wallets(),
        next=_safe_next(""),
        min_password=MIN_PASSWORD,
        stablecoin_faucet=bool(address) and STABLECOIN in get_chain().contracts,
        wallet_unlocked=entry is not None,
        hosted=is_hosted(),
    )


def _password(field: str = "password") -> str | None:
    password = request.form.get(field) or ""
    if len(password) < MIN_PASSWORD:
        flash(f"Choose a password of at least {MIN_PASSWORD} characters.", "error")
        return None
    return password


@bp.route("/create", methods=["POST"])
def create():
    password = _password()
    if password is None:
        return redirect(url_for(".index"))
    if password != request.form.get("confirm"):
        flash("The two passwords differ; type the same password twice.", "error")
        return redirect(url_for(".index"))
    # One temporary name per request: a double-clicked Create runs twice in the same session,
    # and with a per-session name one request refused (403) and deleted the other's keystore.
    tmp = wallets_dir() / f".new-{uuid.uuid4().hex}.json"
    try:
        address = create_keystore(tmp, password, **_kdf())
        path = keystore_path(address)
        tmp.replace(path)
        _unlock(load_signer(path, password))
    finally:
        tmp.unlink(missing_ok=True)
    flash(
        f"Wallet {address} created and unlocked. Keep your password: nobody can recover it.", "ok"
    )
    return redirect(_safe_next(url_for(".index")))


@bp.route("/import", methods=["POST"])
def import_key():
    password = _password()
    if password is None:
        return redirect(url_for(".index"))
    key = (request.form.get("private_key") or "").strip()
    try:
        # exactly 64 digits (the node's one check): eth-account pads 63 into a different key
        address = signer_from_key(key).address
    except KeystoreError:
        flash("That is not a private key: paste 64 hex characters (with or without 0x).", "error")
        return redirect(url_for(".index"))
    path = keystore_path(address)
    if path.exists():
        flash(
            f"Wallet {address} is already stored on this node; unlock it with its password "
            "(its keystore was left as it is).",
            "error",
        )
        return redirect(url_for(".index"))
    try:
        import_private_key(path, key, password, **_kdf())
    except ModexError as exc:
        flash(_without_paths(exc), "error")
        return redirect(url_for(".index"))
    _unlock(load_signer(path, password))
    flash(f"Wallet {address} imported and unlocked.", "ok")
    return redirect(_safe_next(url_for(".index")))


def _backoff() -> session_keys.Backoff:
    return current_app.extensions["modex.unlock_backoff"]


@bp.route("/unlock", methods=["POST"])
def unlock():
    address = (request.form.get("address") or "").strip()
    if not ADDRESS_RE.match(address) or not keystore_path(address).is_file():
        flash("Choose one of your wallets stored on this node, or create one.", "error")
        return redirect(url_for(".index"))
    tries = (f"session:{session_keys.session_id()}", f"address:{address.lower()}")
    wait = _backoff().wait_s(*tries)
    if wait > 0:
        flash(
            f"Too many wrong passwords for this wallet or session: try again in "
            f"{math.ceil(wait)} seconds (nothing was tried now).",
            "error",
        )
        return redirect(url_for(".index", next=_safe_next("")))
    try:
        signer = load_signer(keystore_path(address), request.form.get("password") or "")
    except ModexError as exc:
        _backoff().failed(*tries)
        flash(_without_paths(exc), "error")
        return redirect(url_for(".index", next=_safe_next("")))
    _backoff().succeeded(*tries)
    _unlock(signer)
    flash(f"Wallet {signer.address} unlocked for this session.", "ok")
    return redirect(_safe_next(url_for(".index")))


@bp.route("/lock", methods=["POST"])
def lock():
    session_keys.lock()
    session.pop("address", None)
    session.pop("browser_wallet", None)
    flash("Wallet locked: this server no longer holds its key.", "ok")
    return redirect(url_for(".index"))


@bp.route("/withdraw", methods=["POST"])
def withdraw():
    """Release the wallet's sales past their challenge period (one transaction each, signed by
    the unlocked wallet, which is credited), then withdraw everything credited."""
    signer = require_signer()
    sales = [p["purchase_id"] for p in get_indexer().unreleased_sales(signer.address)]
    try:
        done = market.withdraw(get_chain(), signer, sales)
    except ModexError as exc:
        flash_error(exc)
    else:
        released = (
            (
                f" ({len(done.released)} sale{'s' if len(done.released) != 1 else ''} "
                "released after their challenge period)"
            )
            if done.released
            else ""
        )
        held = done.earnings.held_text()
        flash(
            f"Withdrew {format_eth(done.amount)} to your wallet{released}."
            + (f" Still held: {held}." if held else ""),
            "ok",
        )
    return redirect(url_for(".index"))


class FaucetLedger:
    """When the faucet gave each address test ETH, in the UI's shared state (app.ui_state): its
    limits hold across the processes serving the UI, and across restarts."""

    def __init__(self, state: UiState, clock=time.time):
        self._state, self.clock = state, clock

    def refusal(self, address: str, interval_s: float, max_drips: int) -> str | None:
        """None after recording a drip for `address`, else the sentence saying why not."""
        address, now = address.lower(), self.clock()
        given = self._state.rows(
            "INSERT INTO faucet_drips (address, at) SELECT ?1, ?2"
            " WHERE (SELECT COUNT(*) FROM faucet_drips WHERE address = ?1) < ?3"
            " AND (SELECT COALESCE(MAX(at), ?2 - ?4) FROM faucet_drips WHERE address = ?1)"
            " <= ?2 - ?4 RETURNING 1",
            (address, now, max_drips, interval_s),
        )
        if given:
            return None
        drips, last = self._state.rows(
            "SELECT COUNT(*), MAX(at) FROM faucet_drips WHERE address = ?", (address,)
        )[0]
        if drips >= max_drips:
            return f"The faucet gave this wallet test ETH {max_drips} times already, its limit."
        minutes = math.ceil(interval_s / 60)
        return (
            f"The faucet gives each wallet test ETH once per {minutes} minutes: "
            f"try again in {max(1, math.ceil(last + interval_s - now))} seconds."
        )


def faucet_refusal(address: str) -> str | None:
    config = current_app.config
    ledger = current_app.extensions.get("modex.faucet") or FaucetLedger(get_ui_state())
    return ledger.refusal(
        address,
        float(config.get("MODEX_FAUCET_INTERVAL", FAUCET_INTERVAL_S)),
        int(config.get("MODEX_FAUCET_MAX_DRIPS", FAUCET_MAX_DRIPS)),
    )


def _mint_test_dollars(chain, source: str, address: str) -> str:
    """The test stablecoin's open mint (MockStablecoin, local chains only) for ``address``;
    returns the amount in words."""
    coin = stablecoin(chain)
    amount = coin.parse(FAUCET_STABLECOIN)
    mint = chain.contracts[STABLECOIN].functions.mint(address, amount)
    chain.w3.eth.wait_for_transaction_receipt(mint.transact({"from": source}), timeout=30)
    return coin.format(amount)


@bp.route("/faucet", methods=["POST"])
def faucet():
    """Demo exchanges on dev chains only (modex up): send test ETH from a node-managed account,
    limited per address (faucet_refusal)."""
    amount = int(current_app.config.get("MODEX_FAUCET_WEI") or 0)
    address = session_keys.current_address()
    if not amount or not current_app.config.get("MODEX_DEMO"):
        flash(
            "This node has no faucet: only a demo exchange on a dev chain has one. "
            "Fund your wallet from elsewhere.",
            "error",
        )
    elif not address:
        flash("Create or unlock a wallet first.", "error")
    elif refusal := faucet_refusal(address):
        flash(refusal, "error")
    else:
        chain = get_chain()
        w3 = chain.w3
        source = current_app.config.get("MODEX_FAUCET_ACCOUNT") or w3.eth.accounts[0]
        tx = w3.eth.send_transaction({"from": source, "to": address, "value": amount})
        w3.eth.wait_for_transaction_receipt(tx, timeout=30)
        coin = (
            f" and {_mint_test_dollars(chain, source, address)}"
            if STABLECOIN in chain.contracts
            else ""
        )
        flash(f"Sent {format_eth(amount)} of test ETH{coin} to {address}.", "ok")
    return redirect(url_for(".index"))
