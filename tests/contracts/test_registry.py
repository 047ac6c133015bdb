"""ModelRegistry: listing, owner-only setters, views, CID storage and transfer semantics."""

import pytest
from conftest import CID_V1, CLAIM, MODEL_HASH, PRICE

from node.errors import ContractRevert
from node.protocol import FAILED_WORK_DIGEST, ZERO32
from node.revert import decoded_reverts

CID_V0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
CID_V1_DAGPB = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"


def test_list_emits_and_stores(chain):
    seller = chain.accounts[1]
    receipt = chain.send(
        chain.registry.functions.list(MODEL_HASH, CID_V1, PRICE), seller
    )  # no claim yet
    (ev,) = chain.events(receipt, chain.registry, "ModelListed")
    assert ev == {
        "modelId": 1,
        "seller": seller,
        "modelHash": MODEL_HASH,
        "metadataCid": CID_V1,
        "price": PRICE,
    }
    (tr,) = chain.events(receipt, chain.registry, "Transfer")
    assert tr["to"] == seller and tr["tokenId"] == 1
    r = chain.registry.functions
    assert r.ownerOf(1).call() == seller
    assert r.modelHash(1).call() == MODEL_HASH
    assert r.metadataCid(1).call() == CID_V1
    assert r.tokenURI(1).call() == "ipfs://" + CID_V1
    assert r.price(1).call() == PRICE
    assert r.isActive(1).call() is True
    assert r.operatorOf(1).call() == "0x" + "00" * 20
    assert r.name().call() == "Modex Model" and r.symbol().call() == "MODEX"
    assert r.modelCount().call() == 1
    assert r.claimedWorkDigest(1).call() == ZERO32
    assert r.attestationTarget(1).call() == [MODEL_HASH, ZERO32, 0]


@pytest.mark.parametrize(
    "cid", [CID_V1, CID_V1_DAGPB, CID_V0, "bafkrei" + "a" * 52, "not-a-cid", "b" * 59]
)
def test_any_cid_round_trips(chain, cid):
    """Compact CIDv1 storage and the string fallback both give back exactly what was listed."""
    model_id = chain.list_model(chain.accounts[1], cid=cid)
    assert chain.registry.functions.metadataCid(model_id).call() == cid


def test_list_rejects_bad_input(chain):
    f, seller = chain.registry.functions, chain.accounts[1]
    chain.expect_revert(f.list(b"\0" * 32, CID_V1, 1), seller, "ModelRegistryZeroModelHash")
    chain.expect_revert(f.list(MODEL_HASH, "", 1), seller, "ModelRegistryEmptyCid")
    chain.expect_revert(
        f.list(MODEL_HASH, "x" * 129, 1),
        seller,
        "ModelRegistryCidTooLong",
        length=129,
        maxLength=128,
    )
    chain.expect_revert(
        f.list(MODEL_HASH, CID_V1, 2**80),
        seller,
        "ModelRegistryPriceTooHigh",
        price=2**80,
        maxPrice=2**80 - 1,
    )


def test_owner_setters_emit(chain):
    seller, worker = chain.accounts[1], chain.accounts[5]
    mid = chain.list_model(seller)
    f = chain.registry.functions
    rc = chain.send(f.setPrice(mid, 5), seller)
    assert chain.events(rc, chain.registry, "PriceChanged") == [{"modelId": mid, "price": 5}]
    assert f.price(mid).call() == 5
    rc = chain.send(f.setActive(mid, False), seller)
    assert chain.events(rc, chain.registry, "ActiveChanged") == [{"modelId": mid, "active": False}]
    assert f.isActive(mid).call() is False
    rc = chain.send(f.setOperator(mid, worker), seller)
    assert chain.events(rc, chain.registry, "OperatorChanged") == [
        {"modelId": mid, "operator": worker}
    ]
    assert f.operatorOf(mid).call() == worker
    assert f.saleTerms(mid).call() == [5, False, seller]
    assert f.deliveryParties(mid).call() == [seller, worker]


def test_setters_are_owner_only(chain):
    seller, other = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller)
    f = chain.registry.functions
    for fn in (
        f.setPrice(mid, 1),
        f.setActive(mid, False),
        f.setOperator(mid, other),
        f.claimMetrics(mid, CLAIM),
    ):
        chain.expect_revert(
            fn, other, "ModelRegistryNotOwner", modelId=mid, caller=other, owner=seller
        )
    chain.expect_revert(f.setPrice(mid, 2**80), seller, "ModelRegistryPriceTooHigh")


def test_unknown_model_views_revert(chain):
    f, a = chain.registry.functions, chain.accounts[1]
    for fn in (
        f.setPrice(7, 1),
        f.setActive(7, True),
        f.setOperator(7, a),
        f.claimMetrics(7, CLAIM),
    ):
        chain.expect_revert(fn, a, "ERC721NonexistentToken", tokenId=7)
    for view in (
        f.modelHash(7),
        f.metadataCid(7),
        f.price(7),
        f.isActive(7),
        f.operatorOf(7),
        f.tokenURI(7),
        f.saleTerms(7),
        f.deliveryParties(7),
        f.claimedWorkDigest(7),
        f.attestationTarget(7),
    ):
        with pytest.raises(ContractRevert) as info, decoded_reverts():
            view.call()
        assert info.value.context["error"] == "ERC721NonexistentToken"
        assert str(info.value) == "There is no model 7."


