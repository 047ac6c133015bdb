"""The sentences of node/revert.py: for each custom error a Modex contract can revert with, what
happened (with the numbers) and what to do. ``MESSAGES`` maps an error's name to a function of its
decoded arguments; node/revert.py picks the sentence when it decodes a revert.

One block per contract (ModelRegistry, Marketplace, MockStablecoin, Channels, Votes, Validators),
then the OpenZeppelin errors the contracts inherit. tests/contracts/test_revert_sentences.py and
tests/contracts/test_channels.py check that every error has a sentence that renders.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from node.amounts import fmt_eth
from node.protocol import ModelStatus, PurchaseStatus
from node.versions import update_window_words

PANIC_CODES = {
    0x01: "an assertion failed",
    0x11: "an arithmetic overflow or underflow",
    0x12: "a division by zero",
    0x21: "an invalid enum value",
    0x31: "pop on an empty array",
    0x32: "an array index out of bounds",
    0x41: "too much memory",
    0x51: "a call to an invalid function",
}


def _status(enum, value) -> str:
    """A status number from a revert as its word ("refunded"); an unknown number as itself."""
    try:
        return enum(value).word.replace("_", " ")
    except ValueError:
        return str(value)


def when(timestamp: int) -> str:
    """A block timestamp as a person reads it: ``2026-05-01 12:00:00 UTC``."""
    return f"{datetime.fromtimestamp(int(timestamp), UTC):%Y-%m-%d %H:%M:%S} UTC"


def _nothing_charged(sentence: str) -> Callable[[dict], str]:
    return lambda a: sentence.format(**a) + " Nothing was charged."


def _token_name(token: str) -> str:
    """A payment token in a sentence: ETH for the zero address, else "token 0x..."."""
    return "ETH" if int(token, 16) == 0 else f"token {token}"


# Sentences that errors of several contracts share, each with its own contract, caller or action.
def _only_caller(who: str, action: str) -> Callable[[dict], str]:
    """A function only `who` (another Modex contract) may call was called by someone else."""
    return lambda a: f"Only {who} may {action}, not {a['caller']}."


def _bad_config(contract: str) -> Callable[[dict], str]:
    return lambda a: f"Bad {contract} constructor argument: {a['what']}."


def _already_connected(contract: str, arg: str) -> Callable[[dict], str]:
    """The Marketplace's one-time link to another contract (argument `arg`) is already set."""
    return lambda a: (
        f"The {contract} contract is already connected ({a[arg]}); it can be set only once."
    )


def _cannot(arg: str, action: str) -> Callable[[dict], str]:
    """An ERC-20 refused an address (argument `arg`) in a role it cannot have."""
    return lambda a: f"{a[arg]} cannot {action}."


