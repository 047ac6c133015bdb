"""A validator never attests against a model because of its OWN disk.

A block of the validator's local copy that rotted (or was half-written, or that the disk will not
read or write) is not the seller's fault: the model is checked again from another copy, or not
committed to at all this pass. Only content that is still bad when fetched again from the network
is attested against (committed to, and revealed once the commit period is over). (These tests
run as root, where chmod stops nothing: the refusing disk is simulated by making the store's own
file calls fail with the errors a disk gives.)
"""

from __future__ import annotations

import base64
import errno
import io
import logging
import os
import tempfile

import httpx
import pytest
from modex_stack import make_stack, past, publish_model, write_model
from test_bad_input import flip, list_tampered
from validator_helpers import attested, evaluator_of, round_of, seat, toy_report
from worker_helpers import deliver_keys

from app.validate import _validate_job
from node.attestation import UNREADABLE
from node.content.cid import DAG_PB, cid_codec, cid_multihash, cid_to_str, parse_cid
from node.content.store import embedded
from node.content.store.dag import ChunkStream, iter_file, walk_blocks
from node.content.store.embedded import EmbeddedStore
from node.content.store.gateway import GatewaySource, serve_gateway
from node.content.store.kubo import KuboStore
from node.errors import StoreError
from node.fetch import load_metadata
from node.protocol import SeatState
from node.validator import ValidatorAgent


@pytest.fixture
def stack(tmp_path):
    return make_stack("embedded", tmp_path / "stack", delivery_window=3600)


@pytest.fixture
def network(stack):
    """The seller's store behind its gateway: the copy a validator's own store fetches from."""
    with serve_gateway(stack.store()) as gateway:
        yield gateway.url


def listed(stack, seed: int = 1) -> tuple[int, str, str]:
    """An honest listing of a model of a few blocks: (model id, metadata CID, content CID)."""
    model_id = publish_model(
        stack, write_model(stack.root / f"m{seed}", size=3 * 2**20 + 77, seed=seed)
    )
    meta_cid = stack.chain.call(stack.chain.registry.functions.metadataCid(model_id))
    return model_id, meta_cid, load_metadata(stack.store(), meta_cid)["content_cid"]


def own_store(tmp_path, url: str, *cids: str, transport=None) -> EmbeddedStore:
    """The validator's own store, fetching from ``url``, holding ``cids`` already."""
    store = EmbeddedStore(
        tmp_path / "validator-ipfs", source=GatewaySource(url, transport=transport)
    )
    for cid in cids:
        store.pin(cid)
    return store


def keyed_agent(stack, store, tmp_path, work_dir=None) -> ValidatorAgent:
    """A staked validator over ``store`` whose key requests the seller's worker has answered."""
    agent = ValidatorAgent(
        stack.chain,
        stack.signers["validator"],
        store,
        tmp_path / "validator.json",
        work_dir=work_dir or tmp_path / "work",
        evaluator=evaluator_of(toy_report()),
    )
    assert agent.poll().requested
    assert deliver_keys(stack, tmp_path / "worker.json")
    return agent