def test_transfer_moves_listing_and_clears_operator(chain):
    seller, buyer2, worker = chain.accounts[1], chain.accounts[2], chain.accounts[5]
    mid = chain.list_model(seller)
    chain.send(chain.registry.functions.setOperator(mid, worker), seller)
    rc = chain.send(chain.registry.functions.transferFrom(seller, buyer2, mid), seller)
    assert chain.events(rc, chain.registry, "OperatorChanged") == [
        {"modelId": mid, "operator": "0x" + "00" * 20}
    ]
    assert chain.registry.functions.deliveryParties(mid).call() == [buyer2, "0x" + "00" * 20]
    chain.expect_revert(chain.registry.functions.setPrice(mid, 1), seller, "ModelRegistryNotOwner")
    chain.send(chain.registry.functions.setPrice(mid, 1), buyer2)


def test_erc721_balances_and_approvals_with_the_owner_in_the_listing(chain):
    """ModelRegistry replaces OpenZeppelin's owner and balance storage (_ownerOf/_update/balanceOf):
    balances, single and operator approvals, and the receiver checks still behave as ERC-721 says."""
    seller, other, spender, operator = (
        chain.accounts[1],
        chain.accounts[2],
        chain.accounts[3],
        chain.accounts[4],
    )
    f = chain.registry.functions
    m1, m2 = chain.list_model(seller), chain.list_model(seller)
    assert (f.balanceOf(seller).call(), f.balanceOf(other).call()) == (2, 0)
    chain.expect_revert(
        f.transferFrom(seller, other, m1),
        spender,
        "ERC721InsufficientApproval",
        operator=spender,
        tokenId=m1,
    )
    chain.send(f.approve(spender, m1), seller)
    assert f.getApproved(m1).call() == spender
    chain.send(f.transferFrom(seller, other, m1), spender)
    assert (
        f.ownerOf(m1).call() == other and f.getApproved(m1).call() == "0x" + "00" * 20
    )  # approval cleared
    assert (f.balanceOf(seller).call(), f.balanceOf(other).call()) == (1, 1)
    chain.expect_revert(f.transferFrom(other, seller, m1), spender, "ERC721InsufficientApproval")
    chain.send(f.setApprovalForAll(operator, True), seller)
    err = chain.expect_revert(
        f.transferFrom(other, seller, m2), operator, "ERC721IncorrectOwner", tokenId=m2
    )
    assert (err.context["args"]["sender"], err.context["args"]["owner"]) == (other, seller)
    chain.expect_revert(
        f.transferFrom(seller, "0x" + "00" * 20, m2), operator, "ERC721InvalidReceiver"
    )
    chain.expect_revert(
        f.safeTransferFrom(seller, chain.registry.address, m2),
        operator,
        "ERC721InvalidReceiver",
        receiver=chain.registry.address,
    )
    chain.send(f.safeTransferFrom(seller, other, m2), operator)
    assert (f.balanceOf(seller).call(), f.balanceOf(other).call()) == (0, 2)
    assert (
        f.saleTerms(m2).call() == [PRICE, True, other] and f.deliveryParties(m2).call()[0] == other
    )
    chain.expect_revert(f.ownerOf(99), seller, "ERC721NonexistentToken", tokenId=99)
    chain.expect_revert(f.balanceOf("0x" + "00" * 20), seller, "ERC721InvalidOwner")


def test_claim_metrics_records_the_digest_and_when_and_is_final(chain):
    """The seller's work digest is on-chain with its time: a claim counts only for rounds opened no
    earlier (Validators compares claimedAt with the round's opening). A claim is final: a model
    Verified against one claim can never show another."""
    seller = chain.accounts[1]
    mid = chain.list_model(seller, claim=None)
    f = chain.registry.functions
    rc = chain.send(f.claimMetrics(mid, CLAIM), seller)
    assert chain.events(rc, chain.registry, "MetricsClaimed") == [
        {"modelId": mid, "workDigest": CLAIM}
    ]
    first = chain.now()
    assert f.claimedWorkDigest(mid).call() == CLAIM
    assert f.attestationTarget(mid).call() == [MODEL_HASH, CLAIM, first]
    chain.travel(100)
    chain.expect_revert(
        f.claimMetrics(mid, b"\x34" * 32),
        seller,
        "ModelRegistryAlreadyClaimed",
        modelId=mid,
        workDigest="0x" + CLAIM.hex(),
    )
    assert f.attestationTarget(mid).call() == [MODEL_HASH, CLAIM, first]


def test_claim_metrics_refuses_the_zero_and_failure_digests(chain):
    seller = chain.accounts[1]
    mid = chain.list_model(seller, claim=None)
    f = chain.registry.functions
    for digest in (ZERO32, FAILED_WORK_DIGEST):
        chain.expect_revert(
            f.claimMetrics(mid, digest),
            seller,
            "ModelRegistryBadWorkDigest",
            workDigest="0x" + digest.hex(),
        )
    assert f.attestationTarget(mid).call() == [MODEL_HASH, ZERO32, 0]
    assert chain.registry.functions.FAILED_WORK_DIGEST().call() == FAILED_WORK_DIGEST


def test_a_new_owner_claims_and_the_old_one_no_longer_can(chain):
    seller, new_owner = chain.accounts[1], chain.accounts[2]
    mid = chain.list_model(seller, claim=None)
    f = chain.registry.functions
    chain.send(f.transferFrom(seller, new_owner, mid), seller)
    chain.expect_revert(
        f.claimMetrics(mid, CLAIM), seller, "ModelRegistryNotOwner", owner=new_owner
    )
    chain.send(f.claimMetrics(mid, b"\x35" * 32), new_owner)
    assert f.claimedWorkDigest(mid).call() == b"\x35" * 32
