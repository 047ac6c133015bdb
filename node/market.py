"""Buyer, seller and validator money moves: buy, wait for the key, refund, withdraw, vote, stake.

Library calls shared by the CLI (node/commands/*) and the UI. Each checks what it can before
sending (so the person gets a sentence, not a revert), then sends through ``Chain.transact``,
which dry-runs the call and decodes any custom error into ContractRevert.

A seller's revenue from a delivered sale is held by the Marketplace for its challenge period
(a dispute within it refunds the buyer instead) and is then credited by ``releaseRevenue``,
which anyone may call. ``withdraw`` releases the seller's sales that are past their period
first, then withdraws; ``earnings`` says what is withdrawable, what is still held and until
when. The sales to look at come from the caller (the indexer knows them:
``Indexer.unreleased_sales``); the chain decides each one.

Releasing is left to the seller's withdrawal, not done by the key-delivery worker: the gas is
then paid by the person who receives the money, when they want it (a seller who never
withdraws pays nothing), and the worker's account, whose every transaction in flight is a
recorded ``deliverKey`` it may replace at its nonce, never has to wait behind a release.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from web3.logs import DISCARD

from node.amounts import ETH, Token, fmt_amount, fmt_eth, parse_eth  # noqa: F401 (parse_eth: re-exported for old callers)
from node.content import keywrap
from node.errors import ChainError, ContractRevert, InputError, KeyDeliveryError
from node.fetch import book, sale_terms
from node.protocol import SCORES, PurchaseStatus
from node.protocol import Purchase as PurchaseRecord
from node.revert_sentences import when
from node.tokens import check_max_price, pay, payment_token, require_funds

log = logging.getLogger(__name__)


@dataclass
class Purchase:
    purchase_id: int
    model_id: int
    buyer: str
    price: int
    buyer_key: bytes
    tx_hash: str
    token: Token = ETH  # what the price was paid in

    @property
    def price_text(self) -> str:
        return fmt_amount(self.price, self.token)


def purchase_from_receipt(chain, receipt) -> Purchase:
    events = chain.marketplace.events.Purchased().process_receipt(receipt, errors=DISCARD)
    if not events:
        raise ChainError(
            "the purchase was mined but emitted no Purchased event; check the "
            "deployment file's Marketplace address"
        )
    a = events[0]["args"]
    return Purchase(
        int(a["purchaseId"]),
        int(a["modelId"]),
        a["buyer"],
        int(a["price"]),
        bytes(a["buyerKey"]),
        "0x" + bytes(receipt["transactionHash"]).hex(),
        chain.token(a["token"]),
    )


def buy(chain, signer, model_id: int, *, max_price: int | None = None) -> Purchase:
    """Buy a licence: derive the wallet's X25519 key, check price and funds (in the model's
    token), pay (``node.tokens.pay``: an ERC-20 price is approved first), send ``buy``."""
    terms = sale_terms(chain, model_id)
    price = terms.price
    if not terms.active:
        raise ChainError(
            f"model {model_id} is not for sale (the seller deactivated it)", model_id=model_id
        )
    token = payment_token(chain, model_id)
    what = f"model {model_id} costs"
    check_max_price(price, max_price, token, what, model_id=model_id)
    require_funds(chain, signer.address, token, price, what)
    _secret, public = keywrap.derive_x25519(signer, chain.chain_id)
    cap = price if max_price is None else max_price
    receipt = pay(
        chain, signer, chain.marketplace.functions.buy(model_id, public, cap), token, price
    )
    purchase = purchase_from_receipt(chain, receipt)
    log.info(
        "bought model %d: purchase %d for %s",
        model_id,
        purchase.purchase_id,
        purchase.price_text,
    )
    return purchase


def delivered_key(chain, purchase_id: int, from_block: int | None = None) -> bytes | None:
    """The wrapped key delivered for ``purchase_id`` (from its KeyDelivered event), or None."""
    start = from_block if from_block is not None else int(chain.deployment.get("block", 0) or 0)
    events = chain.events("KeyDelivered", from_block=start, purchaseId=purchase_id)
    return bytes(events[-1]["args"]["wrappedKey"]) if events else None


def wait_for_key(
    chain, purchase_id: int, *, timeout: float, interval: float = 0.5, from_block: int | None = None
) -> bytes:
    """Poll until the seller's worker delivers; KeyDeliveryError (with the refund hint) after."""
    deadline = time.monotonic() + timeout
    while True:
        wrapped = delivered_key(chain, purchase_id, from_block)
        if wrapped is not None:
            return wrapped
        if time.monotonic() >= deadline:
            raise KeyDeliveryError(
                f"no key delivered for purchase {purchase_id} within {timeout:g} s. The seller's "
                f"worker may be offline; your payment stays in escrow. Check again with "
                f"`modex fetch`, or after the delivery window run `modex refund {purchase_id}`",
                purchase_id=purchase_id,
            )
        time.sleep(interval)


