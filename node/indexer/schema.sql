CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1), block_number INTEGER NOT NULL, block_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL, timestamp INTEGER);
CREATE TABLE IF NOT EXISTS events (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
    contract TEXT NOT NULL, event TEXT NOT NULL, args TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index));
CREATE TABLE IF NOT EXISTS metadata (
    cid TEXT PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    name TEXT, task TEXT, description TEXT, license TEXT, model_hash TEXT, json TEXT);

CREATE TABLE IF NOT EXISTS listings (
    model_id INTEGER PRIMARY KEY, seller TEXT NOT NULL, owner TEXT NOT NULL, model_hash TEXT NOT NULL,
    metadata_cid TEXT NOT NULL, price TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 1,
    operator TEXT, status TEXT NOT NULL DEFAULT 'unverified',
    -- votes: weighted sum (score x wei paid) and weight as uint256 text; vote_count = voters;
    -- score = weighted sum / weight
    vote_weighted_sum TEXT NOT NULL DEFAULT '0', vote_weight TEXT NOT NULL DEFAULT '0',
    vote_count INTEGER NOT NULL DEFAULT 0, score REAL,
    listed_block INTEGER NOT NULL,
    -- validation: the seller's claim, the current (or deciding) round, the Marketplace's verdict
    claimed_digest TEXT, claimed_at INTEGER, round INTEGER NOT NULL DEFAULT 0,
    commit_end INTEGER, reveal_end INTEGER, verdict_at INTEGER, verifier_weight INTEGER,
    -- task: copied from the (immutable, content-addressed) metadata so one index serves a filter
    -- with a sort; score_key: score with "no votes" as 0 (below every 1..5 score), never NULL,
    -- so keyset pagination compares plain values.
    task TEXT, score_key REAL NOT NULL DEFAULT 0,
    -- what price and subscription are counted in (the zero address: ETH), and the subscription
    -- offered (NULL: none): its price per period (uint256 text) and the period in seconds;
    -- call_price: the price of one call to the seller's service (Channels.setCallPrice, uint256
    -- text; NULL: none set, no calls on a payment channel)
    payment_token TEXT NOT NULL DEFAULT '0x0000000000000000000000000000000000000000',
    subscription_price TEXT, subscription_period INTEGER, call_price TEXT);
