"""Gas of the suite's everyday operations on anvil, each the first of its kind by a fresh account.

    .venv/bin/python benchmarks/gas.py

Starts its own anvil (stopped by PID), deploys with node.deploy (the development defaults with a
quorum of 2, so a round has two reveals) and plays one model's life twice with never-used accounts,
through `play_round` (tests/contracts/test_gas.py plays the same round on the embedded chain and on
anvil): list → claimMetrics → two validators stake, ask for the key and get it from the seller's
operator → commit ×2 (the first opens the round) → reveal ×2 → settle (Verified) → buy ×2 → deliverKey
by the operator → vote ×2 → review, report, sendFeedback, withdrawFeedback → the challenge period
passes → releaseRevenue ×2 (the first credits the seller, the platform and the verifiers) → withdraw
(seller) → claimValidatorReward → release (seat).
Then, per round, a never-used buyer buys a model priced in the test stablecoin (buy_erc20), a
never-used account subscribes to a model for 30 days in ETH (subscribe) and another in the stablecoin
(`play_tokens`), and a never-used buyer
opens a payment channel for a model priced in the test
stablecoin (openChannel: the ERC-20 deposit pulled with transferFrom) and the model's never-used
seller claims the buyer's EIP-712 voucher (claim; `play_channel`; tests/contracts/test_channels.py
plays it on the embedded chain). Last, per round, a never-used seller sells a model to 10 never-used
buyers, publishes version 2 and delivers its key to all 10 in one deliverVersionKeys batch
(`play_version_keys`): deliver_version_keys_per_holder is that batch's gas divided by 10, each holder's
first version key. Rows without a target are context. Round 1 runs on the freshly
deployed suite (every slot cold, the fee recipient's balance still zero); round 2 on the same suite
with new accounts. The JSON keeps the
larger of the two: the costly case. Gas is the receipt's gasUsed (intrinsic 21,000 + calldata +
execution), as the anchors count it.

In-run baseline: a bare OpenZeppelin ERC-721 mint (benchmarks/contracts/BaselineMint.sol, same
compiler and chain), which ModelRegistry.list contains. Outside anchors, for scale: Seaport's
fulfillBasicOrder 88-109k gas; an ERC-721 mint 51-69k. The last line is JSON: the targets' operations
and `baseline_erc721_mint`.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from web3 import Web3
from web3.logs import DISCARD

from benchmarks.common import print_figures
from node import paths
from node.channels import voucher_typed_data
from node.compiler import compile_contracts, solc_version
from node.deploy import deploy_suite, send_transaction, suite_contracts
from node.devchain import start_anvil
from node.protocol import ModelStatus, attestation_commitment
from node.signer import dev_signer

# The targets (issue 13, section 4), each for the row of the same name.
TARGETS = {
    "list": 150_000,
    "buy": 90_000,
    "deliverKey": 75_000,
    "vote": 60_000,
    "commit": 70_000,
    "reveal": 70_000,
    "settle": 120_000,
    "withdraw": 35_000,
}
# Prices in an ERC-20 and subscriptions (issue 14, benchmarks): measured by play_tokens.
TOKEN_TARGETS = {"buy_erc20": 150_000, "subscribe": 120_000}
TOKEN_PRICE = 25_000_000  # 25 mUSD (6 decimals)
SUBSCRIPTION_PER_DAY = 1_000_000  # 1 mUSD a day
TOKEN_ACCOUNTS = 4  # per round: a seller, a buyer, a subscriber in ETH, one in mUSD
# Payment channels (issue 14, benchmarks): an ERC-20 deposit included; measured by play_channel.
CHANNEL_TARGETS = {"openChannel": 150_000, "claim": 100_000}
CHANNEL_DEPOSIT = 100_000_000  # 100 mUSD (6 decimals)
CHANNEL_VOUCHER = 1_234_567  # the cumulative amount claimed: 1.234567 mUSD
STABLECOIN = "MockStablecoin"
PRICE = 10**17
QUORUM = 2
CID_V1 = (
    "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # metadata JSON, unixfs-v1-2025
)
CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"  # the kubo-v0 profile's form
WRAPPED_KEY = bytes(range(80))  # HPKE enc(32) || ciphertext(48), docs/formats.md
ACCOUNTS_PER_ROUND = 7
CHANNEL_ACCOUNTS = 2  # per round: a seller and a buyer
# A new version's key to licence holders (issue 15 §1): one batch of deliverVersionKeys, per holder. The
# batch's holders bought one after another, so their purchase ids share a bitmap slot (Marketplace's
# _versionKeysDelivered); holders whose ids lie 256 or more apart pay a fresh slot each (about 35,000).
VERSION_KEY_TARGETS = {"deliver_version_keys_per_holder": 16_000}
VERSION_KEY_BATCH = 10
VERSION_KEY_ACCOUNTS = 1 + VERSION_KEY_BATCH  # per round: a seller and the holders

# send(label, sender, call, value) mines `call` from `sender` and returns its receipt; travel(seconds)
# moves the chain's clock. label None: a setup step, not measured.
Send = Callable[[str | None, str, object, int], dict]


def play_round(
    w3, c: dict, fresh: list[str], round_no: int, send: Send, travel: Callable[[int], None]
) -> dict[str, dict]:
    """One model's life by never-used accounts; returns {row label: receipt}, in order."""
    seller, operator, validator_a, validator_b, buyer, second_buyer, other_seller = fresh
    registry, market, validators, votes = (
        c[n].functions for n in ("ModelRegistry", "Marketplace", "Validators", "Votes")
    )
    receipts: dict[str, dict] = {}

    def step(label: str | None, sender: str, call, value: int = 0) -> dict:
        receipt = send(label, sender, call, value)
        if label:
            receipts[label] = receipt
        return receipt

    model_hash, claim = bytes([round_no]) * 32, bytes([0x80 + round_no]) * 32
    receipt = step("list", seller, registry.list(model_hash, CID_V1, PRICE))
    model_id = (
        c["ModelRegistry"]
        .events.ModelListed()
        .process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]
    )
    step("list (CIDv0 string)", other_seller, registry.list(model_hash, CID_V0, PRICE))
    step("claimMetrics", seller, registry.claimMetrics(model_id, claim))
    step(None, seller, registry.setOperator(model_id, operator))
    config = validators.config().call()
    min_stake, commit_period, reveal_period = config[0], config[2], config[3]
    pair = (validator_a, validator_b)
    for validator in pair:
        step(None, validator, validators.stake(), min_stake)
    requests = []
    for label, validator in (("requestValidatorKey", validator_a), (None, validator_b)):
        receipt = step(label, validator, market.requestValidatorKey(model_id, key_of(validator)))
        requests.append(
            c["Marketplace"].events.Purchased().process_receipt(receipt, errors=DISCARD)[0]["args"]
        )
    for label, request in (("deliverKey (validator's key)", requests[0]), (None, requests[1])):
        step(
            label, operator, market.deliverKey(request["purchaseId"], request["buyer"], WRAPPED_KEY)
        )
    chain_id, salts = w3.eth.chain_id, {}
    for label, validator in (("commit", validator_a), ("commit (round open)", validator_b)):
        salts[validator] = key_of(f"salt {validator}")
        commitment = attestation_commitment(
            chain_id,
            c["Validators"].address,
            model_id,
            validator,
            model_hash,
            claim,
            salts[validator],
        )
        step(label, validator, validators.commitAttestation(model_id, commitment))
    travel(commit_period + 1)
    for label, validator in (("reveal", validator_a), ("reveal (second)", validator_b)):
        step(
            label,
            validator,
            validators.revealAttestation(model_id, model_hash, claim, salts[validator]),
        )
    travel(reveal_period + 1)
    step("settle", validator_a, validators.settle(model_id))
    assert validators.status(model_id).call() == ModelStatus.VERIFIED, (
        "the round must verify the model"
    )
    sales = []
    for label, account in (("buy", buyer), (None, second_buyer)):
        receipt = step(label, account, market.buy(model_id, key_of(account), PRICE), PRICE)
        sales.append(
            c["Marketplace"].events.Purchased().process_receipt(receipt, errors=DISCARD)[0]["args"]
        )
    for label, sale in (("deliverKey", sales[0]), ("deliverKey (second sale)", sales[1])):
        step(label, operator, market.deliverKey(sale["purchaseId"], sale["buyer"], WRAPPED_KEY))
    step("vote", buyer, votes.vote(model_id, 4))
    step("vote (model has votes)", second_buyer, votes.vote(model_id, 5))
    # issue 15: a review (its score replaces the live vote), a report, a feedback item's anchor
    # and its withdrawal (context rows, no target; each CID is a string in the calldata and event)
    step("review (replaces a vote)", buyer, votes.review(model_id, 3, CID_V1))
    step("report", second_buyer, votes.report(model_id, CID_V1))
    step("sendFeedback", buyer, votes.sendFeedback(model_id, CID_V1))
    step("withdrawFeedback", buyer, votes.withdrawFeedback(model_id, CID_V1))
    travel(market.challengePeriod().call() + 1)
    for label, sale in (("releaseRevenue", sales[0]), ("releaseRevenue (second)", sales[1])):
        step(label, second_buyer, market.releaseRevenue(sale["purchaseId"]))
    step("withdraw", seller, market.withdraw())
    step("claimValidatorReward", validator_a, market.claimValidatorReward(model_id))
    step("release (seat)", validator_a, validators.release(model_id, validator_a))
    return receipts