def purchase_record(chain, purchase_id: int) -> PurchaseRecord:
    """``Marketplace.purchase(id)``; ContractRevert "There is no purchase N" for an unknown id."""
    return PurchaseRecord.from_call(chain.call(chain.marketplace.functions.purchase(purchase_id)))


def next_block_time(chain) -> int:
    """The earliest ``block.timestamp`` a transaction sent now can run at: the latest block's,
    plus one (a node may mine it later, never earlier)."""
    return int(chain.get_block("latest")["timestamp"]) + 1


def challenge_period(chain) -> int:
    """Seconds a delivered sale's revenue is held (a constructor constant of the Marketplace)."""
    return int(chain.call(chain.marketplace.functions.challengePeriod()))


@dataclass(frozen=True)
class Refundability:
    """Whether the buyer can refund a purchase now, and the sentence that says why (or why not)."""

    possible: bool
    reason: str

    @property
    def sentence(self) -> str:
        return f"{self.reason[0].upper()}{self.reason[1:]}."


def refundability(chain, purchase_id: int, account: str | None = None) -> Refundability:
    """The Marketplace's refund rules applied to one purchase (refunded to ``account``, when
    given), as a sentence a buyer can act on: a pending purchase after its delivery window, or at
    once when validators disputed the model; a delivered one only when the model was disputed
    within the sale's challenge period, while the seller's revenue is still held (the licence
    and its vote are revoked)."""
    p = purchase_record(chain, purchase_id)
    if account is not None and account.lower() != p.account.lower() and not p.for_validator:
        return Refundability(
            False,
            f"purchase {purchase_id} is not yours: only its buyer, {p.account}, can refund it",
        )
    if p.for_validator:
        return Refundability(
            False,
            f"purchase {purchase_id} is a validator's key request: there is nothing to refund",
        )
    if p.status in (PurchaseStatus.REFUNDED, PurchaseStatus.EXPIRED):
        return Refundability(False, f"purchase {purchase_id} was already refunded")
    b = book(chain, p.model_id)
    if p.status == PurchaseStatus.PENDING:
        if b.disputed:
            return Refundability(
                True,
                f"validators disputed model {p.model_id}: purchase "
                f"{purchase_id} will never be delivered and is refundable now",
            )
        if next_block_time(chain) > p.deadline:
            return Refundability(
                True,
                f"purchase {purchase_id} was not delivered by "
                f"{when(p.deadline)}: it is refundable now",
            )
        return Refundability(
            False,
            f"purchase {purchase_id} can still be delivered until "
            f"{when(p.deadline)}; a refund is possible only after that (or "
            "at once if validators dispute the model)",
        )
    challenge_end = p.delivered_at + challenge_period(chain)
    if p.released:
        return Refundability(
            False,
            f"purchase {purchase_id} was delivered and its revenue paid "
            "to the seller after its challenge period: the sale is final",
        )
    if p.price == 0:
        return Refundability(False, f"purchase {purchase_id} was a free licence: nothing to refund")
    if b.disputed and b.disputed_at <= challenge_end:
        return Refundability(
            True,
            f"validators disputed model {p.model_id} on {when(b.disputed_at)}, "
            f"within the challenge period of purchase {purchase_id}: it is "
            "refundable now (your licence and vote are revoked)",
        )
    if b.disputed:
        return Refundability(
            False,
            f"validators disputed model {p.model_id} on "
            f"{when(b.disputed_at)}, after the challenge period of purchase "
            f"{purchase_id} ended ({when(challenge_end)}): the sale is final",
        )
    if next_block_time(chain) <= challenge_end:
        return Refundability(
            False,
            f"purchase {purchase_id} was delivered; it becomes refundable only "
            f"if validators dispute model {p.model_id} before "
            f"{when(challenge_end)} (its challenge period)",
        )
    return Refundability(
        False,
        f"purchase {purchase_id} was delivered and its challenge period ended "
        f"on {when(challenge_end)} without a dispute: the sale is final",
    )


def refund(chain, signer, purchase_id: int):
    """Refund a purchase (credited; ``withdraw`` sends it), or a ChainError saying why not and
    when it would be possible, before anything is sent."""
    outlook = refundability(chain, purchase_id, signer.address)
    if not outlook.possible:
        raise ChainError(f"{outlook.sentence} Nothing was sent.", purchase_id=purchase_id)
    receipt = chain.transact(chain.marketplace.functions.refund(purchase_id), signer)
    log.info("purchase %d refunded", purchase_id)
    return receipt


