"""Votes' reviews, reports and the anchor of private feedback (issue 15 §2, §3): a review's score
counts exactly as a vote, reports and feedback need access (a licence or a live subscription),
feedback is anchored once and withdrawn only by its sender."""

from conftest import PRICE

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"
OTHER_CID = "bafkreidon73zkcrwdb5iafqtijxildoonbwnpv7dyd6ef3qdgads2jc4su"


def licensed(chain, buyer, price=PRICE):
    seller = chain.accounts[1]
    mid = chain.list_model(seller, price=price)
    chain.deliver(seller, chain.buy(buyer, mid, price))
    return mid


def subscribed(chain, account):
    """A model ``account`` holds a one-day subscription to (and no licence)."""
    seller = chain.accounts[1]
    mid = chain.list_model(seller)
    chain.send(chain.registry.functions.setSubscription(mid, 10**15, 86400), seller)
    chain.send(chain.market.functions.subscribe(mid, 1, 10**15), account, value=10**15)
    return mid


def test_a_review_is_a_vote_with_a_document(chain):
    b1, b2 = chain.accounts[2], chain.accounts[3]
    mid = licensed(chain, b1)
    chain.deliver(chain.accounts[1], chain.buy(b2, mid))
    v = chain.votes.functions
    chain.send(v.vote(mid, 1), b1)
    rc = chain.send(v.review(mid, 4, CID), b1)  # replaces the live vote, same weight
    assert chain.events(rc, chain.votes, "Reviewed") == [
        {"modelId": mid, "reviewer": b1, "score": 4, "reviewCid": CID}
    ]
    assert chain.events(rc, chain.votes, "Voted") == []
    chain.send(v.vote(mid, 2), b2)
    assert v.scoreOf(mid).call() == [4 * PRICE + 2 * PRICE, 2 * PRICE, 2]
    assert v.voteOf(mid, b1).call() == 4
    chain.send(v.review(mid, 5, OTHER_CID), b2)  # a review after a vote replaces it too
    assert v.scoreOf(mid).call() == [4 * PRICE + 5 * PRICE, 2 * PRICE, 2]


def test_review_refusals(chain):
    buyer, stranger = chain.accounts[2], chain.accounts[4]
    mid = licensed(chain, buyer)
    v = chain.votes.functions
    chain.expect_revert(v.review(mid, 0, CID), buyer, "VotesScoreOutOfRange", score=0)
    chain.expect_revert(v.review(mid, 6, CID), buyer, "VotesScoreOutOfRange", score=6)
    chain.expect_revert(v.review(mid, 3, ""), buyer, "VotesEmptyCid")
    chain.expect_revert_with(v.review(mid, 3, CID), stranger, "VotesNoLicense", (mid, stranger))
    # a subscription gives access, not a vote: no review either
    sub = subscribed(chain, stranger)
    chain.expect_revert_with(v.review(sub, 3, CID), stranger, "VotesNoLicense", (sub, stranger))
    free = licensed(chain, buyer, price=0)  # a free licence holds no vote
    chain.expect_revert_with(v.review(free, 3, CID), buyer, "VotesNoLicense", (free, buyer))
    assert v.scoreOf(mid).call() == [0, 0, 0]


def test_report_needs_access(chain):
    buyer, subscriber, stranger = chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = licensed(chain, buyer)
    v = chain.votes.functions
    rc = chain.send(v.report(mid, CID), buyer)
    assert chain.events(rc, chain.votes, "Reported") == [
        {"modelId": mid, "reporter": buyer, "reasonCid": CID}
    ]
    chain.expect_revert_with(v.report(mid, CID), stranger, "VotesNoAccess", (mid, stranger))
    chain.expect_revert(v.report(mid, ""), buyer, "VotesEmptyCid")
    sub = subscribed(chain, subscriber)
    chain.send(v.report(sub, CID), subscriber)  # a live subscription is access
    chain.travel(86400 + 1)
    chain.expect_revert_with(v.report(sub, CID), subscriber, "VotesNoAccess", (sub, subscriber))
    pending = chain.accounts[5]
    chain.buy(pending, mid)  # paid, key not delivered: no access yet
    chain.expect_revert(v.report(mid, CID), pending, "VotesNoAccess")


def test_feedback_anchor_and_withdrawal(chain):
    buyer, other, stranger = chain.accounts[2], chain.accounts[3], chain.accounts[4]
    mid = licensed(chain, buyer)
    chain.deliver(chain.accounts[1], chain.buy(other, mid))
    v = chain.votes.functions
    chain.expect_revert_with(v.sendFeedback(mid, CID), stranger, "VotesNoAccess", (mid, stranger))
    assert v.feedbackSender(mid, CID).call() == "0x" + "00" * 20
    rc = chain.send(v.sendFeedback(mid, CID), buyer)
    assert chain.events(rc, chain.votes, "FeedbackSent") == [
        {"modelId": mid, "sender": buyer, "itemCid": CID}
    ]
    assert v.feedbackSender(mid, CID).call() == buyer
    chain.expect_revert_with(
        v.sendFeedback(mid, CID), other, "VotesFeedbackAlreadySent", (mid, CID, buyer)
    )
    chain.expect_revert_with(
        v.withdrawFeedback(mid, CID), other, "VotesNotFeedbackSender", (mid, CID, other)
    )
    chain.expect_revert_with(
        v.withdrawFeedback(mid, OTHER_CID), buyer, "VotesNotFeedbackSender", (mid, OTHER_CID, buyer)
    )
    assert v.feedbackWithdrawn(mid, CID).call() is False
    rc = chain.send(v.withdrawFeedback(mid, CID), buyer)
    assert chain.events(rc, chain.votes, "FeedbackWithdrawn") == [
        {"modelId": mid, "sender": buyer, "itemCid": CID}
    ]
    assert v.feedbackWithdrawn(mid, CID).call() is True
    chain.expect_revert_with(
        v.withdrawFeedback(mid, CID), buyer, "VotesFeedbackAlreadyWithdrawn", (mid, CID)
    )
    # the same CID for another model is another item
    sub = subscribed(chain, other)
    chain.send(v.sendFeedback(sub, CID), other)
    assert v.feedbackSender(sub, CID).call() == other