def play_channel(
    c: dict, token, fresh: list[str], round_no: int, send: Send, sign: Callable[[str, dict], bytes]
) -> dict[str, dict]:
    """A model priced in the ERC-20 ``token``, a never-used buyer opens a channel for it (the ERC-20
    deposit pulled with transferFrom) and its never-used seller claims the buyer's voucher. ``sign``
    (address, EIP-712 message) -> signature. Returns {row label: receipt}."""
    seller, buyer = fresh
    registry, channels = c["ModelRegistry"].functions, c["Channels"]
    receipt = send(None, seller, registry.list(bytes([0x40 + round_no]) * 32, CID_V1, PRICE), 0)
    model_id = (
        c["ModelRegistry"]
        .events.ModelListed()
        .process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]
    )
    send(None, seller, registry.setPaymentToken(model_id, token.address), 0)
    send(None, buyer, token.functions.mint(buyer, CHANNEL_DEPOSIT), 0)
    send(None, buyer, token.functions.approve(channels.address, CHANNEL_DEPOSIT), 0)
    expires = c["ModelRegistry"].w3.eth.get_block("latest")["timestamp"] + 86400
    receipts = {
        "openChannel": send(
            "openChannel",
            buyer,
            channels.functions.openChannel(model_id, token.address, CHANNEL_DEPOSIT, expires),
            0,
        )
    }
    opened = channels.events.ChannelOpened().process_receipt(
        receipts["openChannel"], errors=DISCARD
    )
    channel_id = opened[0]["args"]["channelId"]
    chain_id = c["ModelRegistry"].w3.eth.chain_id
    voucher = voucher_typed_data(chain_id, channels.address, channel_id, CHANNEL_VOUCHER)
    signature = sign(buyer, voucher)
    claim = channels.functions.claim(channel_id, CHANNEL_VOUCHER, signature)
    receipts["claim"] = send("claim", seller, claim, 0)
    return receipts