@dataclass(frozen=True)
class Sale:
    """A delivered, paid sale of one of the owner's models whose revenue is not paid out yet."""

    purchase_id: int
    model_id: int
    amount: int  # what releasing it credits the owner (the price less the current fee)
    challenge_end: int  # the revenue is held until this timestamp
    disputed: bool  # the model was disputed within the period: the buyer is refunded instead
    token: Token = ETH  # what it was paid in (the amount is in it)


@dataclass
class Earnings:
    """An owner's money on the Marketplace in one token: credited (withdrawable now), and
    unreleased sales paid in that token sorted by what can happen to them."""

    credited: int
    token: Token = ETH
    releasable: list[Sale] = field(
        default_factory=list
    )  # past their period: release, then withdraw
    held: list[Sale] = field(default_factory=list)  # in their challenge period
    refundable: list[Sale] = field(default_factory=list)  # disputed in time: the buyers' to refund

    @property
    def releasable_amount(self) -> int:
        return sum(s.amount for s in self.releasable)

    @property
    def withdrawable(self) -> int:
        """What ``withdraw`` sends now: the credited balance plus the sales it releases first."""
        return self.credited + self.releasable_amount

    @property
    def held_amount(self) -> int:
        return sum(s.amount for s in self.held)

    def held_text(self) -> str | None:
        """ "0.0975 ETH from 2 sales is held until ... " (None when nothing is held)."""
        if not self.held:
            return None
        ends = sorted(s.challenge_end for s in self.held)
        until = (
            f"until {when(ends[0])}"
            if ends[0] == ends[-1]
            else f"until {when(ends[0])} (the last until {when(ends[-1])})"
        )
        return (
            f"{fmt_amount(self.held_amount, self.token)} from {_sales(len(self.held))} is held "
            f"{until}: "
            "each sale's challenge period, in which a dispute refunds its buyer"
        )

    def notes(self) -> list[str]:
        """What is held (until when) and what the buyers may refund, as sentences."""
        return [t for t in (self.held_text(), self.refundable_text()) if t]

    def nothing_to_withdraw(self, address: str) -> str:
        """The sentence when nothing is credited: what is held, and until when."""
        return nothing_to_withdraw(address, self.notes())

    def refundable_text(self) -> str | None:
        if not self.refundable:
            return None
        return (
            f"{_sales(len(self.refundable))} "
            f"({fmt_amount(sum(s.amount for s in self.refundable), self.token)}) "
            "of models validators disputed within their challenge period will not be paid "
            "out: their buyers can refund them"
        )


def nothing_to_withdraw(address: str, notes: list[str]) -> str:
    return (
        f"{address} has nothing to withdraw yet"
        + (f": {'; '.join(notes)}" if notes else "")
        + ". Nothing was sent."
    )


def _sales(n: int) -> str:
    return f"{n} sale{'s' if n != 1 else ''}"


def credited(chain, account: str, token: Token = ETH) -> int:
    """What ``account`` can withdraw now in ``token``."""
    return int(chain.call(chain.marketplace.functions.credited(account, token.address)))


