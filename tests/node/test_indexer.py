"""node/indexer/: events → SQLite, read API, confirmations, rebuild equality, reorgs on anvil."""

import io
import json
import os

import pytest
from eth_utils import to_checksum_address
from modex_stack import CLAIMED_DIGEST, OTHER_DIGEST, settle_validation, time_travel
from web3.logs import DISCARD

from modex.cli import main
from node.chain import Chain, connect, embedded_web3
from node.config import Config
from node.content.cid import cid_of_stream
from node.content.store import open_store
from node.deploy import deploy_suite, write_deployment
from node.errors import InvalidQuery
from node.indexer import SCHEMA_VERSION, Indexer
from node.protocol import ModelStatus, Round

ETH = 10**18
WINDOW = 600  # delivery window (s) of the test deployment
CHALLENGE = 300  # challenge period (s) of the test deployment
FEE_BPS = 250


def cid(text: str) -> str:
    return cid_of_stream(io.BytesIO(text.encode()))


def model_hash(n: int) -> bytes:
    return n.to_bytes(32, "big")


def deploy(w3) -> Chain:
    record = deploy_suite(
        w3,
        w3.eth.accounts[0],
        delivery_window=WINDOW,
        challenge_period=CHALLENGE,
        fee_bps=FEE_BPS,
        min_stake=ETH // 10,
        quorum=1,
    )
    return Chain(w3, record, retries=1, backoff=0.01)