def play_tokens(c: dict, token, fresh: list[str], round_no: int, send: Send) -> dict[str, dict]:
    """A model priced in the ERC-20 ``token`` and one priced in ETH, both offering a subscription: a
    never-used buyer buys the first (buy_erc20: the price pulled with transferFrom), a never-used
    account subscribes to the second for 30 days in ETH (subscribe, as `buy` is in ETH) and another to
    the first in the token (context: the token's transferFrom on top). Returns {row: receipt}."""
    seller, buyer, subscriber, token_subscriber = fresh
    registry, market = c["ModelRegistry"].functions, c["Marketplace"].functions
    listed = []
    for n in range(2):
        model_hash = bytes([0x60 + 2 * round_no + n]) * 32
        receipt = send(None, seller, registry.list(model_hash, CID_V1, TOKEN_PRICE), 0)
        listed.append(
            c["ModelRegistry"]
            .events.ModelListed()
            .process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]
        )
    in_token, in_eth = listed
    send(None, seller, registry.setPaymentToken(in_token, token.address), 0)
    for model_id in listed:
        send(None, seller, registry.setSubscription(model_id, SUBSCRIPTION_PER_DAY, 86400), 0)
    total = 30 * SUBSCRIPTION_PER_DAY
    for account, amount in ((buyer, TOKEN_PRICE), (token_subscriber, total)):
        send(None, account, token.functions.mint(account, amount), 0)
        send(None, account, token.functions.approve(c["Marketplace"].address, amount), 0)
    return {
        "buy_erc20": send("buy_erc20", buyer, market.buy(in_token, key_of(buyer), TOKEN_PRICE), 0),
        "subscribe": send("subscribe", subscriber, market.subscribe(in_eth, 30, total), total),
        "subscribe (ERC-20)": send(
            "subscribe (ERC-20)", token_subscriber, market.subscribe(in_token, 30, total), 0
        ),
    }