CREATE INDEX IF NOT EXISTS listings_cid ON listings (metadata_cid);
CREATE INDEX IF NOT EXISTS listings_owner ON listings (owner, active, model_id);
CREATE INDEX IF NOT EXISTS listings_new ON listings (active, model_id);
CREATE INDEX IF NOT EXISTS listings_price ON listings (active, payment_token, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_score ON listings (active, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_status_new ON listings (active, status, model_id);
CREATE INDEX IF NOT EXISTS listings_status_price ON listings (active, status, payment_token, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_status_score ON listings (active, status, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_task_new ON listings (active, task, model_id);
CREATE INDEX IF NOT EXISTS listings_task_price ON listings (active, task, payment_token, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_task_score ON listings (active, task, score_key, vote_count, model_id);
CREATE INDEX IF NOT EXISTS listings_task_status_new ON listings (active, task, status, model_id);
CREATE INDEX IF NOT EXISTS listings_task_status_price ON listings (active, task, status, payment_token, price, model_id DESC);
CREATE INDEX IF NOT EXISTS listings_task_status_score ON listings (active, task, status, score_key, vote_count, model_id);
-- Exact totals without a scan: listings per (active, task, status), kept by triggers.
CREATE TABLE IF NOT EXISTS listing_counts (
    active INTEGER NOT NULL, task TEXT NOT NULL, status TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (active, task, status)) WITHOUT ROWID;
-- Full-text search over the metadata; rowid = model_id, so "newest" reads it in rowid order.
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5(
    name, description, task, tokenize = 'porter unicode61 remove_diacritics 2', prefix = '2 3');
CREATE TRIGGER IF NOT EXISTS listings_ai AFTER INSERT ON listings BEGIN
    INSERT INTO listing_counts VALUES (NEW.active, COALESCE(NEW.task, ''), NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    INSERT INTO listings_fts (rowid, name, description, task)
        SELECT NEW.model_id, m.name, m.description, m.task FROM metadata m
        WHERE m.cid = NEW.metadata_cid AND m.status = 'ok';
END;
CREATE TRIGGER IF NOT EXISTS listings_ad AFTER DELETE ON listings BEGIN
    UPDATE listing_counts SET n = n - 1
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status;
    DELETE FROM listing_counts
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status AND n = 0;
    DELETE FROM listings_fts WHERE rowid = OLD.model_id;
END;
CREATE TRIGGER IF NOT EXISTS listings_au AFTER UPDATE OF active, task, status ON listings BEGIN
    INSERT INTO listing_counts VALUES (NEW.active, COALESCE(NEW.task, ''), NEW.status, 1)
        ON CONFLICT DO UPDATE SET n = n + 1;
    UPDATE listing_counts SET n = n - 1
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status;
    DELETE FROM listing_counts
        WHERE active = OLD.active AND task = COALESCE(OLD.task, '') AND status = OLD.status AND n = 0;
END;
CREATE TABLE IF NOT EXISTS purchases (
    purchase_id INTEGER PRIMARY KEY, model_id INTEGER NOT NULL, buyer TEXT NOT NULL,
    price TEXT NOT NULL, buyer_key TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'buyer',
    state TEXT NOT NULL DEFAULT 'pending', wrapped_key TEXT, refund_amount TEXT,
    purchased_block INTEGER NOT NULL, purchased_at INTEGER, delivered_block INTEGER,
    delivered_at INTEGER, refunded_block INTEGER,
    -- the seller's revenue paid out after the challenge period (RevenueReleased)
    released INTEGER NOT NULL DEFAULT 0, released_block INTEGER, revenue TEXT, fee TEXT,
    -- what it was paid in (the listing's payment token when it was bought; zero address: ETH)
    token TEXT NOT NULL DEFAULT '0x0000000000000000000000000000000000000000');
CREATE INDEX IF NOT EXISTS purchases_buyer ON purchases (buyer);
CREATE INDEX IF NOT EXISTS purchases_state ON purchases (state, model_id);
CREATE TABLE IF NOT EXISTS votes (
    model_id INTEGER NOT NULL, voter TEXT NOT NULL, score INTEGER NOT NULL, weight TEXT NOT NULL,
    block_number INTEGER NOT NULL, PRIMARY KEY (model_id, voter));
-- Rounds and attestations per validation cycle (`version`: the version the cycle attests; each
-- cycle numbers its rounds from 1).
CREATE TABLE IF NOT EXISTS rounds (
    model_id INTEGER NOT NULL, version INTEGER NOT NULL, round INTEGER NOT NULL, opened_at INTEGER,
    commit_end INTEGER NOT NULL, reveal_end INTEGER NOT NULL, opened_block INTEGER NOT NULL,
    -- NULL while open; 'undecided' (RoundUndecided) or the status it settled (StatusChanged)
    outcome TEXT, revealed_weight INTEGER, PRIMARY KEY (model_id, version, round));
CREATE TABLE IF NOT EXISTS attestations (
    model_id INTEGER NOT NULL, version INTEGER NOT NULL, validator TEXT NOT NULL,
    round INTEGER NOT NULL, commitment TEXT NOT NULL, committed_block INTEGER NOT NULL,
    -- from the reveal (NULL until then); says: the status it counts for (ModelStatus.word)
    observed_hash TEXT, work_digest TEXT, matches INTEGER, digest_matches_claim INTEGER, says TEXT,
    revealed_block INTEGER, PRIMARY KEY (model_id, version, validator, round));
CREATE TABLE IF NOT EXISTS validators (
    address TEXT PRIMARY KEY, stake TEXT NOT NULL, unlock_at INTEGER NOT NULL DEFAULT 0,
    updated_block INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS transfers (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, model_id INTEGER NOT NULL,
    from_address TEXT NOT NULL, to_address TEXT NOT NULL, PRIMARY KEY (block_number, log_index));
CREATE TABLE IF NOT EXISTS withdrawals (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, contract TEXT NOT NULL,
    account TEXT NOT NULL, amount TEXT NOT NULL,
    token TEXT NOT NULL DEFAULT '0x0000000000000000000000000000000000000000',
    PRIMARY KEY (block_number, log_index));
-- Subscriptions (Marketplace.subscribe): one row per model and account, until when it runs (the
-- latest Subscribed event's expiresAt) and what it was paid in.
CREATE TABLE IF NOT EXISTS subscriptions (
    model_id INTEGER NOT NULL, account TEXT NOT NULL, expires_at INTEGER NOT NULL,
    token TEXT NOT NULL, subscribed_block INTEGER NOT NULL, PRIMARY KEY (model_id, account));
CREATE INDEX IF NOT EXISTS subscriptions_account ON subscriptions (account);
-- Each payment token's symbol and decimals as it answered them (read from the chain when the
-- index first meets the token; not derived from the log, so kept by a rebuild).
CREATE TABLE IF NOT EXISTS tokens (
    address TEXT PRIMARY KEY, symbol TEXT NOT NULL, decimals INTEGER NOT NULL,
    described INTEGER NOT NULL);
-- Versions after the listing (ModelRegistry.publishVersion; version 1 is the listing's own row),
-- and the validation cycles (Validators.ValidationOpened): one per version validated, with the
-- status it settled ('unverified' while it runs). The latest cycle is the current one
-- (Validators.attestedVersion); the listing's status is its version's.
CREATE TABLE IF NOT EXISTS versions (
    model_id INTEGER NOT NULL, version INTEGER NOT NULL, model_hash TEXT NOT NULL,
    metadata_cid TEXT NOT NULL, published_block INTEGER NOT NULL, published_at INTEGER,
    PRIMARY KEY (model_id, version));
CREATE TABLE IF NOT EXISTS validation_cycles (
    model_id INTEGER NOT NULL, version INTEGER NOT NULL, status TEXT NOT NULL DEFAULT 'unverified',
    PRIMARY KEY (model_id, version));
-- Reviews and reports (Votes.review, Votes.report): one row per event, newest last; the documents
-- they anchor are in `documents` (a cache by CID, like `metadata`), believed only where the
-- document's signer, model and score are the event's (node.indexer.queries).
CREATE TABLE IF NOT EXISTS reviews (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, model_id INTEGER NOT NULL,
    reviewer TEXT NOT NULL, score INTEGER NOT NULL, review_cid TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index));
CREATE INDEX IF NOT EXISTS reviews_model ON reviews (model_id, block_number DESC, log_index DESC);
CREATE TABLE IF NOT EXISTS reports (
    block_number INTEGER NOT NULL, log_index INTEGER NOT NULL, model_id INTEGER NOT NULL,
    reporter TEXT NOT NULL, reason_cid TEXT NOT NULL, PRIMARY KEY (block_number, log_index));
CREATE INDEX IF NOT EXISTS reports_model ON reports (model_id, reporter);
-- Review and report documents by CID and kind (node.reviews.read): status 'ok' with the signed
-- fields (model id and version as decimal text: uint256) and the signer, 'invalid' (not a Modex
-- document of this chain's Votes: never tried again) or 'unavailable' (tried again up to
-- METADATA_ATTEMPTS times). Not derived from the log: kept by a rebuild.
CREATE TABLE IF NOT EXISTS documents (
    cid TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, signer TEXT, model_id TEXT, score INTEGER,
    version TEXT, text TEXT, PRIMARY KEY (cid, kind));