def populate(chain: Chain) -> dict:
    """Every kind of event, from six accounts: seller, buyer, validator, second buyer, second
    validator, third buyer. Model a is verified and sold twice at two prices (weighted votes);
    model b changes hands; c is delisted; d's first round closes undecided (a validator commits and
    never reveals: its bonds are forfeited), its second settles Metrics disputed, and its buyer,
    who had voted, is refunded."""
    seller, buyer, validator, other, validator2, buyer3 = chain.w3.eth.accounts[1:7]
    send = chain.transact_unlocked
    reg, market, votes, vals = chain.registry, chain.marketplace, chain.votes, chain.validators
    ids = []
    for n, price in enumerate((ETH // 10, ETH // 20, 3 * ETH, ETH // 10)):
        receipt = send(reg.functions.list(model_hash(n + 1), cid(f"meta {n}"), price), seller)
        ids.append(
            reg.events.ModelListed().process_receipt(receipt, errors=DISCARD)[0]["args"]["modelId"]
        )
    a, b, c, d = ids
    send(reg.functions.setOperator(a, other), seller)
    send(reg.functions.setPrice(b, ETH // 25), seller)
    send(reg.functions.setActive(c, False), seller)

    def buy(model, account, price):
        r = send(market.functions.buy(model, os.urandom(32), price), account, value=price)
        return market.events.Purchased().process_receipt(r, errors=DISCARD)[0]["args"]["purchaseId"]

    p1 = buy(a, buyer, ETH // 10)
    send(market.functions.deliverKey(p1, buyer, b"\x01" * 80), other)  # by the operator
    send(votes.functions.vote(a, 4), buyer)
    send(votes.functions.vote(a, 2), buyer)  # changed vote: one live vote per voter
    p2 = buy(b, other, ETH // 25)
    send(vals.functions.stake(), validator, value=ETH // 5)
    assert settle_validation(chain, a, owner=seller, validator=validator) == ModelStatus.VERIFIED
    send(vals.functions.release(a, validator), other)  # anyone releases a settled seat
    send(reg.functions.setPrice(a, ETH // 5), seller)
    p6 = buy(a, buyer3, ETH // 5)
    send(market.functions.deliverKey(p6, buyer3, b"\x06" * 80), seller)
    send(votes.functions.vote(a, 5), buyer3)  # weighs twice the first vote: it paid twice as much

    p5 = buy(d, other, ETH // 10)
    send(market.functions.deliverKey(p5, other, b"\x05" * 80), seller)
    send(votes.functions.vote(d, 5), other)
    r = send(market.functions.requestValidatorKey(d, os.urandom(32)), validator)
    lazy = market.events.Purchased().process_receipt(r, errors=DISCARD)[0]["args"]["purchaseId"]
    send(market.functions.deliverKey(lazy, validator, b"\x02" * 80), seller)
    send(vals.functions.commitAttestation(d, b"\x03" * 32), validator)  # never revealed
    time_travel(
        chain,
        Round.from_call(vals.functions.roundOf(d).call()).reveal_end
        - chain.get_block("latest")["timestamp"]
        + 1,
    )
    send(vals.functions.settle(d), other)  # nothing revealed: undecided
    send(vals.functions.release(d, validator), other)  # both bonds forfeited
    assert (
        settle_validation(
            chain, d, owner=seller, validator=validator2, outcome=ModelStatus.METRICS_DISPUTED
        )
        == ModelStatus.METRICS_DISPUTED
    )
    send(market.functions.refund(p5), other)  # disputed within its challenge period: vote dropped

    time_travel(chain, CHALLENGE + 1)
    send(market.functions.releaseRevenue(p1), other)  # anyone releases; the seller is credited
    send(market.functions.claimValidatorReward(a), validator)
    send(market.functions.withdraw(), seller)
    send(reg.functions.transferFrom(seller, other, b), seller)
    p4 = buy(b, buyer, ETH // 25)  # left pending
    time_travel(chain, WINDOW + 5)
    send(market.functions.refund(p2), other)
    return {
        "models": ids,
        "delivered": p1,
        "refunded": p2,
        "pending": p4,
        "held": p6,
        "disputed_sale": p5,
        "lazy": lazy,
        "seller": seller,
        "buyer": buyer,
        "validator_account": validator,
        "validator2": validator2,
        "other": other,
        "buyer3": buyer3,
    }


def verdicts(attestations: list[dict]) -> list[tuple]:
    """(validator, round, revealed, matches, digest_matches_claim, says) of each attestation."""
    keys = ("validator", "round", "revealed", "matches", "digest_matches_claim", "says")
    return [tuple(x[k] for k in keys) for x in attestations]


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.anvil)])
def chain(request):
    w3 = (
        embedded_web3()
        if request.param == "embedded"
        else connect(request.getfixturevalue("anvil").url)
    )
    return deploy(w3)


def test_index_reflects_every_event_and_rebuilds_identically(chain, tmp_path):
    facts = populate(chain)
    loads = []

    def loader(c):
        loads.append(c)
        if c == cid("meta 0"):
            return {
                "name": "Sentiment BERT",
                "task": "text-classification",
                "description": "reviews",
                "model_hash": "0x" + model_hash(1).hex(),
            }
        if c == cid("meta 1"):
            return {"name": "Embedder", "task": "embeddings", "model_hash": "0x" + "ee" * 32}
        raise OSError("unreachable gateway")

    index = Indexer(chain, tmp_path / "index.sqlite3", batch_blocks=5, metadata_loader=loader)
    count = index.sync()
    assert count == index.event_count() > 40
    a, b, c, d = facts["models"]
    seller, validator, validator2 = facts["seller"], facts["validator_account"], facts["validator2"]

    model = index.get_model(a)
    assert model["seller"] == model["owner"] == seller
    assert model["operator"] == facts["other"]
    assert model["price"] == ETH // 5 and model["active"] is True
    assert model["status"] == ModelStatus.VERIFIED.word
    # Votes weigh the price paid: 2 at 0.1 ETH and 5 at 0.2 ETH make 4.0 (3.5 unweighted).
    assert (
        model["vote_weighted_sum"],
        model["vote_weight"],
        model["vote_count"],
        model["score"],
    ) == (2 * ETH // 10 + 5 * ETH // 5, 3 * ETH // 10, 2, 4.0)
    assert (model["claimed_digest"], model["round"], model["verifier_weight"]) == (
        "0x" + CLAIMED_DIGEST.hex(),
        1,
        2,
    )  # 0.2 ETH staked: two minimum stakes of weight
    assert model["claimed_at"] <= index.rounds_of(a)[0]["opened_at"] <= model["verdict_at"]
    assert model["commit_end"] < model["reveal_end"] < model["verdict_at"]
    assert model["name"] == "Sentiment BERT" and model["metadata_matches"] is True
    assert index.get_model(b)["owner"] == facts["other"]  # transferred
    assert index.get_model(b)["price"] == ETH // 25
    assert index.get_model(b)["metadata_matches"] is False  # metadata names another hash
    assert index.get_model(c)["active"] is False and index.get_model(c)["name"] is None
    assert index.vote_histogram(a) == {1: 0, 2: 1, 3: 0, 4: 0, 5: 1}

    states = {p["purchase_id"]: p for p in index.purchases_of(facts["buyer"])}
    delivered = states[facts["delivered"]]
    assert delivered["state"] == "delivered" and delivered["wrapped_key"] == "0x" + "01" * 80
    fee = ETH // 10 * FEE_BPS // 10_000
    assert (delivered["released"], delivered["revenue"], delivered["fee"]) == (
        True,
        ETH // 10 - fee,
        fee,
    )
    assert delivered["delivered_at"] >= delivered["purchased_at"] > 0
    assert states[facts["pending"]]["state"] == "pending"
    assert states[facts["pending"]]["purchased_at"] > 0
    refunded = index.get_purchase(facts["refunded"])
    assert refunded["state"] == "refunded" and refunded["refund_amount"] == ETH // 25
    lazy = index.get_purchase(facts["lazy"])
    assert (lazy["kind"], lazy["state"], lazy["price"]) == ("validator", "delivered", 0)
    assert [p["purchase_id"] for p in index.pending_purchases()] == [facts["pending"]]
    assert index.pending_purchases([a]) == [] and index.pending_purchases([]) == []
    # The seller's sales not paid out yet: a's second sale (a's first was released; d's refunded).
    assert [p["purchase_id"] for p in index.unreleased_sales(seller)] == [facts["held"]]
    assert index.unreleased_sales(facts["other"]) == []  # b: refunded, and one still pending

    att = index.attestations_of(a)
    assert verdicts(att) == [(validator, 1, True, True, True, "verified")]
    assert att[0]["work_digest"] == "0x" + CLAIMED_DIGEST.hex() and att[0]["commitment"].startswith(
        "0x"
    )

    # d: round 1 undecided (a commit never revealed), round 2 settled it Metrics disputed.
    model = index.get_model(d)
    assert model["status"] == ModelStatus.METRICS_DISPUTED.word and model["round"] == 2
    assert [(r["round"], r["outcome"], r["revealed_weight"]) for r in index.rounds_of(d)] == [
        (1, "undecided", 0),
        (2, "metrics_disputed", None),
    ]
    assert verdicts(index.attestations_of(d)) == [
        (validator2, 2, True, True, False, "metrics_disputed"),
        (validator, 1, False, None, None, None),
    ]
    assert index.attestations_of(d)[0]["work_digest"] == "0x" + OTHER_DIGEST.hex()
    # Its buyer was refunded after the dispute: the licence's vote is gone from the score.
    assert (model["vote_count"], model["vote_weight"], model["score"]) == (0, 0, None)
    assert index.vote_histogram(d) == {s: 0 for s in range(1, 6)}
    assert index.get_purchase(facts["disputed_sale"])["state"] == "refunded"

    stakes = {v["address"]: v["stake"] for v in index.validators()}
    vals = chain.validators.functions
    forfeited = sum(e["args"]["forfeited"] for e in chain.events("SeatReleased"))
    assert forfeited > 0 and stakes[validator] == ETH // 5 - forfeited
    assert stakes == {v: chain.call(vals.stakeOf(v))[0] for v in (validator, validator2)}

    # Metadata: the failing CID is retried a bounded number of times, then left alone.
    for _ in range(4):
        index.load_metadata()
    assert loads.count(cid("meta 2")) == 3 and loads.count(cid("meta 0")) == 1

    before = index.dump()
    assert index.sync() == 0 and index.dump() == before  # idempotent

    assert before["listings_fts"] and before["listing_counts"]  # search text and totals dumped
    # From block 0 in big batches, metadata loaded after the listings (not before, as in rebuild).
    fresh = Indexer(chain, tmp_path / "fresh.sqlite3", batch_blocks=1000, metadata_loader=loader)
    fresh.sync()
    assert fresh.dump() == before
    index.rebuild()
    assert index.dump() == before
    checkpoint = index.checkpoint()[0]
    for back in (checkpoint - 3, checkpoint - 10, chain.deployment["block"]):
        index.rollback(back)
        assert index.checkpoint()[0] == back
        index.sync()
        assert index.dump() == before, f"rollback to {back} then sync differs"


def test_list_models_filters_sorts_pages(chain, tmp_path):
    facts = populate(chain)
    a, b, c, d = facts["models"]
    metas = {
        cid("meta 0"): {
            "name": "Sentiment BERT",
            "task": "text-classification",
            "description": "100% reviews",
        },
        cid("meta 1"): {"name": "Embedder", "task": "embeddings"},
    }
    index = Indexer(chain, tmp_path / "i.sqlite3", metadata_loader=metas.get)
    index.sync()
    rows, total = index.list_models()
    assert total == 3 and [r["model_id"] for r in rows] == [
        d,
        b,
        a,
    ]  # newest first, inactive hidden
    rows, total = index.list_models(active=None, sort="price")
    assert [r["model_id"] for r in rows] == [b, d, a, c] and total == 4
    assert [r["model_id"] for r in index.list_models(sort="score")[0]] == [a, d, b]  # no votes last
    assert [r["model_id"] for r in index.list_models(task="embeddings")[0]] == [b]
    assert [r["model_id"] for r in index.list_models(query="bert")[0]] == [a]
    assert [r["model_id"] for r in index.list_models(query="100%")[0]] == [a]
    assert index.list_models(query="_")[1] == 0  # LIKE wildcards are literal
    assert [r["model_id"] for r in index.list_models(status="verified")[0]] == [a]
    assert [r["model_id"] for r in index.list_models(status="metrics_disputed")[0]] == [d]
    assert index.list_models(status="metrics_disputed")[1] == 1
    assert [r["model_id"] for r in index.list_models(owner=facts["other"])[0]] == [b]
    rows, total = index.list_models(page=2, per_page=1)
    assert total == 3 and [r["model_id"] for r in rows] == [b]
    with pytest.raises(InvalidQuery, match="sort must be one of"):
        index.list_models(sort="random")


def test_confirmations_keep_the_index_behind_the_head(chain, tmp_path):
    seller = chain.w3.eth.accounts[1]
    index = Indexer(chain, tmp_path / "i.sqlite3", confirmations=2)
    index.sync()
    known = index.list_models(active=None)[1]
    chain.transact_unlocked(chain.registry.functions.list(model_hash(9), cid("x"), 1), seller)
    index.sync()
    assert index.list_models(active=None)[1] == known  # listed in the head block: not yet
    for _ in range(2):
        chain.transact_unlocked(chain.registry.functions.setPrice(1, 2), seller)
    index.sync()
    assert index.list_models(active=None)[1] == known + 1
    assert index.checkpoint()[0] == chain.block_number() - 2


def test_index_of_another_deployment_starts_over(tmp_path):
    w3 = embedded_web3()
    first, second = deploy(w3), deploy(w3)
    first.transact_unlocked(
        first.registry.functions.list(model_hash(1), cid("a"), 5), w3.eth.accounts[1]
    )
    path = tmp_path / "i.sqlite3"
    index = Indexer(first, path)
    index.sync()
    assert index.list_models()[1] == 1
    index.close()
    other = Indexer(second, path)
    assert other.checkpoint() is None and other.list_models()[1] == 0


def test_an_index_of_schema_4_keeps_its_log_and_rebuilds_its_tables_in_the_new_shape(tmp_path):
    """Opening an index written by schema 4 (before payment tokens and subscriptions) keeps its
    event log and checkpoint and replays the log into the new tables: the same tables as a
    fresh index, without reading the chain again. An older schema starts over from the chain."""
    chain = deploy(embedded_web3())
    populate(chain)
    path = tmp_path / "i.sqlite3"
    index = Indexer(chain, path)
    index.sync()
    fresh, events, checkpoint = index.dump(), index.event_count(), index.checkpoint()
    db = index._db()
    # Schema 4's shape: no payment token, subscription or token tables, and its schema number.
    db.execute("DROP TABLE subscriptions")
    db.execute("DROP TABLE tokens")
    new_columns = {"payment_token", "subscription_price", "subscription_period", "token"}
    for table in ("listings", "purchases", "withdrawals"):
        kept = [c[1] for c in db.execute(f"PRAGMA table_info({table})") if c[1] not in new_columns]
        db.execute(f"CREATE TABLE old AS SELECT {', '.join(kept)} FROM {table}")
        db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE old RENAME TO {table}")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema'")
    index.close()

    migrated = Indexer(chain, path)
    assert migrated.checkpoint() == checkpoint and migrated.event_count() == events
    assert migrated.dump() == fresh
    assert migrated.get_model(1)["token"]["symbol"] == "ETH"
    assert migrated._db().execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0] == (
        str(SCHEMA_VERSION)
    )
    assert migrated.sync() == 0  # nothing read again: the checkpoint stands
    migrated._db().execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    migrated.close()
    assert Indexer(chain, path).checkpoint() is None  # schema 3: read from the chain again


@pytest.mark.anvil
def test_reorg_rolls_back_to_the_fork_and_matches_a_fresh_index(anvil, tmp_path):
    w3 = connect(anvil.url)
    chain = deploy(w3)
    seller, buyer = w3.eth.accounts[1:3]
    reg, market = chain.registry, chain.marketplace
    chain.transact_unlocked(reg.functions.list(model_hash(1), cid("base"), ETH // 10), seller)
    index = Indexer(chain, tmp_path / "i.sqlite3", batch_blocks=3)
    index.sync()
    base_model = index.list_models()[0][0]["model_id"]

    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    doomed = chain.transact_unlocked(reg.functions.list(model_hash(2), cid("doomed"), 1), seller)
    doomed_id = reg.events.ModelListed().process_receipt(doomed, errors=DISCARD)[0]["args"][
        "modelId"
    ]
    chain.transact_unlocked(
        market.functions.buy(base_model, b"\x05" * 32, ETH // 10), buyer, value=ETH // 10
    )
    index.sync()
    assert index.get_model(doomed_id) is not None and len(index.pending_purchases()) == 1

    assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True
    # A different history at the same heights, and one block longer.
    chain.transact_unlocked(reg.functions.setPrice(base_model, ETH // 5), seller)
    chain.transact_unlocked(reg.functions.list(model_hash(3), cid("other"), 7), buyer)
    chain.transact_unlocked(reg.functions.setActive(base_model, False), seller)
    index.sync()

    fresh = Indexer(chain, tmp_path / "fresh.sqlite3")
    fresh.sync()
    assert index.dump() == fresh.dump()
    assert index.get_model(base_model)["price"] == ETH // 5
    assert index.get_model(doomed_id)["seller"] == buyer  # the id was reused by the new history
    assert index.pending_purchases() == []
    events = index._db().execute("SELECT args FROM events WHERE event = 'ModelListed'").fetchall()
    assert all(json.loads(e[0])["metadataCid"] != cid("doomed") for e in events)

    # A shorter chain than the checkpoint (revert without new blocks) is handled too.
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]
    chain.transact_unlocked(reg.functions.setPrice(base_model, 1), seller)
    index.sync()
    w3.provider.make_request("evm_revert", [snapshot])
    index.sync()
    assert index.get_model(base_model)["price"] == ETH // 5
    assert index.checkpoint()[0] == chain.block_number()


def test_models_and_index_commands(tmp_path, capsys):
    w3 = embedded_web3()
    chain = deploy(w3)
    deployment = write_deployment(chain.deployment, tmp_path / "deployments")
    store = open_store("embedded", root=tmp_path / "ipfs")
    meta = json.dumps(
        {
            "version": 1,
            "name": "Tiny BERT",
            "task": "text-classification",
            "model_hash": "0x" + model_hash(1).hex(),
        }
    ).encode()
    meta_cid = store.put(io.BytesIO(meta))
    seller = w3.eth.accounts[1]
    chain.transact_unlocked(
        chain.registry.functions.list(model_hash(1), meta_cid, ETH // 10), seller
    )
    chain.transact_unlocked(chain.registry.functions.list(model_hash(2), cid("gone"), ETH), seller)
    common = ["--chain", "embedded", "--deployment", str(deployment), "--data-dir", str(tmp_path)]

    assert main(["index", *common]) == 0
    assert "indexed" in capsys.readouterr().out
    assert main(["models", "--sort", "price", *common]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["ID", "NAME", "TASK", "PRICE"]
    assert "Tiny BERT" in out[1] and "0.1 ETH" in out[1] and "text-classification" in out[1]
    assert "(no metadata)" in out[2] and "1 ETH" in out[2]
    assert out[-1] == "1-2 of 2 models (active)"
    assert main(["models", "--json", "--query", "tiny", "--no-sync", *common]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["total"] == 1 and listed["models"][0]["price"] == ETH // 10
    assert main(["index", "--rebuild", *common]) == 0
    assert (
        main(
            [
                "models",
                "--chain",
                "embedded",
                "--deployment",
                str(tmp_path / "none.json"),
                "--data-dir",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "deploy the contracts first" in capsys.readouterr().err


def synthetic_index(tmp_path, n: int, name: str = "s.sqlite3") -> Indexer:
    """An index of n listings fed through its own log (ModelListed / StatusChanged events, then
    rebuild(); metadata through its loader): no chain transactions, so hundreds cost nothing."""
    chain = deploy(embedded_web3())
    tasks = ("text-classification", "embeddings")

    def loader(c):
        i = int(c.rsplit("-", 1)[1])
        return {
            "name": f"{'Sentiment' if i % 2 else 'Legal'} model {i}",
            "task": tasks[i % 3 == 0],
            "description": f"listing {i}: 100% synthetic",
        }

    index = Indexer(chain, tmp_path / name, metadata_loader=loader, metadata_per_sync=n)
    index.import_events(
        [
            (
                10 + i,
                0,
                "0x" + f"{i:064x}",
                "ModelRegistry",
                "ModelListed",
                {
                    "modelId": i,
                    "seller": "0x" + "5e" * 20,
                    "modelHash": "0x" + f"{i:064x}",
                    "metadataCid": f"cid-{i}",
                    "price": (i * 37 % 11) * 10**15,
                },
            )
            for i in range(1, n + 1)
        ]
        + [
            (
                10 + i,
                1,
                "0x" + f"{i:064x}",
                "Validators",
                "StatusChanged",
                {"modelId": i, "status": 1},
            )
            for i in range(1, n + 1)
            if i % 4 == 0
        ]
    )
    index.load_metadata()
    return index


def voted_events(scores: list[tuple[int, int]], price: int = 10**16) -> list[tuple]:
    """A delivered paid licence and a vote per (model, score), in the log's shape: a vote weighs
    the price of the voter's licence, so the index needs the purchase before the vote."""
    voter = "0x" + "77" * 20
    events = []
    for n, (model_id, score) in enumerate(scores, start=1):
        events += [
            (
                60 + n,
                0,
                "0x",
                "Marketplace",
                "Purchased",
                {
                    "purchaseId": 1000 + n,
                    "modelId": model_id,
                    "buyer": voter,
                    "price": price,
                    "buyerKey": "0x" + "00" * 32,
                },
            ),
            (
                60 + n,
                1,
                "0x",
                "Marketplace",
                "KeyDelivered",
                {"purchaseId": 1000 + n, "wrappedKey": "0x" + "00" * 80},
            ),
            (
                60 + n,
                2,
                "0x",
                "Votes",
                "Voted",
                {"modelId": model_id, "voter": voter, "score": score},
            ),
        ]
    return events


def ids(rows) -> list[int]:
    return [r["model_id"] for r in rows]


def test_search_never_raises_on_user_text(tmp_path):
    index = synthetic_index(tmp_path, 40)
    assert set(ids(index.list_models(query="sentiment", per_page=100)[0])) == set(range(1, 41, 2))
    assert ids(index.list_models(query="SENT* model 17")[0]) == [17]  # all words, any case
    assert index.list_models(query="sent mod")[1] == 0  # unstarred words match whole words
    assert index.list_models(query="sentiments")[1] == 20  # English stems
    assert ids(index.list_models(query="embed* 100%", task="embeddings", per_page=3)[0]) == [
        39,
        36,
        33,
    ]
    hostile = [
        '"a OR',
        "*",
        '"',
        "a OR b",
        "NOT",
        "NEAR(a b)",
        "name:legal",
        "legal AND",
        "(",
        ")",
        "^x",
        "-",
        "'; DROP TABLE listings; --",
        "\\",
        "%",
        "_",
        "ÿ\x00",
        "{a b}",
        "a" * 300,
        "x " * 100,
    ]
    for text in hostile:
        rows, total = index.list_models(query=text)
        assert len(rows) == min(total, 20), text
    assert index.list_models(query="*")[1] == 0 and index.list_models(query='"')[1] == 0
    assert ids(index.list_models(query="model:legal", per_page=1)[0]) == [40]  # words, no column
    assert index.list_models(query="   ")[1] == 40  # blank: no search at all


def test_filters_totals_and_capped_search_count(tmp_path, monkeypatch):
    index = synthetic_index(tmp_path, 60)
    rows, total = index.list_models(
        task="embeddings", status="verified", sort="price", per_page=100
    )
    assert total == len(rows) == 5 and all(
        r["task"] == "embeddings" and r["status"] == "verified" for r in rows
    )
    assert [r["price"] for r in rows] == sorted(r["price"] for r in rows)
    assert index.list_models(status="verified")[1] == 15
    assert index.list_models(task="text-classification")[1] == 40
    # Delisting moves a listing between the maintained counters.
    index.import_events(
        [(99, 0, "0x", "ModelRegistry", "ActiveChanged", {"modelId": 12, "active": False})]
    )
    assert index.list_models(task="embeddings", status="verified")[1] == 4
    assert index.list_models(active=False)[1] == 1 and index.list_models(active=None)[1] == 60
    assert 12 not in ids(index.list_models(task="embeddings", per_page=100)[0])
    few = {
        sort: ids(index.list_models(query="legal", sort=sort, per_page=100)[0])
        for sort in ("price", "score")
    }
    monkeypatch.setattr("node.indexer.queries.SEARCH_COUNT_CAP", 7)
    for sort, expected in few.items():  # more matches than the cap: read in the sort's index
        assert ids(index.list_models(query="legal", sort=sort, per_page=100)[0]) == expected
        assert len(expected) == 29
    total = index.list_models(query="legal")[1]
    assert (int(total), total.capped, str(total)) == (7, True, "7+")
    total = index.list_models(query="legal 12")[1]  # delisted: not counted
    assert (int(total), total.capped) == (0, False)


def test_the_price_sort_never_compares_amounts_in_different_tokens(tmp_path):
    """5 mUSD (5,000,000 base units, 6 decimals) must not sort below 0.1 ETH (10^17 wei): the
    price sort groups listings by payment token, ETH first, and orders by amount only within a
    token (equal prices: newest first); cursor pages cross from one group to the next."""
    musd = to_checksum_address("0x" + "ab" * 20)
    zero = "0x" + "00" * 20
    listed = {1: (zero, ETH // 10), 2: (musd, 5_000_000), 3: (zero, ETH // 50)}
    listed |= {4: (musd, 500_000), 5: (zero, 0), 6: (musd, 5_000_000)}
    events = []
    for model_id, (token, price) in listed.items():
        events.append(
            (
                10 + model_id,
                0,
                "0x",
                "ModelRegistry",
                "ModelListed",
                {
                    "modelId": model_id,
                    "seller": "0x" + "5e" * 20,
                    "modelHash": "0x" + f"{model_id:064x}",
                    "metadataCid": f"cid-{model_id}",
                    "price": price,
                },
            )
        )
        if token != zero:
            events.append(
                (
                    10 + model_id,
                    1,
                    "0x",
                    "ModelRegistry",
                    "PaymentTokenChanged",
                    {"modelId": model_id, "token": token},
                )
            )
    index = Indexer(deploy(embedded_web3()), tmp_path / "i.sqlite3")
    index.import_events(events)
    rows, total = index.list_models(sort="price")
    assert total == 6
    assert ids(rows) == [5, 3, 1, 4, 6, 2]  # ETH by wei, then mUSD by its base units
    assert [r["token"]["address"] for r in rows] == [zero] * 3 + [musd] * 3
    for per_page in (1, 2, 4):
        seen, cursor = [], None
        while True:
            page, _ = index.list_models(sort="price", per_page=per_page, after=cursor)
            seen += ids(page)
            if (cursor := page.next_cursor) is None:
                break
        assert seen == [5, 3, 1, 4, 6, 2], per_page
    assert ids(index.list_models(sort="price", page=2, per_page=2)[0]) == [1, 4]


@pytest.mark.parametrize("sort", ["newest", "price", "score"])
def test_cursor_pages_skip_and_repeat_nothing_while_listings_arrive(tmp_path, sort):
    index = synthetic_index(tmp_path, 45)
    index.import_events(voted_events([(i, 1 + i % 5) for i in range(1, 46, 3)]))
    expected = ids(index.list_models(sort=sort, per_page=500)[0])
    seen, cursor, arrived = [], None, 45
    while True:
        rows, _ = index.list_models(sort=sort, per_page=7, after=cursor)
        seen += ids(rows)
        cursor = rows.next_cursor
        if cursor is None:
            break
        arrived += 1  # a new listing (cheapest price, no votes) arrives between two pages
        index.import_events(
            [
                (
                    100 + arrived,
                    0,
                    "0x",
                    "ModelRegistry",
                    "ModelListed",
                    {
                        "modelId": arrived,
                        "seller": "0x" + "5e" * 20,
                        "modelHash": "0x" + "00" * 32,
                        "metadataCid": f"cid-{arrived}",
                        "price": 0,
                    },
                )
            ]
        )
    assert len(seen) == len(set(seen)), "a row was repeated"
    assert set(expected) <= set(seen), "a row was skipped"
    assert [i for i in seen if i <= 45] == expected  # the original rows in their order
    # page= reaches the same rows as the cursor did on an unchanged index.
    assert ids(index.list_models(sort=sort, page=2, per_page=7)[0]) == ids(
        index.list_models(
            sort=sort, per_page=7, after=index.list_models(sort=sort, per_page=7)[0].next_cursor
        )[0]
    )
    # Search pages by cursor as well.
    first = index.list_models(query="legal", sort=sort, per_page=4)[0]
    second = index.list_models(query="legal", sort=sort, per_page=4, after=first.next_cursor)[0]
    assert not set(ids(first)) & set(ids(second)) and len(second) == 4
    with pytest.raises(InvalidQuery, match="start again from the first page"):
        index.list_models(sort=sort, after="not-a-cursor")
    other = "price" if sort != "price" else "newest"
    with pytest.raises(InvalidQuery, match=f"for sort={sort}"):
        index.list_models(sort=other, after=first.next_cursor)
    with pytest.raises(InvalidQuery, match="either page or after"):
        index.list_models(sort=sort, page=2, after=first.next_cursor)


def test_two_indexers_on_one_database_never_apply_a_range_twice(tmp_path):
    """`modex up` follows the chain while `modex index` runs on the same data folder: both read
    the checkpoint, both fetch the same blocks; the second to commit must not apply them again
    (it failed with sqlite3.IntegrityError on the events' primary key)."""
    chain = deploy(embedded_web3())
    populate(chain)
    db = tmp_path / "i.sqlite3"
    first, second = Indexer(chain, db), Indexer(chain, db)
    reference = Indexer(chain, tmp_path / "ref.sqlite3")
    reference.sync()
    real_get_logs = chain.get_logs

    class RacingChain:
        """``second``'s chain: ``first`` commits the same range while ``second`` reads it."""

        def __getattr__(self, name):
            return getattr(chain, name)

        def get_logs(self, params, **kw):
            logs = real_get_logs(params, **kw)
            if not first.checkpoint():
                first.sync()
            return logs

    second.chain = RacingChain()
    second.sync()
    assert second.checkpoint() == first.checkpoint() == reference.checkpoint()
    assert first.dump() == reference.dump()


def test_from_config_indexes_into_the_configured_database_with_names_from_the_store(tmp_path):
    chain = deploy(embedded_web3())
    store = open_store("embedded", root=tmp_path / "ipfs")
    meta = {"version": 1, "name": "Tiny BERT", "task": "text-classification"}
    meta_cid = store.put(io.BytesIO(json.dumps(meta).encode()))
    seller = chain.w3.eth.accounts[1]
    chain.transact_unlocked(chain.registry.functions.list(model_hash(1), meta_cid, ETH), seller)
    chain.transact_unlocked(chain.registry.functions.list(model_hash(2), cid("later"), 1), seller)
    config = Config(data_dir=tmp_path, index_db="elsewhere/i.sqlite3", confirmations=1)

    index = Indexer.from_config(config, chain, store=store)
    index.sync()
    assert index.db_path == tmp_path / "elsewhere" / "i.sqlite3" and index.db_path.is_file()
    rows, total = index.list_models()
    assert total == 1  # the second listing is in the head block: one confirmation to go
    assert (rows[0]["name"], rows[0]["task"]) == ("Tiny BERT", "text-classification")
    assert Indexer.from_config(config, chain).metadata_loader is None  # no store: no names