def play_version_keys(c: dict, fresh: list[str], round_no: int, send: Send) -> dict[str, dict]:
    """A model whose never-used seller sells it to VERSION_KEY_BATCH never-used buyers, keeps every
    version for them (update window forever) and publishes version 2, whose key it delivers to all of
    them in one deliverVersionKeys batch (each holder's first: a fresh slot each). Returns {row:
    receipt}; `per_holder` divides the batch's gas by its size."""
    seller, holders = fresh[0], fresh[1:]
    registry, market = c["ModelRegistry"].functions, c["Marketplace"].functions
    receipt = send(None, seller, registry.list(bytes([0x70 + round_no]) * 32, CID_V1, PRICE), 0)
    model_id = (
        c["ModelRegistry"]
        .events.ModelListed()
        .process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]
    )
    send(None, seller, registry.setUpdateWindow(model_id, 2**256 - 1), 0)
    for holder in holders:
        receipt = send(None, holder, market.buy(model_id, key_of(holder), PRICE), PRICE)
        purchase_id = (
            c["Marketplace"]
            .events.Purchased()
            .process_receipt(receipt, errors=DISCARD)[0]["args"]["purchaseId"]
        )
        send(None, seller, market.deliverKey(purchase_id, holder, WRAPPED_KEY), 0)
    send(None, seller, registry.publishVersion(model_id, bytes([0x78 + round_no]) * 32, CID_V1), 0)
    batch = market.deliverVersionKeys(model_id, 2, holders, [WRAPPED_KEY] * len(holders))
    return {
        f"deliverVersionKeys ({len(holders)} holders)": send("deliverVersionKeys", seller, batch, 0)
    }


def per_holder(gas: dict[str, int]) -> int:
    """deliver_version_keys_per_holder: the batch's gas divided by the holders it served."""
    return gas[f"deliverVersionKeys ({VERSION_KEY_BATCH} holders)"] // VERSION_KEY_BATCH