def middle_leaf_cid(store, content_cid: str) -> bytes:
    leaves = [
        c for c, _ in walk_blocks(store.get_block, parse_cid(content_cid)) if cid_codec(c) != DAG_PB
    ]
    assert len(leaves) >= 3
    return leaves[len(leaves) // 2]


def middle_leaf(store, content_cid: str):
    return store.block_path(middle_leaf_cid(store, content_cid))


def rot(path) -> bytes:
    """Flip one bit of a block file (bit rot); return its good bytes."""
    good = path.read_bytes()
    path.write_bytes(flip(good, len(good) // 3))
    return good


def on_chain(stack, model_id: int, agent=None) -> tuple[bool, bool]:
    """(the validator attested, its attestation matches the listed hash): with ``agent``, its
    commitment is first revealed (the clock moved past the commit period)."""
    if agent is not None and seat(stack, model_id).state == SeatState.COMMITTED:
        past(stack, round_of(stack, model_id).commit_end)
        assert model_id not in agent.poll([model_id]).refused
    revealed = attested(stack, model_id)
    return bool(revealed), bool(revealed) and revealed[-1]["matches"]


def verdicts(report) -> dict[int, tuple[bool, bytes]]:
    """What the pass committed to: model id -> (matches the listing, observed hash)."""
    return {a.model_id: (a.matches, a.observed_hash) for a in report.committed}


def listed_hash(stack, model_id: int) -> bytes:
    return bytes(stack.chain.call(stack.chain.registry.functions.modelHash(model_id)))


def test_a_rotten_block_in_the_shared_embedded_store_is_not_attested_until_it_is_whole(
    stack, tmp_path
):
    """The embedded default: every role reads ONE block folder, so there is no other copy."""
    model_id, _, content_cid = listed(stack)
    store = stack.store("validator")
    agent = keyed_agent(stack, store, tmp_path)
    backup = io.BytesIO()
    store.export_car(content_cid, backup)  # the seller's backup of its content
    leaf = middle_leaf(store, content_cid)
    rot(leaf)

    report = agent.poll()
    assert report.committed == [] and seat(stack, model_id).state == SeatState.KEYED
    assert "no longer hash to its CID" in report.retry[model_id]
    assert "re-import the content" in report.retry[model_id]
    assert not leaf.exists() and (store.corrupt_dir / leaf.name).exists()  # set aside
    report = agent.poll()  # still no copy of that block: still no verdict
    assert report.committed == [] and "a corrupt copy was set aside" in report.retry[model_id]
    assert model_id in agent.todo
    code, out, _ = stack.cli(
        "validator", "validate", "--once", "--state", str(tmp_path / "validator.json")
    )
    assert code == 0 and f"model {model_id}: not checked, nothing committed (block " in out
    assert "the next pass tries again" in out and seat(stack, model_id).state == SeatState.KEYED

    backup.seek(0)
    stack.store().import_car(backup)  # the seller re-imports it: the next pass checks it
    report = agent.poll()
    assert verdicts(report) == {model_id: (True, listed_hash(stack, model_id))}
    assert on_chain(stack, model_id, agent) == (True, True)


def test_a_rotten_block_of_the_validators_own_copy_is_fetched_again_and_matches(
    stack, network, tmp_path, caplog
):
    model_id, meta_cid, content_cid = listed(stack)
    store = own_store(tmp_path, network, meta_cid, content_cid)  # fetched earlier
    agent = keyed_agent(stack, store, tmp_path)
    leaf = middle_leaf(store, content_cid)
    good = rot(leaf)

    with caplog.at_level(logging.WARNING):
        report = agent.poll()
    assert verdicts(report) == {model_id: (True, listed_hash(stack, model_id))}
    assert on_chain(stack, model_id, agent) == (True, True)
    assert leaf.read_bytes() == good and (store.corrupt_dir / leaf.name).exists()
    assert "fetched it again from GatewaySource" in caplog.text


def refuse_writes_under(monkeypatch, root) -> None:
    """The disk refuses every new file and rename under ``root`` (full, or read-only)."""
    real_replace, real_mkstemp = os.replace, tempfile.mkstemp

    def replace(src, dst, *args, **kw):
        if str(dst).startswith(str(root)):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kw)

    def mkstemp(*args, dir=None, **kw):
        if dir is not None and str(dir).startswith(str(root)):
            raise OSError(errno.ENOSPC, "No space left on device", str(dir))
        return real_mkstemp(*args, dir=dir, **kw)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_rotten_block_of_a_full_own_store_is_checked_from_the_network_copy(
    stack, network, tmp_path, monkeypatch, caplog
):
    model_id, meta_cid, content_cid = listed(stack)
    store = own_store(tmp_path, network, meta_cid, content_cid)
    agent = keyed_agent(stack, store, tmp_path)
    leaf = middle_leaf(store, content_cid)
    good = rot(leaf)
    refuse_writes_under(monkeypatch, store.root)

    with caplog.at_level(logging.WARNING):
        report = agent.poll()
    assert verdicts(report) == {model_id: (True, listed_hash(stack, model_id))}
    assert "could not be set aside (No space left on device)" in caplog.text
    assert "could not keep block" in caplog.text and "without caching it" in caplog.text
    assert leaf.read_bytes() != good  # nothing could be written; the verified copy was used


def test_a_store_the_disk_will_not_read_is_retried_never_attested(stack, tmp_path, monkeypatch):
    model_id, _, _ = listed(stack)
    store = stack.store("validator")  # the embedded default: no other copy to ask
    agent = keyed_agent(stack, store, tmp_path)
    real_open = open

    def refusing_open(path, *args, **kw):
        if str(path).startswith(str(store.blocks_dir)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(embedded, "open", refusing_open, raising=False)
    report = agent.poll()
    assert report.committed == [] and seat(stack, model_id).state == SeatState.KEYED
    assert "this disk refused to read it (Permission denied)" in report.retry[model_id]
    monkeypatch.undo()
    assert verdicts(agent.poll()) == {model_id: (True, listed_hash(stack, model_id))}


def test_a_work_folder_that_cannot_be_written_is_retried_never_attested(stack, tmp_path):
    model_id, _, _ = listed(stack)
    (tmp_path / "afile").write_text("a file where the work folder should be")
    agent = keyed_agent(
        stack, stack.store("validator"), tmp_path, work_dir=tmp_path / "afile" / "work"
    )
    report = agent.poll()
    assert report.committed == [] and seat(stack, model_id).state == SeatState.KEYED
    assert "this machine's disk refused it" in report.retry[model_id]
    agent.work_dir = tmp_path / "work"
    assert verdicts(agent.poll()) == {model_id: (True, listed_hash(stack, model_id))}


def test_content_the_seller_got_wrong_is_still_attested_against(stack, network, tmp_path):
    honest, meta_cid, content_cid = listed(stack)
    shared = stack.store()
    sealed = shared.get(content_cid).read()
    bad = list_tampered(
        stack,
        load_metadata(shared, meta_cid),
        flip(sealed, len(sealed) // 2),
        stack.vault().get(content_cid).key,
    )
    agent = keyed_agent(stack, own_store(tmp_path, network), tmp_path)

    report = agent.poll()
    assert verdicts(report) == {
        honest: (True, listed_hash(stack, honest)),
        bad: (False, UNREADABLE),
    }
    assert "fails authentication" in next(a.reason for a in report.committed if a.model_id == bad)
    assert on_chain(stack, bad, agent) == (True, False)


def test_a_block_the_network_itself_serves_corrupt_is_attested_against(stack, network, tmp_path):
    model_id, _, content_cid = listed(stack)
    shared = stack.store()
    target = middle_leaf(shared, content_cid).name

    def corrupting_network(request: httpx.Request) -> httpx.Response:
        """The network's copy of one block is bad (served by every peer that has it)."""
        cid = parse_cid(request.url.path.rsplit("/", 1)[1])
        block = shared.get_block(cid)
        if shared.block_path(cid).name == target:
            block = flip(block, 5)
        return httpx.Response(200, content=block)

    store = own_store(tmp_path, network, transport=httpx.MockTransport(corrupting_network))
    agent = keyed_agent(stack, store, tmp_path)
    report = agent.poll()
    assert verdicts(report) == {model_id: (False, UNREADABLE)}
    assert "the network's copy is corrupt" in report.committed[0].reason
    assert cid_to_str(parse_cid(content_cid)) not in store.pins()  # nothing bad was kept


@pytest.mark.kubo
def test_a_rotten_block_in_the_ipfs_daemons_repo_is_never_attested(tmp_path, ipfs_daemon):
    """The daemon serves its blocks unverified; the validator's store checks them."""
    stack = make_stack(
        "embedded", tmp_path / "stack", ipfs=ipfs_daemon.api_url, delivery_window=3600
    )
    model_id, _, content_cid = listed(stack)
    store = KuboStore(ipfs_daemon.api_url, find_timeout=1)
    agent = keyed_agent(stack, store, tmp_path)
    backup = io.BytesIO()
    store.export_car(content_cid, backup)
    name = base64.b32encode(cid_multihash(middle_leaf_cid(store, content_cid))).decode()
    [block_file] = (ipfs_daemon.repo / "blocks").rglob(name.rstrip("=") + ".data")
    rot(block_file)

    report = agent.poll()  # pinned (the seller added it to this daemon): it cannot be dropped
    assert report.committed == [] and seat(stack, model_id).state == SeatState.KEYED
    assert "is corrupt and the daemon will not remove it" in report.retry[model_id]
    store.rpc.call("pin/rm", {"arg": content_cid})  # a validator's daemon only caches it
    report = agent.poll()  # dropped; this daemon is offline, so it is not found again
    assert report.committed == [] and "not found" in report.retry[model_id]
    backup.seek(0)
    store.import_car(backup)  # the network gives the daemon the block again
    assert verdicts(agent.poll()) == {model_id: (True, listed_hash(stack, model_id))}


class RottenDaemon:
    """A daemon's repository holding one rotten block of content the network serves intact.

    Like Kubo and js-ipfs (see the kubo test above), it serves the rotten bytes unverified until
    ``repair`` drops the block and fetches it again from ``network``.
    """

    def __init__(self, network, rotten: bytes):
        self.network, self.rotten = network, rotten

    def _block(self, cid: bytes) -> bytes:
        block = self.network.get_block(cid)
        return flip(block, len(block) // 3) if cid == self.rotten else block

    def get(self, cid: str) -> ChunkStream:
        return ChunkStream(iter_file(self._block, parse_cid(cid)))

    def repair(self, cid: str) -> list[str]:
        found = [c for c, _ in walk_blocks(self._block, parse_cid(cid)) if c == self.rotten]
        if found:
            self.rotten = None  # dropped; the network's copy is whole
        return [cid_to_str(c) for c in found]


def test_a_daemons_rotten_block_is_dropped_fetched_again_and_the_model_matches(
    stack, tmp_path, caplog
):
    model_id, _, content_cid = listed(stack)
    daemon = RottenDaemon(stack.store(), middle_leaf_cid(stack.store(), content_cid))
    agent = keyed_agent(stack, daemon, tmp_path)
    with caplog.at_level(logging.WARNING):
        report = agent.poll()
    assert verdicts(report) == {model_id: (True, listed_hash(stack, model_id))}
    assert "1 block(s) of this node's own copy were corrupt" in caplog.text


def test_the_ui_validate_job_says_why_a_model_is_not_checked(stack, tmp_path):
    model_id, _, content_cid = listed(stack)
    store = stack.store("validator")
    keyed_agent(stack, store, tmp_path)  # the key is delivered
    rot(middle_leaf(store, content_cid))
    said = []
    with pytest.raises(
        StoreError,
        match="could not be checked within 0.5 s and nothing was committed: block .*set aside as ",
    ):
        _validate_job(
            stack.chain,
            store,
            stack.signers["validator"],
            model_id,
            tmp_path / "ui-node",
            evaluator_of(toy_report()),
            progress=said.append,
            timeout=0.5,
            interval=0.1,
        )
    assert any(s.startswith("not checked yet, nothing committed") for s in said)
    assert seat(stack, model_id).state == SeatState.KEYED
