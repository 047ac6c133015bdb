"""`modex channel ...`: pay-per-call payment channels (contracts/Channels.sol, node/channels.py).

A buyer opens a channel for a model with a deposit in its payment token (`open`), adds to it
(`top-up`), moves its expiry (`extend`), lists their channels (`list`) and after the expiry takes
back what the seller did not claim (`reclaim`). A seller sets the price of one call (`price`),
claims the highest voucher a buyer signed (`claim`, from a voucher file or the service's state
store) and withdraws what claims credited (`withdraw`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from modex.commandline import add_command, add_node_options, positive_id
from node.amounts import ETH, fmt_amount
from node.channels import ChannelClient, ChannelState
from node.claimer import claim_and_mark
from node.errors import ConfigError, InputError
from node.revert_sentences import when
from node.servicestore import open_service_store
from node.stack import Stack

DAY = 86400
DEFAULT_DAYS = 7
STATE_HELP = (
    "the inference service's state store whose vouchers to claim (a SQLite path, redis://, "
    "postgresql://; default: the configuration's service_store)"
)


def register(sub) -> None:
    channel = sub.add_parser(
        "channel", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    actions = channel.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = add_command(actions, "open", run_open, help="open a channel for a model with a deposit")
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("--amount", required=True, help="the deposit, in the model's token (e.g. 5)")
    p.add_argument(
        "--days",
        type=_days,
        default=DEFAULT_DAYS,
        help=f"days until it expires (default {DEFAULT_DAYS})",
    )

    p = add_command(actions, "top-up", run_top_up, help="add to a channel's deposit")
    p.add_argument("channel_id", metavar="CHANNEL_ID", type=positive_id)
    p.add_argument("--amount", required=True, help="how much more, in the channel's token")

    p = add_command(actions, "extend", run_extend, help="move a channel's expiry later")
    p.add_argument("channel_id", metavar="CHANNEL_ID", type=positive_id)
    p.add_argument("--days", type=_days, required=True, help="days to add to its expiry")

    p = add_command(actions, "reclaim", run_reclaim, help="after expiry, take back the rest")
    p.add_argument("channel_id", metavar="CHANNEL_ID", type=positive_id)

    p = add_command(actions, "list", run_list, help="the channels your wallet opened")
    p.add_argument("--json", action="store_true", help="one JSON object per channel")

    p = add_command(actions, "price", run_price, help="show or set a model's price per call")
    p.add_argument("model_id", metavar="MODEL_ID", type=positive_id)
    p.add_argument("--set", metavar="AMOUNT", help="the new price per call (model's owner)")

    p = add_command(actions, "claim", run_claim, help="claim a buyer's highest voucher (seller)")
    p.add_argument("channel_id", metavar="CHANNEL_ID", type=positive_id, nargs="?")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--voucher-file",
        type=Path,
        help='a JSON voucher {"channelId", "cumulativeAmount", "signature"} (or a list of them)',
    )
    source.add_argument("--state", metavar="STORE", help=STATE_HELP)

    p = add_command(actions, "withdraw", run_withdraw, help="withdraw what claims credited you")
    p.add_argument("--token", metavar="ADDRESS", default=ETH.address, help="default: ETH")

    for parser in actions.choices.values():
        add_node_options(parser)


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = 0.0
    if not 0 < days <= 3650:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of days above 0, at most 3650")
    return days


def _session(args) -> tuple[Stack, ChannelClient]:
    session = Stack.from_args(args)
    return session, ChannelClient.for_chain(session.chain)


def _describe(client: ChannelClient, c: ChannelState) -> str:
    token = client.chain.token(c.token)
    state = "open" if c.open else "closed"
    return (
        f"channel {c.channel_id}: model {c.model_id}, {fmt_amount(c.deposit, token)} deposited, "
        f"{fmt_amount(c.claimed, token)} claimed, expires {when(c.expires_at)}, {state}"
    )


def _block_time(client: ChannelClient) -> int:
    return int(client.chain.get_block("latest")["timestamp"])


def run_open(args) -> int:
    """Open a payment channel for MODEL_ID: deposit --amount of the model's payment token (ETH or
    an ERC-20, approved first for exactly the deposit) until --days from now. Each call to the
    model's service then carries a voucher your wallet signs (`modex call` does it); after the
    expiry, `modex channel reclaim` returns what the seller did not claim."""
    session, client = _session(args)
    token = client.payment_token(args.model_id)
    amount = token.parse(args.amount, "--amount")
    expires = max(_block_time(client), int(time.time())) + int(args.days * DAY)
    channel = client.open(session.signer, args.model_id, amount, expires)
    print(_describe(client, channel))
    price = client.call_price(args.model_id)
    if price:
        print(f"price per call: {fmt_amount(price, token)} ({amount // price} calls deposited)")
    return 0


def run_top_up(args) -> int:
    """Add --amount (in the channel's token) to the deposit of an open, unexpired channel."""
    session, client = _session(args)
    token = client.chain.token(client.channel(args.channel_id).token)
    channel = client.top_up(session.signer, args.channel_id, token.parse(args.amount, "--amount"))
    print(_describe(client, channel))
    return 0


def run_extend(args) -> int:
    """Move the channel's expiry --days later (from now, if it already expired and was not
    reclaimed)."""
    session, client = _session(args)
    current = client.channel(args.channel_id)
    start = max(current.expires_at, _block_time(client))
    channel = client.extend(session.signer, args.channel_id, start + int(args.days * DAY))
    print(_describe(client, channel))
    return 0


def run_reclaim(args) -> int:
    """After the channel's expiry, take back what the seller did not claim, and close it."""
    session, client = _session(args)
    token = client.chain.token(client.channel(args.channel_id).token)
    returned = client.reclaim(session.signer, args.channel_id)
    print(f"channel {args.channel_id} closed: {fmt_amount(returned, token)} returned to you")
    return 0


def run_list(args) -> int:
    """The channels your wallet opened (from the chain's ChannelOpened events), as they stand."""
    session, client = _session(args)
    found = client.channels_of(session.signer.address)
    for c in found:
        if args.json:
            print(json.dumps({**asdict(c), "remaining": c.remaining}))
        else:
            print(_describe(client, c))
    if not found and not args.json:
        print(f"{session.signer.address} has opened no channel")
    return 0


def run_price(args) -> int:
    """Show MODEL_ID's price per call over a channel; with --set, set it (the model's owner)."""
    session, client = _session(args)
    token = client.payment_token(args.model_id)
    if args.set is not None:
        client.set_call_price(session.signer, args.model_id, token.parse(args.set, "--set"))
    price = client.call_price(args.model_id)
    print(f"model {args.model_id}: {fmt_amount(price, token)} per call")
    return 0


def run_claim(args) -> int:
    """Claim a buyer's highest voucher for a channel of your model (its owner or operator): the
    owner is credited the new part less the platform's fee (`modex channel withdraw` takes it).
    The vouchers come from --voucher-file, or from the service's state store (--state, or the
    configuration's service_store): CHANNEL_ID's highest, or every channel's not yet claimed."""
    session, client = _session(args)
    if args.voucher_file is not None:
        vouchers = _voucher_file(args.voucher_file, args.channel_id)
        store = None
    else:
        store = _store(args, session)
        vouchers = _stored_vouchers(store, args.channel_id)
    try:
        for channel_id, amount, signature in vouchers:
            channel = client.channel(channel_id)
            token = client.chain.token(channel.token)
            if min(amount, channel.deposit) <= channel.claimed:
                print(
                    f"channel {channel_id}: nothing new to claim ({fmt_amount(channel.claimed, token)} claimed)"
                )
                if store is not None:
                    store.mark_claimed(channel_id, amount)
            else:
                done = claim_and_mark(client, session.signer, store, channel_id, amount, signature)
                print(
                    f"channel {channel_id}: claimed up to {fmt_amount(amount, token)}: "
                    f"{fmt_amount(done.paid, token)} credited to the owner, "
                    f"{fmt_amount(done.fee, token)} fee ({done.tx_hash})"
                )
    finally:
        if store is not None:
            store.close()
    if not vouchers:
        print("no voucher to claim")
    return 0


def run_withdraw(args) -> int:
    """Send your wallet what channel claims credited you in --token (default ETH)."""
    session, client = _session(args)
    token = client.chain.token(args.token)
    amount = client.withdraw(session.signer, token.address)
    print(f"withdrew {fmt_amount(amount, token)} from Channels to {session.signer.address}")
    return 0


def _voucher_file(path: Path, channel_id: int | None) -> list[tuple[int, int, str]]:
    """The vouchers of a JSON file (one object or a list), only CHANNEL_ID's when given."""
    try:
        data = json.loads(path.read_text())
        items = data if isinstance(data, list) else [data]
        vouchers = [
            (int(v["channelId"]), int(v["cumulativeAmount"]), str(v["signature"])) for v in items
        ]
    except OSError as exc:
        raise InputError(f"cannot read the voucher file {path}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(
            f"{path} is not a voucher file: write JSON like "
            '{"channelId": 1, "cumulativeAmount": 5000, "signature": "0x..."} (or a list of them)'
        ) from None
    return [v for v in vouchers if channel_id is None or v[0] == channel_id]


def _store(args, session):
    state = args.state or session.config.service_store
    if not state:
        raise ConfigError(
            "no voucher source: pass --voucher-file FILE, or --state STORE (the --state your "
            "`modex serve` uses), or set service_store in the configuration"
        )
    return open_service_store(state)


def _stored_vouchers(store, channel_id: int | None) -> list[tuple[int, int, bytes]]:
    """CHANNEL_ID's highest stored voucher, or every channel's highest not yet marked claimed."""
    if channel_id is None:
        return [(c, amount, sig) for c, amount, sig, _claimed in store.vouchers_to_claim()]
    highest = store.highest_voucher(channel_id)
    return [] if highest is None else [(channel_id, highest[0], highest[1])]