def deploy_stablecoin(w3, deployer: str):
    """The test stablecoin (contracts/MockStablecoin.sol: 6 decimals, anyone may mint)."""
    art = compile_contracts()[STABLECOIN]
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    receipt = send_transaction(w3, deployer, factory.constructor(), what=f"deploy {STABLECOIN}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=art["abi"])


def key_of(account: str) -> bytes:
    """Stands in for an account's X25519 public key: 32 bytes, none of them zero (calldata charges a
    non-zero byte 16 gas, a zero byte 4: the costly case)."""
    return hashlib.sha256(account.encode()).digest().replace(b"\0", b"\1")


def breakdown(w3, receipt) -> dict:
    """Where a transaction's gas went, from anvil's opcode trace (needs anvil --steps-tracing)."""
    tx_hash = receipt["transactionHash"].to_0x_hex()
    trace = w3.provider.make_request(
        "debug_traceTransaction",
        [tx_hash, {"disableStack": True, "disableMemory": True, "disableStorage": True}],
    )["result"]["structLogs"]
    out = {
        "intrinsic": w3.eth.get_transaction(tx_hash)["gas"] - trace[0]["gas"],  # 21,000 + calldata
        "sstore": 0,
        "fresh_slots": 0,
        "sload": 0,
        "log": 0,
    }
    for step in trace:
        op, cost = step["op"], step["gasCost"]
        if op == "SSTORE":
            out["sstore"] += cost
            out["fresh_slots"] += cost in (20_000, 22_100)  # zero -> non-zero, warm or cold slot
        elif op == "SLOAD":
            out["sload"] += cost
        elif op.startswith("LOG"):
            out["log"] += cost
    out["rest"] = receipt["gasUsed"] - out["intrinsic"] - out["sstore"] - out["sload"] - out["log"]
    return out


def baseline_mints(w3, deployer: str, minters: list[str]) -> list[int]:
    art = compile_contracts(
        [ROOT / "benchmarks" / "contracts"], build_dir=paths.BUILD_DIR / "bench"
    )["BaselineMint"]
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    address = send_transaction(w3, deployer, factory.constructor(), what="deploy BaselineMint")[
        "contractAddress"
    ]
    nft = w3.eth.contract(address=address, abi=art["abi"])
    return [send_transaction(w3, m, nft.functions.mint(), what="mint")["gasUsed"] for m in minters]


def anvil_version() -> str:
    out = subprocess.run(
        [str(paths.ANVIL_BIN), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split("\n")[0].replace("anvil Version: ", "anvil ")


def verdict(gas: int, target: int | None) -> tuple[str, str]:
    """(the target as shown, whether it is met) for one row."""
    if target is None:
        return "-", "(no target)"
    over = gas - target
    return f"{target:,}", "meets" if over <= 0 else f"MISSES by {over:,} ({over / target:.0%})"


def main() -> int:
    token_first = 1 + 2 * ACCOUNTS_PER_ROUND  # the accounts after the two rounds'
    channel_first = token_first + 2 * TOKEN_ACCOUNTS
    version_first = channel_first + 2 * CHANNEL_ACCOUNTS
    node = start_anvil(
        accounts=version_first + 2 * VERSION_KEY_ACCOUNTS + 2, extra_args=["--steps-tracing"]
    )
    try:
        w3 = Web3(Web3.HTTPProvider(node.url))
        accounts = w3.eth.accounts
        deployer = accounts[0]
        c = suite_contracts(w3, deploy_suite(w3, deployer, quorum=QUORUM))
        token = deploy_stablecoin(w3, deployer)
        # anvil's accounts are its mnemonic's, in order: their keys sign the vouchers
        keys = {
            dev_signer("anvil", i).address: dev_signer("anvil", i) for i in range(len(accounts))
        }

        def send(label, sender, call, value=0):
            return send_transaction(w3, sender, call, what=label or "setup", value=value)

        def travel(seconds):
            w3.provider.make_request("evm_increaseTime", [seconds])
            w3.provider.make_request("evm_mine", [])

        played = [
            play_round(
                w3,
                c,
                accounts[1 + i * ACCOUNTS_PER_ROUND : 1 + (i + 1) * ACCOUNTS_PER_ROUND],
                i + 1,
                send,
                travel,
            )
            for i in range(2)
        ]
        for i in range(2):
            first = token_first + i * TOKEN_ACCOUNTS
            fresh = accounts[first : first + TOKEN_ACCOUNTS]
            played[i].update(play_tokens(c, token, fresh, i + 1, send))
        for i in range(2):
            first = channel_first + i * CHANNEL_ACCOUNTS
            fresh = accounts[first : first + CHANNEL_ACCOUNTS]
            played[i].update(
                play_channel(
                    c,
                    token,
                    fresh,
                    i + 1,
                    send,
                    lambda address, message: keys[address].sign_typed_data(message),
                )
            )
        for i in range(2):
            first = version_first + i * VERSION_KEY_ACCOUNTS
            played[i].update(
                play_version_keys(c, accounts[first : first + VERSION_KEY_ACCOUNTS], i + 1, send)
            )
        parts = {label: breakdown(w3, receipt) for label, receipt in played[0].items()}
        mints = baseline_mints(w3, deployer, accounts[-2:])
    finally:
        node.stop()

    rounds = [{label: receipt["gasUsed"] for label, receipt in r.items()} for r in played]
    for r in rounds:
        r["deliver_version_keys_per_holder"] = per_holder(r)
    costly = {op: max(r[op] for r in rounds) for op in rounds[0]}
    print(
        f"Modex contract gas: {anvil_version()}, solc {solc_version()} (evm prague, optimizer 200 runs), "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    print("each operation is the first of its kind by a never-used account (cold storage)")
    print(f"{'operation':<30}{'round 1 (new suite)':>21}{'round 2':>10}{'target':>10}  verdict")
    all_targets = {**TARGETS, **TOKEN_TARGETS, **CHANNEL_TARGETS, **VERSION_KEY_TARGETS}
    for op in rounds[0]:
        shown, met = verdict(costly[op], all_targets.get(op))
        print(f"{op:<30}{rounds[0][op]:>21,}{rounds[1][op]:>10,}{shown:>10}  {met}")
    print(
        "where round 1's gas goes (opcode trace): intrinsic = 21,000 + calldata; rest = calls, compute, refunds"
    )
    print(
        f"{'operation':<30}{'intrinsic':>10}{'SSTORE':>9}{'fresh slots':>12}{'SLOAD':>7}{'LOG':>7}{'rest':>8}"
    )
    for op, b in parts.items():
        print(
            f"{op:<30}{b['intrinsic']:>10,}{b['sstore']:>9,}{b['fresh_slots']:>12}{b['sload']:>7,}{b['log']:>7,}"
            f"{b['rest']:>8,}"
        )
    print(
        f"baseline (same run): OpenZeppelin ERC-721 mint by a fresh account: {mints[0]:,} / {mints[1]:,} gas; "
        f"list / mint = {costly['list'] / max(mints):.2f}x"
    )
    print("anchors: Seaport fulfillBasicOrder 88-109k gas (buy target 90k); ERC-721 mint 51-69k")
    print_figures(
        {
            **{op: costly[op] for op in all_targets},
            "baseline_erc721_mint": max(mints),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