def earnings(chain, owner: str, purchase_ids: Iterable[int], token: Token = ETH) -> Earnings:
    """``owner``'s credited balance in ``token``, and which of ``purchase_ids`` (the indexer's
    unreleased sales of the owner's models) paid in ``token`` can be released now, are held
    (until when) or are the buyers' to refund. The chain decides each purchase; ids that are not
    such a sale of ``owner`` in ``token`` are left out."""
    market = chain.marketplace.functions
    result = Earnings(credited=credited(chain, owner, token), token=token)
    purchase_ids = sorted({int(p) for p in purchase_ids})
    if not purchase_ids:
        return result
    period, fee_bps, now = (
        challenge_period(chain),
        int(chain.call(market.feeBps())),
        next_block_time(chain),
    )
    books, owners = {}, {}
    for pid in purchase_ids:
        p = purchase_record(chain, pid)
        if p.status != PurchaseStatus.DELIVERED or p.released or p.price == 0 or p.for_validator:
            continue
        if int(chain.call(market.purchaseToken(pid)), 16) != int(token.address, 16):
            continue  # paid in another token: its own withdrawal releases it
        if p.model_id not in owners:
            owners[p.model_id] = sale_terms(chain, p.model_id).owner
            books[p.model_id] = book(chain, p.model_id)
        if owners[p.model_id].lower() != owner.lower():
            continue  # the model changed hands: its next release pays the new owner
        b, end = books[p.model_id], p.delivered_at + period
        disputed = b.disputed and b.disputed_at <= end
        sale = Sale(pid, p.model_id, p.price - p.price * fee_bps // 10_000, end, disputed, token)
        if disputed:
            result.refundable.append(sale)
        elif now > end:
            result.releasable.append(sale)
        else:
            result.held.append(sale)
    return result


@dataclass
class Withdrawal:
    amount: int  # sent to the wallet, in the earnings' token
    released: list[Sale]  # sales released (credited) before the withdrawal
    earnings: Earnings  # what was found before releasing (held and refundable sales included)

    @property
    def token(self) -> Token:
        return self.earnings.token


def release_revenue(chain, signer, sales: Iterable[Sale]) -> list[Sale]:
    """``releaseRevenue`` for each sale (anyone may call it; the owner is credited); returns those
    released. One that someone else released meanwhile is skipped."""
    released = []
    for sale in sales:
        try:
            chain.transact(chain.marketplace.functions.releaseRevenue(sale.purchase_id), signer)
        except ContractRevert as exc:
            if exc.context.get("error") != "MarketplaceNothingToRelease":
                raise
            log.info("purchase %d: already released", sale.purchase_id)
            continue
        released.append(sale)
        log.info(
            "released the revenue of purchase %d (%s)",
            sale.purchase_id,
            fmt_amount(sale.amount, sale.token),
        )
    return released


def withdraw(chain, signer, sales: Iterable[int] = (), token: Token = ETH) -> Withdrawal:
    """Release the signer's sales among ``sales`` (purchase ids) paid in ``token`` that are past
    their challenge period, then withdraw everything credited in ``token`` (sales,
    subscriptions, fees, refunds, rewards). When nothing is credited the ChainError says what is
    still held and until when."""
    return _withdraw_earnings(chain, signer, earnings(chain, signer.address, sales, token))


def _withdraw_earnings(chain, signer, found: Earnings) -> Withdrawal:
    """Release ``found``'s releasable sales, then withdraw its token's credited balance."""
    token = found.token
    released = release_revenue(chain, signer, found.releasable)
    if credited(chain, signer.address, token) == 0:
        raise ChainError(found.nothing_to_withdraw(signer.address), address=signer.address)
    market = chain.marketplace.functions
    receipt = chain.transact(
        market.withdraw() if token.is_eth else market.withdraw(token.address), signer
    )
    events = chain.marketplace.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    amount = sum(int(e["args"]["amount"]) for e in events)
    log.info("withdrew %s to %s", fmt_amount(amount, token), signer.address)
    return Withdrawal(amount, released, found)


def withdraw_each(
    chain, signer, sales: Iterable[int], tokens: Iterable[Token]
) -> tuple[list[Withdrawal], list[Earnings]]:
    """``withdraw`` in each of ``tokens`` that has something to withdraw (credited, or sales to
    release first); returns the withdrawals and the earnings of the tokens with nothing to
    withdraw yet (what they hold). ChainError, naming what is held in every token, when none has
    anything."""
    sales = list(sales)
    done, waiting = [], []
    for token in tokens:
        found = earnings(chain, signer.address, sales, token)
        if found.withdrawable:
            done.append(_withdraw_earnings(chain, signer, found))
        else:
            waiting.append(found)
    if not done:
        notes = [note for found in waiting for note in found.notes()]
        raise ChainError(nothing_to_withdraw(signer.address, notes), address=signer.address)
    return done, waiting


def valid_score(score) -> int:
    """``score`` as Votes.vote takes it, or InputError before anything is sent (None, 0 or 9:
    whatever a form or a JSON body held)."""
    if score not in SCORES:
        raise InputError("Choose a score from 1 to 5 stars.")
    return int(score)


def vote(chain, signer, model_id: int, score: int):
    return chain.transact(chain.votes.functions.vote(model_id, valid_score(score)), signer)


@dataclass(frozen=True)
class Score:
    """``Votes.scoreOf``: the mean is weighted by the price each voter paid for its licence."""

    weighted_sum: int
    weight: int
    voters: int

    @property
    def mean(self) -> float | None:
        return self.weighted_sum / self.weight if self.weight else None


def score(chain, model_id: int) -> Score:
    return Score(*(int(x) for x in chain.call(chain.votes.functions.scoreOf(model_id))))


def min_stake(chain) -> int:
    return int(chain.call(chain.validators.functions.minStake()))


def stake(chain, signer, amount: int | None = None):
    """Stake ``amount`` wei (default: the contract's minimum)."""
    amount = min_stake(chain) if amount is None else amount
    return chain.transact(chain.validators.functions.stake(), signer, value=amount)