# One sentence per error: what happened (with the numbers) and what to do.
MESSAGES: dict[str, Callable[[dict], str]] = {
    # ModelRegistry
    "ModelRegistryNotOwner": lambda a: (
        f"Only the owner of model {a['modelId']} ({a['owner']}) can change it; {a['caller']} is not the owner."
    ),
    "ModelRegistryZeroModelHash": lambda a: (
        "The model hash is zero: compute it from the model directory first."
    ),
    "ModelRegistryEmptyCid": lambda a: (
        "The metadata CID is empty: pin the metadata JSON first and pass its CID."
    ),
    "ModelRegistryCidTooLong": lambda a: (
        f"The metadata CID is {a['length']} characters long; at most {a['maxLength']} are accepted."
    ),
    "ModelRegistryPriceTooHigh": lambda a: (
        f"A price of {fmt_eth(a['price'])} is above the largest accepted price ({fmt_eth(a['maxPrice'])})."
    ),
    "ModelRegistryBadWorkDigest": lambda a: (
        f"{a['workDigest']} cannot be claimed as a work digest (zero, or the reserved failure digest): claim the "
        f"SHA-256 of your own evaluation report (`modex evaluate` prints it)."
    ),
    "ModelRegistryAlreadyClaimed": lambda a: (
        f"Model {a['modelId']} already claims the work digest {a['workDigest']}; a claim is final (a model verified "
        f"against one claim can never show another). To claim a new evaluation, publish its model as a new version "
        f"(`modex publish --new-version {a['modelId']} DIR`): each version has its own claim."
    ),
    "ModelRegistryNotAToken": lambda a: (
        f"{a['token']} is not a token contract (no code there): pass the ERC-20's address, or the zero "
        f"address to price the model in ETH."
    ),
    "ModelRegistryNoSuchVersion": lambda a: (
        f"Model {a['modelId']} has versions 1 to {a['versionCount']}, not {a['version']}: `modex versions "
        f"{a['modelId']}` lists them."
    ),
    "ModelRegistryBadPeriod": lambda a: (
        f"A subscription at {a['pricePerPeriod']} per period needs a period of at least one second, not "
        f"{a['periodSeconds']}; a price of 0 withdraws the offer."
    ),
    # Marketplace
    "MarketplaceModelInactive": lambda a: (
        f"Model {a['modelId']} is not for sale right now (its seller deactivated it); nothing was charged."
    ),
    "MarketplaceModelDisputed": lambda a: (
        f"Model {a['modelId']} is disputed by validators (its files, or its claimed metrics, are not what was "
        f"listed): it cannot be bought, a purchase still pending can no longer be delivered, and a sale "
        f"delivered within its challenge period is refunded to its buyer instead of paid to the seller; "
        f"such a buyer can refund now (`modex refund PURCHASE_ID`). Nothing was charged."
    ),
    "MarketplacePriceAboveMax": lambda a: (
        f"Price is {fmt_eth(a['price'])}, above your maximum of {fmt_eth(a['maxPrice'])}; nothing was charged."
    ),
    "MarketplaceWrongPayment": lambda a: (
        f"Model {a['modelId']} costs exactly {fmt_eth(a['price'])} but {fmt_eth(a['sent'])} was sent; "
        f"nothing was charged — send the exact price."
    ),
    "MarketplaceZeroBuyerKey": lambda a: (
        "The encryption public key is zero: derive it from your wallet (docs/formats.md §4); nothing was charged."
    ),
    "MarketplaceAlreadyLicensed": lambda a: (
        f"{a['account']} already received the key for model {a['modelId']}; nothing was charged."
    ),
    "MarketplacePurchasePending": lambda a: (
        f"Purchase {a['purchaseId']} of this model is still waiting for its key (until {when(a['deadline'])}); "
        f"wait for delivery, or refund it after the deadline. Nothing was charged."
    ),
    "MarketplaceNotValidator": lambda a: (
        f"{a['account']} is not an active validator: stake at least the minimum in Validators first."
    ),
    "MarketplaceUnknownPurchase": lambda a: f"There is no purchase {a['purchaseId']}.",
    "MarketplaceNotPending": lambda a: (
        f"Purchase {a['purchaseId']} is {_status(PurchaseStatus, a['status'])}, not pending, "
        f"so nothing more can be done with it."
    ),
    "MarketplaceWrongBuyer": lambda a: (
        f"Purchase {a['purchaseId']} belongs to {a['expected']}, not {a['given']} (after a reorg a purchase id "
        f"can name another buyer): the key was wrapped for the wrong account and was not delivered."
    ),
    "MarketplaceNotDeliverer": lambda a: (
        f"{a['caller']} may not deliver the key of purchase {a['purchaseId']}: only the model's owner or "
        f"its operator can (see setOperator)."
    ),
    "MarketplaceDeliveryWindowClosed": lambda a: (
        f"The delivery window of purchase {a['purchaseId']} closed at {when(a['deadline'])}; "
        f"the buyer can now take a refund."
    ),
    "MarketplaceDeliveryWindowOpen": lambda a: (
        f"Purchase {a['purchaseId']} can still be delivered until {when(a['deadline'])}; "
        f"a refund is possible only after that (or at once if validators dispute the model)."
    ),
    "MarketplaceBadWrappedKey": lambda a: (
        f"The wrapped key is {a['length']} bytes; it must be {a['expected']} (HPKE enc || ciphertext, docs/formats.md §4)."
    ),
    "MarketplaceNotBuyer": lambda a: (
        f"Only the buyer of purchase {a['purchaseId']} can refund it, not {a['caller']}."
    ),
    "MarketplaceNotRefundable": lambda a: (
        f"Purchase {a['purchaseId']} was delivered: it is refundable only when validators dispute its model "
        f"within the sale's challenge period, while the seller's revenue is still held (not the case here, "
        f"or it was a free licence). Nothing was sent."
    ),
    "MarketplaceNothingToRelease": lambda a: (
        f"Purchase {a['purchaseId']} has no revenue to release: it is not delivered, was free, refunded, or "
        f"already paid out."
    ),
    "MarketplaceRevenueHeld": lambda a: (
        f"The revenue of purchase {a['purchaseId']} is held until {when(a['challengeEnd'])} (its challenge "
        f"period, during which a dispute refunds the buyer); release it after that."
    ),
    "MarketplaceNothingToWithdraw": lambda a: f"{a['account']} has nothing to withdraw.",
    "MarketplaceTransferFailed": lambda a: (
        f"Sending {fmt_eth(a['amount'])} to {a['account']} failed (the receiver rejected it); the balance stays "
        f"credited — withdraw again from an account that accepts ETH."
    ),
    "MarketplaceFeeTooHigh": lambda a: (
        f"A fee of {a['feeBps']} basis points is above the cap of {a['maxFeeBps']}."
    ),
    "MarketplaceZeroAddress": lambda a: "The zero address is not allowed here.",
    "MarketplaceValidatorsAlreadySet": _already_connected("Validators", "validators"),
    "MarketplaceOnlyValidators": _only_caller("the Validators contract", "record verdicts"),
    "MarketplaceVotesAlreadySet": _already_connected("Votes", "votes"),
    "MarketplaceOnlyVotes": _only_caller("the Votes contract", "record votes"),
    "MarketplaceNotVerifier": lambda a: (
        f"{a['account']} is not one of the validators that verified model {a['modelId']}, so it has no reward."
    ),
    "MarketplaceNothingToClaim": lambda a: (
        f"{a['account']} has no new reward for model {a['modelId']}; rewards grow with each delivered sale."
    ),
    "MarketplaceBadConfig": _bad_config("Marketplace"),
    "MarketplaceTokenPriceAboveMax": lambda a: (
        f"Model {a['modelId']} costs {a['price']} of token {a['token']} (in its smallest unit), above your "
        f"maximum of {a['maxPrice']}; nothing was charged."
    ),
    "MarketplaceEthSentForToken": lambda a: (
        f"Model {a['modelId']} is priced in token {a['token']}, but {fmt_eth(a['sent'])} was sent: send no "
        f"ETH and approve the Marketplace for the price in the token instead. Nothing was charged."
    ),
    "MarketplaceTokenAmountMismatch": lambda a: (
        f"Token {a['token']} delivered {a['received']} instead of {a['expected']} (a fee on transfer, or a "
        f"rebasing token): the Marketplace accepts only tokens that move exact amounts. Nothing was charged."
    ),
    "MarketplaceNotPricedInToken": lambda a: (
        f"Model {a['modelId']} is priced in ETH: buy it with `buy` and the price as value, not with a permit."
    ),
    "MarketplacePermitFailed": lambda a: (
        f"The permit for token {a['token']} was refused (a wrong signature, nonce or deadline) and the "
        f"Marketplace's allowance is {a['allowance']}, below the {a['needed']} needed: sign a new permit or "
        f"approve the Marketplace first. Nothing was charged."
    ),
    "MarketplaceNoSubscription": lambda a: (
        f"Model {a['modelId']} offers no subscription (its owner sets one with setSubscription); nothing "
        f"was charged."
    ),
    "MarketplaceBadPeriods": lambda a: (
        f"{a['periods']} periods cannot be bought: subscribe for at least one period, and for less than "
        f"the contract can date (2^64 seconds). Nothing was charged."
    ),
    "MarketplaceNotNewVersion": lambda a: (
        f"Version {a['version']} of model {a['modelId']} has no key of its own to deliver: version 1's key is "
        f"the purchase's (deliverKey); deliverVersionKeys takes a version from 2 up."
    ),
    "MarketplaceNotVersionDeliverer": lambda a: (
        f"{a['caller']} may not deliver the version keys of model {a['modelId']}: only the model's owner or its "
        f"operator can (see setOperator)."
    ),
    "MarketplaceBatchMismatch": lambda a: (
        f"The batch names {a['accounts']} accounts but carries {a['wrappedKeys']} wrapped keys: pass one key "
        f"per account, in the same order."
    ),
    "MarketplaceNoLicence": lambda a: (
        f"{a['account']} holds no delivered licence of model {a['modelId']} (never bought, still pending or "
        f"refunded; a validator's key is no licence): leave it out of the batch."
    ),
    "MarketplaceNotEntitled": lambda a: (
        f"{a['account']}'s licence of model {a['modelId']} (delivered {when(a['deliveredAt'])}) does not cover "
        f"version {a['version']}, published {when(a['publishedAt'])}: the update window is "
        f"{update_window_words(a['window'])}. Leave it out of the batch."
    ),
    "MarketplaceVersionKeyAlreadyDelivered": lambda a: (
        f"{a['account']} already received the key of version {a['version']} of model {a['modelId']}: leave it "
        f"out of the batch (the VersionKeyDelivered event has it)."
    ),
    # MockStablecoin (local chains only)
    "MockStablecoinMintTooLarge": lambda a: (
        f"The faucet mints at most {a['maxMint']} (in 6-decimal units) per call, not {a['amount']}: ask "
        f"for less, or call it again."
    ),
    # Channels
    "ChannelsZeroAddress": lambda a: (
        "Channels needs the registry's and the marketplace's addresses, not the zero address."
    ),
    "ChannelsWrongToken": lambda a: (
        f"Model {a['modelId']} is paid in {_token_name(a['expected'])}, not {_token_name(a['token'])}: open the "
        f"channel in the model's payment token. Nothing was charged."
    ),
    "ChannelsZeroAmount": lambda a: "A deposit must be more than 0; nothing was charged.",
    "ChannelsAmountTooLarge": lambda a: (
        f"A channel's deposit can be at most {a['maxAmount']} (smallest units), and this makes it "
        f"{a['amount']}: deposit less, or open a second channel. Nothing was charged."
    ),
    "ChannelsWrongPayment": lambda a: (
        f"{fmt_eth(a['sent'])} was sent with the call but {fmt_eth(a['expected'])} was expected (a deposit in "
        f"ETH is sent as the value, one in a token is not): send exactly that. Nothing was charged."
    ),
    "ChannelsTransferShortfall": lambda a: (
        f"Token {a['token']} delivered {a['received']} instead of {a['amount']} (a fee on transfer, or a "
        f"rebasing token): channels accept only tokens that move exact amounts. Nothing was charged."
    ),
    "ChannelsBadExpiry": lambda a: (
        f"A channel's expiry must be at {when(a['earliest'])} or later (in the future, and later than its "
        f"expiry so far), not {when(a['expiresAt'])}: choose a later time (e.g. --days)."
    ),
    "ChannelsUnknownChannel": lambda a: (
        f"There is no channel {a['channelId']}: check the id (`modex channel list` shows yours)."
    ),
    "ChannelsClosed": lambda a: (
        f"Channel {a['channelId']} is closed (its buyer reclaimed the rest after expiry): nothing more can be "
        f"claimed, topped up or extended; open a new channel."
    ),
    "ChannelsNotBuyer": lambda a: (
        f"Only the buyer of channel {a['channelId']} ({a['buyer']}) can do this, not {a['caller']}: use the "
        f"wallet that opened it."
    ),
    "ChannelsExpired": lambda a: (
        f"Channel {a['channelId']} expired at {when(a['expiresAt'])}: extend it first "
        f"(`modex channel extend`), or reclaim what is left."
    ),
    "ChannelsNotExpired": lambda a: (
        f"Channel {a['channelId']} runs until {when(a['expiresAt'])}; its buyer can reclaim the rest only "
        f"after that (the seller may claim until then)."
    ),
    "ChannelsNotClaimer": lambda a: (
        f"{a['caller']} may not claim channel {a['channelId']}: only its model's current owner or operator can "
        f"(the owner sets the operator with setOperator)."
    ),
    "ChannelsBadSignature": lambda a: (
        f"The voucher for channel {a['channelId']} is not signed by its buyer {a['buyer']} (another signer, "
        f"another channel or amount, or a malformed signature): claim a voucher the buyer signed."
    ),
    "ChannelsNothingToClaim": lambda a: (
        f"Channel {a['channelId']} has paid out {a['claimed']} of its deposit of {a['deposit']}; a voucher for "
        f"{a['cumulativeAmount']} adds nothing (already claimed, or the deposit is used up): claim a higher "
        f"voucher, or wait for the buyer to top up."
    ),
    "ChannelsNotModelOwner": lambda a: (
        f"Only the owner of model {a['modelId']} ({a['owner']}) can set its call price, not {a['caller']}."
    ),
    "ChannelsNothingToWithdraw": lambda a: (
        f"{a['account']} has nothing to withdraw from Channels in {_token_name(a['token'])}."
    ),
    "ChannelsTransferFailed": lambda a: (
        f"Sending {fmt_eth(a['amount'])} to {a['account']} failed (the receiver rejected ETH); nothing was "
        f"lost: it stays in Channels — take it from an account that accepts ETH."
    ),
    # Votes
    "VotesScoreOutOfRange": lambda a: f"A score must be 1 to 5, not {a['score']}.",
    "VotesNoLicense": lambda a: (
        f"{a['voter']} holds no voting licence for model {a['modelId']}: only buyers who received the key, "
        f"paid more than 0 and are not the model's owner can vote."
    ),
    "VotesOnlyMarketplace": _only_caller("the Marketplace", "drop votes"),
    "VotesNoAccess": lambda a: (
        f"{a['account']} has no access to model {a['modelId']}: reports and feedback need a licence "
        f"(key delivered) or a live subscription. Buy or subscribe first."
    ),
    "VotesEmptyCid": lambda a: (
        "The document's CID is empty: pin the document first and send its CID."
    ),
    "VotesFeedbackAlreadySent": lambda a: (
        f"The feedback item {a['itemCid']} of model {a['modelId']} was already sent by {a['sender']}; "
        f"each item is anchored once."
    ),
    "VotesNotFeedbackSender": lambda a: (
        f"{a['caller']} did not send the feedback item {a['itemCid']} of model {a['modelId']}: only its "
        f"sender can withdraw it."
    ),
    "VotesFeedbackAlreadyWithdrawn": lambda a: (
        f"The feedback item {a['itemCid']} of model {a['modelId']} is already withdrawn."
    ),
    # Validators
    "ValidatorsStakeTooLow": lambda a: (
        f"A stake of {fmt_eth(a['stake'])} is below the minimum of {fmt_eth(a['minStake'])}; nothing was staked."
    ),
    "ValidatorsUnstakePending": lambda a: (
        f"{a['validator']} asked to unstake (unlocks at {when(a['unlockAt'])}); it cannot stake or ask again."
    ),
    "ValidatorsNotStaked": lambda a: f"{a['validator']} has no stake.",
    "ValidatorsUnstakeNotRequested": lambda a: (
        f"{a['validator']} must call requestUnstake and wait the unstake delay before unstaking."
    ),
    "ValidatorsStillLocked": lambda a: (
        f"The stake of {a['validator']} unlocks at {when(a['unlockAt'])} (now {when(a['now_'])}); try again then."
    ),
    "ValidatorsNotActive": lambda a: (
        f"{a['validator']} is not an active validator (no minimum stake, or leaving); stake first."
    ),
    "ValidatorsOpenSeats": lambda a: (
        f"{a['validator']} still holds {a['openSeats']} open seat(s) (key requests or attestations not yet "
        f"released): finish or release them (`release` after their round settles) before asking to unstake."
    ),
    "ValidatorsTooManyOpenRequests": lambda a: (
        f"{a['validator']} already holds the most open seats allowed ({a['maxOpenRequests']}): finish a model "
        f"and release its seat before asking for another key."
    ),
    "ValidatorsStakeBonded": lambda a: (
        f"{a['validator']} has {fmt_eth(a['free'])} of stake not bonded, and this needs {fmt_eth(a['needed'])}: add "
        f"stake or wait for open seats to be released."
    ),
    "ValidatorsAlreadySettled": lambda a: (
        f"Model {a['modelId']} is already settled as {_status(ModelStatus, a['status'])}; no more key requests "
        f"or attestations."
    ),
    "ValidatorsAlreadyRequested": lambda a: (
        f"{a['validator']} already has a seat on model {a['modelId']} (a key asked for or delivered)."
    ),
    "ValidatorsNoKey": lambda a: (
        f"{a['validator']} cannot commit on model {a['modelId']}: its key has not been delivered to it (or it "
        f"already committed in this round); ask for the key first (requestValidatorKey)."
    ),
    "ValidatorsZeroCommitment": lambda a: (
        "A zero commitment is not accepted: commit to the keccak256 of your attestation."
    ),
    "ValidatorsCommitClosed": lambda a: (
        f"Commits on model {a['modelId']} closed at {when(a['commitEnd'])}; reveal, or commit in its next round."
    ),
    "ValidatorsRoundNotSettled": lambda a: (
        f"The round of model {a['modelId']} ended at {when(a['revealEnd'])} and is not settled yet: settle it "
        f"first (anyone may), then commit in the next round."
    ),
    "ValidatorsNothingToReveal": lambda a: (
        f"{a['validator']} has no commitment to reveal in the current round of model {a['modelId']}."
    ),
    "ValidatorsRevealNotOpen": lambda a: (
        f"Reveals on model {a['modelId']} open after {when(a['commitEnd'])}, when commits close; reveal then."
    ),
    "ValidatorsRevealClosed": lambda a: (
        f"Reveals on model {a['modelId']} closed at {when(a['revealEnd'])}; the commitment can no longer be opened."
    ),
    "ValidatorsRevealMismatch": lambda a: (
        f"The reveal of {a['validator']} on model {a['modelId']} does not match its commitment (another hash, "
        f"digest or salt than the ones committed to)."
    ),
    "ValidatorsNoRound": lambda a: (
        f"Model {a['modelId']} has no open round to settle: nobody has committed yet."
    ),
    "ValidatorsRevealOpen": lambda a: (
        f"The reveal period of model {a['modelId']} runs until {when(a['revealEnd'])}; settle after that."
    ),
    "ValidatorsNothingToRelease": lambda a: (
        f"The seat of {a['validator']} on model {a['modelId']} cannot be released now: none is open, or its "
        f"round is not over (a request is released once it expired, an attestation once its round settled)."
    ),
    "ValidatorsSeatInUse": lambda a: (
        f"The seat of {a['validator']} on model {a['modelId']} is in state {a['seatState']}, not waiting for a key."
    ),
    "ValidatorsOnlyMarketplace": _only_caller("the Marketplace", "open or key seats"),
    "ValidatorsNothingToWithdraw": lambda a: (
        f"{a['account']} has nothing to withdraw from Validators."
    ),
    "ValidatorsTransferFailed": lambda a: (
        f"Sending {fmt_eth(a['amount'])} to {a['account']} failed (the receiver rejected it); nothing was lost — "
        f"it stays there to take later."
    ),
    "ValidatorsBadConfig": _bad_config("Validators"),
    # Validators: attesters (a validator's hot key, setAttester)
    "ValidatorsNotAttester": lambda a: (
        f"{a['caller']} is not the attester of validator {a['validator']}: the validator names its attester "
        f"with setAttester (`modex validator set-attester ADDRESS` or the Validate page)."
    ),
    "ValidatorsAttesterIsValidator": lambda a: (
        f"{a['attester']} holds a stake of its own and cannot attest for another validator: name a fresh "
        f"address (the agent's hot key) that never staked."
    ),
    "ValidatorsAttesterTaken": lambda a: (
        f"{a['attester']} already attests for validator {a['validator']}; an attester serves one validator: "
        f"name another address, or ask that validator to name another attester first."
    ),
    "ValidatorsIsAttester": lambda a: (
        f"{a['account']} is the attester of validator {a['validator']} and cannot stake: stake from the "
        f"validator's wallet, or have the validator name another attester first."
    ),
    # OpenZeppelin
    "ERC721NonexistentToken": lambda a: f"There is no model {a['tokenId']}.",
    "ERC721IncorrectOwner": lambda a: (
        f"{a['sender']} does not own model {a['tokenId']} (its owner is {a['owner']})."
    ),
    "ERC721InsufficientApproval": lambda a: (
        f"{a['operator']} is not approved to transfer model {a['tokenId']}."
    ),
    "ERC721InvalidReceiver": lambda a: f"{a['receiver']} cannot receive model tokens.",
    "ERC721InvalidSender": lambda a: f"{a['sender']} cannot send model tokens.",
    "ERC721InvalidOwner": lambda a: f"{a['owner']} is not a valid owner.",
    "ERC721InvalidApprover": lambda a: f"{a['approver']} cannot approve.",
    "ERC721InvalidOperator": lambda a: f"{a['operator']} cannot be an operator.",
    "OwnableUnauthorizedAccount": lambda a: (
        f"Only the contract owner can do this, not {a['account']}."
    ),
    "OwnableInvalidOwner": lambda a: f"{a['owner']} cannot own the contract.",
    "ReentrancyGuardReentrantCall": lambda a: (
        "A re-entrant call was refused (a contract called back during a payment)."
    ),
    "SafeERC20FailedOperation": lambda a: (
        f"Token {a['token']} refused the transfer (it returned false); nothing moved."
    ),
    "ERC20InsufficientBalance": lambda a: (
        f"{a['sender']} holds {a['balance']} of the token, {a['needed']} are needed (in its smallest unit)."
    ),
    "ERC20InsufficientAllowance": lambda a: (
        f"{a['spender']} may take only {a['allowance']} of the token, {a['needed']} are needed: approve it "
        f"for the price first (or use a permit)."
    ),
    "ERC20InvalidApprover": _cannot("approver", "approve token transfers"),
    "ERC20InvalidReceiver": _cannot("receiver", "receive the token"),
    "ERC20InvalidSender": _cannot("sender", "send the token"),
    "ERC20InvalidSpender": _cannot("spender", "be approved to spend the token"),
    "ERC2612ExpiredSignature": lambda a: (
        f"The permit expired at {when(a['deadline'])}: sign a new one."
    ),
    "ERC2612InvalidSigner": lambda a: (
        f"The permit was signed by {a['signer']}, not by the token holder {a['owner']}: sign it with the "
        f"holder's key."
    ),
    "InvalidAccountNonce": lambda a: (
        f"The signature uses a stale nonce for {a['account']} (the current one is {a['currentNonce']}): sign again."
    ),
    "ECDSAInvalidSignature": lambda a: "The signature is not valid: sign again.",
    "ECDSAInvalidSignatureLength": lambda a: (
        f"A signature is 65 bytes, not {a['length']}: pass the whole signature."
    ),
    "ECDSAInvalidSignatureS": lambda a: (
        "The signature is malleable (its s value is in the upper half): sign again with a standard signer."
    ),
    "InvalidShortString": lambda a: "A short string stored by the contract is malformed.",
    "StringTooLong": lambda a: f"The string {a['str']!r} is too long for a short string.",
    "SafeCastOverflowedUintDowncast": lambda a: (
        f"The value {a['value']} does not fit {a['bits']} bits."
    ),
    "Error": lambda a: f"The contract refused: {a['message']}",
    "Panic": lambda a: (
        f"The contract failed with {PANIC_CODES.get(a['code'], 'panic code ' + hex(a['code']))}."
    ),
}
