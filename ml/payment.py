"""How an inference call is paid (issue 14 §3): the decision ml/endpoint.py asks for each request.

A call is paid in one of three ways, tried in this order:

1. **a voucher** on a payment channel, when the request carries one (``channelId``,
   ``cumulativeAmount``, ``voucherSignature``): the channel (read on-chain, cached for
   ``channel_ttl`` seconds) must be for this model, opened by the request's signer, open, not
   expiring within ``channel_margin`` seconds and hold a deposit of at least the voucher's amount;
   the voucher (EIP-712 ``Voucher(channelId, cumulativeAmount)``, node/channels.py) must be signed
   by the channel's buyer. The store then keeps it durably **before** the model runs
   (``accept_voucher`` with ``previous_at_most = cumulative - callPrice`` and ``limit = deposit``),
   so the seller never answers a call it cannot claim;
2. **a licence or a live subscription** (``has_access(model_id, signer)``: Marketplace.hasAccess,
   or hasLicense on a marketplace without subscriptions), cached for a few seconds;
3. **a free trial**: ``free_calls`` calls per address per model, the seller's setting (0: none),
   counted in the store (``use_trial``).

A voucher that was accepted but not served (the model failed, timed out or the queue was full)
is not lost to the buyer. Each accepted amount has a single-use ticket in the store's nonce table
(signer ``channel:<id>``, nonce = the cumulative amount, until the channel expires), taken before
the model runs and given back when it does not answer. The voucher itself stays stored (the
seller may claim it: it is the buyer's signature for that amount), and the buyer's next request
may carry the SAME voucher again: it is served once more, against its ticket, without paying
twice. A server killed after taking the ticket but before answering costs the buyer at most that
one call (its ticket stays taken); killed before, nothing.

Refusals are ``Refused`` (HTTP status, code, a sentence saying how to pay, and for 409
``voucher_stale`` the highest accepted amount in ``fields``), which the endpoint answers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ml.signing import recover_typed_data_signer
from node.channels import ChannelClient, ChannelState, voucher_typed_data
from node.errors import ContractRevert, ModexError

log = logging.getLogger(__name__)

TICKET_PREFIX = "channel:"  # the nonce table's "signer" for a channel's voucher tickets


class Refused(ModexError):
    """A call the service refuses: the HTTP status, a stable code, a sentence saying what to send
    instead (here: how to pay), ``retry_after`` seconds for 503s and ``fields`` the client reads
    (409 voucher_stale: ``acceptedAmount``, the highest voucher the service holds). Raised by the
    payment decision; ml.endpoint.Refusal, its subclass, by the endpoint's other checks."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: int | None = None,
        fields: dict | None = None,
    ):
        super().__init__(message, status=status, code=code)
        self.status, self.code, self.message = status, code, message
        self.retry_after, self.fields = retry_after, dict(fields or {})


@dataclass(frozen=True)
class Voucher:
    """What a request carries to pay on a channel: the buyer's signature over (channel, amount)."""

    channel_id: int
    cumulative_amount: int
    signature: bytes


@dataclass
class Paid:
    """How one call was paid: ``kind`` is "access", "voucher" or "trial"; for a voucher the
    channel and the amount its ticket stands for."""

    kind: str
    model_id: int
    signer: str
    voucher: Voucher | None = None
    channel: ChannelState | None = None

    def summary(self) -> dict:
        """The answer's ``paidWith``: how the call was paid (with a voucher, which amount)."""
        if self.voucher is None:
            return {"kind": self.kind}
        return {
            "kind": self.kind,
            "channelId": self.voucher.channel_id,
            "cumulativeAmount": str(self.voucher.cumulative_amount),
        }

    def retry_words(self, when: str) -> str:
        """How to retry the call when it was not served (``when``: "later", "again"): a voucher
        was not spent, and the words say so."""
        if self.voucher is None:
            return "retry later" if when == "later" else "the same signed request may be sent again"
        return (
            f"retry {when}; the voucher for {self.voucher.cumulative_amount} on channel "
            f"{self.voucher.channel_id} was not spent, send it again with the new request"
        )


def ways_to_pay(model_id: int, free_calls: int = 0) -> str:
    """The sentence every 402/403 ends with: which ways there are to pay for this model's calls."""
    trial = f" (the {free_calls} free calls of the trial are used)" if free_calls else ""
    return (
        f"to call model {model_id}{trial}, pay one of three ways: buy a licence "
        f"(`modex buy {model_id}`), subscribe (`modex subscribe {model_id} --periods N`), or open "
        f"a payment channel (`modex channel open {model_id} --amount AMOUNT`) and call with "
        f"`modex call {model_id} TEXT... --channel CHANNEL_ID`"
    )


