"""The seller's claimer: the vouchers the inference service stored, claimed on the chain on their
own, each amount exactly once, crash or not.

``Claimer.poll()`` is one pass; ``run(stop)`` loops it (the worker runs it beside key delivery;
``modex claim`` runs one pass). One pass reads ``store.vouchers_to_claim()`` (the highest voucher
of each channel whose amount is above what was marked claimed) and for each channel:

1. reads the channel on-chain (``Channels.channel(id)``). When the chain already has the amount
   claimed (a claim mined before a crash, before it was marked), it is marked claimed and
   nothing is sent: never a second claim;
2. decides: claim when the unclaimed amount is at least ``threshold_calls`` calls at the
   model's price per call (config ``claim_threshold_calls``, default 100), or when the channel
   expires within ``margin_s`` seconds (config ``claim_margin``, default 3600), whatever the
   amount; a channel the buyer closed (reclaimed) cannot be claimed any more: logged once;
3. claims (``Channels.claim(id, cumulativeAmount, signature)``, dry-run first: a refusal
   is skipped and decided again next pass), waits for the receipt, then marks the amount
   claimed in the store.

Crash-injection for tests: ``crash(point, channel_id)`` is called at ``before_send`` (decided,
nothing sent), ``after_send`` (sent, receipt not seen) and ``after_receipt`` (mined, not yet
marked). ``modex worker`` / ``modex claim`` map ``$MODEX_CLAIMER_CRASH=point[:channel_id]`` to a
SIGKILL of themselves there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from node.channels import ChannelClient, Claimed
from node.config import Config
from node.errors import ChainError, ContractRevert, ModexError
from node.scanner import poll_loop
from node.worker import kill_self_hook

log = logging.getLogger(__name__)

CRASH_POINTS = ("before_send", "after_send", "after_receipt")
CRASH_ENV = "MODEX_CLAIMER_CRASH"


@dataclass
class ClaimReport:
    """What one pass did: channel id -> amount claimed (or marked from the chain), and the
    channels left for later with the reason."""

    claimed: dict[int, int] = field(default_factory=dict)
    already: dict[int, int] = field(default_factory=dict)  # found claimed on-chain, marked
    waiting: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        """What the pass did, for `modex worker --once` and `modex claim`: one line per channel."""
        lines = [f"claimed {len(self.claimed)} channel(s)"]
        lines += [f"  channel {c}: claimed up to {a}" for c, a in self.claimed.items()]
        lines += [f"  channel {c}: {a} was already claimed" for c, a in self.already.items()]
        lines += [f"  channel {c}: not yet ({why})" for c, why in self.waiting.items()]
        return "\n".join(lines)


def claimer_crash_hook(spec: str | None) -> Callable[[str, int], None] | None:
    """A crash hook from ``$MODEX_CLAIMER_CRASH`` = ``point[:channel_id]`` (tests only)."""
    return kill_self_hook(spec, CRASH_POINTS, CRASH_ENV, "channel")


def claim_and_mark(
    channels: ChannelClient,
    signer,
    store,
    channel_id: int,
    amount: int,
    signature: bytes | str,
    crash: Callable[[str, int], None] | None = None,
) -> Claimed:
    """Claim the voucher for ``amount`` on ``channel_id``, then mark ``amount`` claimed in the
    service's ``store`` (None: the voucher came from elsewhere, nothing to mark). The mark comes
    only after the claim is mined: a crash in between leaves the amount unmarked, and the next
    pass finds it claimed on-chain and marks it without sending again (``Claimer``), so an
    amount is never lost and never claimed twice. ``crash(point, channel_id)`` runs at each of
    CRASH_POINTS (tests)."""
    crash = crash or (lambda point, channel: None)
    crash("before_send", channel_id)
    done = channels.claim(
        signer,
        channel_id,
        amount,
        signature,
        on_sent=lambda tx_hash: crash("after_send", channel_id),
    )
    crash("after_receipt", channel_id)
    if store is not None:
        store.mark_claimed(channel_id, amount)
    return done


class Claimer:
    """Claim the stored vouchers of the channels paying this signer's models."""

    def __init__(
        self,
        chain,
        signer,
        store,
        *,
        threshold_calls: int = Config.claim_threshold_calls,
        margin_s: float = Config.claim_margin,
        clock: Callable[[], float] | None = None,
        crash: Callable[[str, int], None] | None = None,
    ):
        if threshold_calls < 0 or margin_s < 0:
            raise ModexError("the claim threshold and margin must be 0 or more")
        self.chain = chain
        self.channels = ChannelClient.for_chain(chain)
        self.signer = signer
        self.store = store
        self.threshold_calls = threshold_calls
        self.margin_s = margin_s
        self.clock = clock or self._chain_time  # expiry is the chain's time, not this machine's
        self.crash = crash or (lambda point, channel_id: None)
        self._told: dict[int, str] = {}  # channel id -> the reason last logged, to log it once

    def _chain_time(self) -> float:
        """The latest block's timestamp: what Channels compares a channel's expiry with."""
        return float(self.chain.w3.eth.get_block("latest")["timestamp"])

    @classmethod
    def from_config(cls, config: Config, chain, signer, store, **options) -> Claimer:
        """The claimer ``config`` describes (claim_threshold_calls, claim_margin)."""
        return cls(
            chain,
            signer,
            store,
            threshold_calls=config.claim_threshold_calls,
            margin_s=config.claim_margin,
            **options,
        )

    def poll(self) -> ClaimReport:
        report = ClaimReport()
        for channel_id, amount, signature, _marked in self.store.vouchers_to_claim():
            channel_id, amount = int(channel_id), int(amount)
            try:
                self._handle(channel_id, amount, signature, report)
            except ChainError as exc:
                if not isinstance(exc, ContractRevert):
                    raise  # the node is unreachable: the pass ends, the next one resumes
                self._wait(channel_id, f"the claim's dry run reverted: {exc}", report)
        return report

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        """Poll until ``stop`` is set; a failing pass is logged and retried after ``interval``."""
        log.info("claimer for %s on chain %d", self.signer.address, self.chain.chain_id)
        poll_loop(self.poll, stop, interval)

    def _handle(self, channel_id: int, amount: int, signature, report: ClaimReport) -> None:
        channel = self.channels.channel(channel_id)
        if channel.claimed >= amount:  # claimed before a crash, or by another of the seller's nodes
            self.store.mark_claimed(channel_id, amount)
            report.already[channel_id] = amount
            log.info("channel %d: %d already claimed on-chain; marked", channel_id, amount)
            return
        if not channel.open:
            self._wait(channel_id, "the buyer closed the channel before it was claimed", report)
            return
        due = channel.expires_at <= self.clock() + self.margin_s
        price = self.channels.call_price(channel.model_id)
        unclaimed = amount - channel.claimed
        if not due and unclaimed < self.threshold_calls * price:
            report.waiting[channel_id] = (
                f"{unclaimed} unclaimed, below {self.threshold_calls} calls at {price}"
            )
            return
        done = claim_and_mark(
            self.channels, self.signer, self.store, channel_id, amount, signature, self.crash
        )
        report.claimed[channel_id] = amount
        self._told.pop(channel_id, None)
        log.info(
            "channel %d: claimed up to %d (%d new) in %s",
            channel_id,
            amount,
            unclaimed,
            done.tx_hash,
        )

    def _wait(self, channel_id: int, reason: str, report: ClaimReport) -> None:
        report.waiting[channel_id] = reason
        if self._told.get(channel_id) != reason:
            self._told[channel_id] = reason
            log.warning("channel %d not claimed: %s", channel_id, reason)