class ChannelBook:
    """Cached reads of the Channels contract: ``channel(id)`` for ``ttl`` seconds and
    ``callPrice(model)`` for ``ttl`` seconds; ``read(id)`` and ``price(model)`` take callables so
    that tests can hand in their own."""

    def __init__(
        self,
        read: Callable[[int], ChannelState | None],
        price: Callable[[int], int],
        *,
        ttl: float = 5.0,
        clock=time.monotonic,
    ):
        self._read, self._price, self.ttl, self._clock = read, price, ttl, clock
        self._channels: dict[int, tuple[ChannelState | None, float]] = {}
        self._prices: dict[int, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def channel(self, channel_id: int, *, fresh: bool = False) -> ChannelState | None:
        """The channel as the chain says (None: never opened), at most ``ttl`` seconds old."""
        now = self._clock()
        with self._lock:
            hit = self._channels.get(channel_id)
        if hit and hit[1] > now and not fresh:
            return hit[0]
        channel = self._read(channel_id)
        with self._lock:
            if len(self._channels) > 10_000:  # ids are cheap to make up: keep the cache bounded
                self._channels = {k: v for k, v in self._channels.items() if v[1] > now}
            self._channels[channel_id] = (channel, now + self.ttl)
        return channel

    def price(self, model_id: int) -> int:
        now = self._clock()
        with self._lock:
            hit = self._prices.get(model_id)
        if hit and hit[1] > now:
            return hit[0]
        price = int(self._price(model_id))
        with self._lock:
            self._prices[model_id] = (price, now + self.ttl)
        return price


def onchain_channel_book(client: ChannelClient, *, ttl: float = 5.0) -> ChannelBook:
    """A ChannelBook reading the chain through a node.channels.ChannelClient."""

    def read(channel_id: int) -> ChannelState | None:
        try:
            return client.channel(channel_id)
        except ContractRevert as exc:  # ChannelsUnknownChannel: an id never opened
            log.info("channel %s: %s", channel_id, exc)
            return None

    return ChannelBook(read, client.call_price, ttl=ttl)


def onchain_channel_options(chain) -> dict:
    """InferenceService's ``channels`` and ``channels_address`` for ``chain``: its deployment's
    Channels contract, or nothing when it has none (the service then takes no vouchers)."""
    if "Channels" not in chain.contracts:
        return {}
    client = ChannelClient.for_chain(chain)
    return {"channels": onchain_channel_book(client), "channels_address": client.address}


def onchain_has_license(chain):
    """``has_license(model_id, address)`` through a node.chain.Chain: Marketplace.hasAccess (a
    licence or a live subscription) where the deployed Marketplace has it, else hasLicense."""
    functions = chain.marketplace.functions
    names = {
        entry.get("name") for entry in chain.marketplace.abi if entry.get("type") == "function"
    }
    check = functions.hasAccess if "hasAccess" in names else functions.hasLicense

    def has_license(model_id: int, address: str) -> bool:
        return bool(chain.call(check(int(model_id), address)))

    return has_license


class LicenseCache:
    """Wraps ``has_license(model_id, address)`` with a short per-(model, address) TTL."""

    def __init__(
        self, has_license, *, ttl: float = 30.0, negative_ttl: float = 5.0, clock=time.monotonic
    ):
        self._check, self.ttl, self.negative_ttl, self._clock = (
            has_license,
            ttl,
            negative_ttl,
            clock,
        )
        self._cache: dict[tuple[int, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def __call__(self, model_id: int, address: str) -> bool:
        key = (int(model_id), address.lower())
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit and hit[1] > now:
            return hit[0]
        allowed = bool(self._check(int(model_id), address))
        with self._lock:
            # Every signature recovers to some address, so each forged request adds an entry:
            # expired ones are dropped (at most once per ttl) or the dict grows without end.
            if now >= self._next_prune:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                self._next_prune = now + self.ttl
            self._cache[key] = (allowed, now + (self.ttl if allowed else self.negative_ttl))
        return allowed


class Payments:
    """The payment decision for one service. ``store``: a ServiceStore (node/servicestore:
    nonces, vouchers, trials); ``channels``: a ChannelBook, or None when the service takes no
    vouchers; ``free_calls``: model id -> free calls per address (missing: 0)."""

    def __init__(
        self,
        *,
        has_access,
        store,
        channels: ChannelBook | None = None,
        chain_id: int,
        channels_address: str | None = None,
        free_calls: dict[int, int] | None = None,
        channel_margin: int = 300,
        clock=time.time,
    ):
        self.has_access = has_access
        self.store = store
        self.channels = channels
        self.chain_id = int(chain_id)
        self.channels_address = channels_address
        self.free_calls = {int(k): int(v) for k, v in (free_calls or {}).items()}
        self.channel_margin = channel_margin
        self.clock = clock

    def offer(self, model_id: int) -> dict:
        """What GET /v1/models adds of how to pay this model's calls: its free calls per address
        (when there are any) and, when the service takes vouchers, its price per call (read
        on-chain)."""
        offer: dict = {}
        if self.free_calls.get(model_id, 0):
            offer["freeCalls"] = self.free_calls[model_id]
        if self.channels is not None:
            try:
                offer["callPrice"] = str(self.channels.price(model_id))
            except Exception:  # noqa: BLE001 - a listing is still listed when the chain is down
                log.warning("call price of model %s could not be read", model_id, exc_info=True)
        return offer

    # -- the decision: check (read-only), take (durable), give back (not served) ---------------

    def check(self, model_id: int, signer: str, voucher: Voucher | None) -> Paid:
        """How this call would be paid, from what can be checked without spending anything;
        Refused otherwise. A licence or subscription is final here."""
        if voucher is not None:
            channel = self._check_voucher(model_id, signer, voucher)
            return Paid("voucher", model_id, signer, voucher, channel)
        if self._has_access(model_id, signer):
            return Paid("access", model_id, signer)
        if self.free_calls.get(model_id, 0) > 0:
            return Paid("trial", model_id, signer)
        raise Refused(
            403,
            "no_licence",
            f"{signer} holds no licence for model {model_id}; {ways_to_pay(model_id)}",
        )

    def take(self, paid: Paid) -> Paid:
        """Spend what pays for the call, durably, before the model runs: the voucher stored (or
        an unserved one's ticket taken again), a free call counted. Refused otherwise."""
        if paid.kind == "voucher":
            self._take_voucher(paid)
        elif paid.kind == "trial":
            limit = self.free_calls[paid.model_id]
            if not self.store.use_trial(paid.model_id, paid.signer, limit):
                raise Refused(
                    403,
                    "no_licence",
                    f"{paid.signer} holds no licence for model {paid.model_id}; "
                    f"{ways_to_pay(paid.model_id, limit)}",
                )
        return paid

    def give_back(self, paid: Paid) -> None:
        """The model did not answer a paid call: its free call, or its voucher's ticket, may be
        used again (the stored voucher stays; the buyer sends it again)."""
        if paid.kind == "trial":
            self.store.release_trial(paid.model_id, paid.signer)
        elif paid.kind == "voucher" and paid.voucher is not None:
            v = paid.voucher
            self.store.release_nonce(_ticket(v.channel_id), v.cumulative_amount)

    # -- the three ways --------------------------------------------------------------------------

    def _has_access(self, model_id: int, signer: str) -> bool:
        try:
            return bool(self.has_access(model_id, signer))
        except Exception as exc:  # noqa: BLE001 - an injected chain call: any failure is "unknown"
            log.warning("licence check for model %s failed: %s", model_id, exc)
            raise Refused(
                503,
                "licence_check_unavailable",
                "the licence check could not reach the chain; retry shortly",
                retry_after=5,
            ) from None

    def _channel(self, channel_id: int, *, fresh: bool = False) -> ChannelState:
        assert self.channels is not None
        book = self.channels
        channel = _from_chain("the payment channel", lambda: book.channel(channel_id, fresh=fresh))
        if channel is None:
            raise Refused(
                404,
                "unknown_channel",
                f"there is no channel {channel_id} on the Channels contract "
                f"{self.channels_address}; open one with "
                f"`modex channel open MODEL_ID --amount AMOUNT`",
            )
        return channel

    def _price(self, model_id: int) -> int:
        assert self.channels is not None
        book = self.channels
        return _from_chain("the call price", lambda: book.price(model_id))

    def _check_voucher(self, model_id: int, signer: str, voucher: Voucher) -> ChannelState:
        if self.channels is None or not self.channels_address:
            raise Refused(
                400,
                "vouchers_not_accepted",
                f"this service takes no vouchers (no Channels contract on its chain); "
                f"{ways_to_pay(model_id)}",
            )
        cid = voucher.channel_id
        price = self._price(model_id)
        if price == 0:
            raise Refused(
                403,
                "no_call_price",
                f"model {model_id} has no price per call: its seller sells no calls over a channel "
                f"(Channels.setCallPrice); buy a licence (`modex buy {model_id}`) or subscribe "
                f"(`modex subscribe {model_id} --periods N`)",
            )
        channel = self._channel(cid)
        if channel.model_id != model_id:
            raise Refused(
                403,
                "wrong_channel",
                f"channel {cid} pays for model {channel.model_id}, not {model_id}; open one for "
                f"this model with `modex channel open {model_id} --amount AMOUNT`",
            )
        if channel.buyer.lower() != signer.lower():
            raise Refused(
                403,
                "not_your_channel",
                f"channel {cid} was opened by {channel.buyer}, not by the request's signer "
                f"{signer}; sign with that wallet, or open a channel of your own",
            )
        self._check_open(channel, cid)
        if voucher.cumulative_amount > channel.deposit:
            channel = self._channel(cid, fresh=True)  # a top-up may be newer than the cache
            if voucher.cumulative_amount > channel.deposit:
                raise Refused(
                    402,
                    "insufficient_deposit",
                    f"channel {cid} holds a deposit of {channel.deposit}, less than the voucher's "
                    f"{voucher.cumulative_amount}; add to it with "
                    f"`modex channel top-up {cid} --amount AMOUNT`",
                    fields={"deposit": str(channel.deposit)},
                )
        try:
            message = voucher_typed_data(
                self.chain_id, self.channels_address, cid, voucher.cumulative_amount
            )
            by = recover_typed_data_signer(message, voucher.signature)
        except Exception:  # noqa: BLE001 - eth-account raises many types for bad signatures
            by = None
        if by is None or by.lower() != channel.buyer.lower():
            raise Refused(
                401,
                "bad_voucher",
                f"the voucher is not signed by channel {cid}'s buyer {channel.buyer}: sign the "
                f"EIP-712 Voucher(channelId, cumulativeAmount) for chain {self.chain_id} and "
                f"Channels contract {self.channels_address} with that wallet",
            )
        return channel

    def _check_open(self, channel: ChannelState, cid: int) -> None:
        if not channel.open:
            raise Refused(
                402,
                "channel_closed",
                f"channel {cid} is closed; open a new one with "
                f"`modex channel open {channel.model_id} --amount AMOUNT`",
            )
        if channel.expires_at <= self.clock() + self.channel_margin:
            raise Refused(
                402,
                "channel_expiring",
                f"channel {cid} expires at {channel.expires_at}, within the "
                f"{self.channel_margin} s the seller needs to claim; extend it with "
                f"`modex channel extend {cid} --expires-in SECONDS`",
            )

    def _take_voucher(self, paid: Paid) -> None:
        voucher, channel = paid.voucher, paid.channel
        assert voucher is not None and channel is not None
        cid, amount = voucher.channel_id, voucher.cumulative_amount
        price = self._price(paid.model_id)
        accepted = self.store.accept_voucher(
            cid,
            amount,
            voucher.signature,
            previous_at_most=amount - price,
            limit=channel.deposit,
        )
        ticket = (_ticket(cid), amount, channel.expires_at)
        if accepted and self.store.use_nonce(*ticket):
            return  # a new voucher
        highest = self.store.highest_voucher(cid)
        held = int(highest[0]) if highest else 0
        if not accepted and held == amount and self.store.use_nonce(*ticket):
            return  # the voucher of a call that was not served: served now
        raise Refused(
            409,
            "voucher_stale",
            f"channel {cid}'s highest accepted voucher is for {held} (each call costs {price}): "
            f"sign the next one for cumulativeAmount {held + price}",
            fields={"acceptedAmount": str(held), "callPrice": str(price)},
        )


def _from_chain(what: str, read: Callable):
    """``read()``; when the chain cannot answer, a 503 that says ``what`` could not be read."""
    try:
        return read()
    except Exception as exc:  # noqa: BLE001 - a chain call: any failure is "unknown"
        log.warning("%s could not be read: %s", what, exc)
        raise Refused(
            503,
            "channel_check_unavailable",
            f"{what} could not be read from the chain; retry shortly",
            retry_after=5,
        ) from None


def _ticket(channel_id: int) -> str:
    return f"{TICKET_PREFIX}{int(channel_id)}"
