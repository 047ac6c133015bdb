"""What the validator tests share: a seller's model that carries an evaluation report, a fake
evaluator (ml/ is tested in tests/ml and test_validate_ml.py), and driving an agent through a
round on a chain whose clock the test moves."""

from __future__ import annotations

import json
from pathlib import Path

from modex_stack import make_stack, past, write_model

from node.onchain import canonical_json, work_digest
from node.protocol import EVALUATION_REPORT, ModelStatus, Round, Seat, SeatState
from node.publish import ListingInfo, publish
from node.validator import ValidatorAgent

EVAL_SET = "toy-v1"


def toy_report(outputs=(0, 1, 1, 0), accuracy: float = 0.5, eval_set: str = EVAL_SET) -> dict:
    """An evaluation report (docs/formats.md section 7) of a toy eval set."""
    return {
        "version": 1,
        "eval_set": eval_set,
        "protocol": 1,
        "metrics": {"eval_set": eval_set, "n": len(outputs), "accuracy": accuracy},
        "outputs": list(outputs),
    }


def claimed_model(folder: Path, report: dict, *, seed: int = 0, size: int = 4096) -> Path:
    """A model folder whose seller evaluated it: ``evaluation.json`` and ``metrics.json``."""
    write_model(folder, size=size, seed=seed)
    (folder / EVALUATION_REPORT).write_bytes(canonical_json(report))
    (folder / "metrics.json").write_bytes(canonical_json(report["metrics"]))
    return folder


def evaluator_of(report: dict):
    """An evaluator that finds ``report`` for any model holding weights (what ml/ would do)."""

    def evaluate(model_dir: Path, metadata: dict) -> dict:
        assert (model_dir / "model.safetensors").is_file()
        assert metadata["metrics"]["eval_set"] == report["eval_set"]
        return json.loads(json.dumps(report))  # a fresh copy, as a new evaluation would be

    return evaluate


def seat(stack, model_id: int, role: str = "validator") -> Seat:
    return Seat.from_call(
        stack.chain.call(
            stack.chain.validators.functions.attestationOf(model_id, stack.signers[role].address)
        )
    )


def round_of(stack, model_id: int) -> Round:
    return Round.from_call(stack.chain.call(stack.chain.validators.functions.roundOf(model_id)))


def status(stack, model_id: int) -> ModelStatus:
    return ModelStatus(stack.chain.call(stack.chain.validators.functions.status(model_id)))


def attested(stack, model_id: int) -> list[dict]:
    """The Attested events of the model (revealed attestations), oldest first."""
    return [e["args"] for e in stack.chain.events("Attested", modelId=model_id)]


def finish_round(stack, agents, model_id: int, *, passes: int = 6) -> list:
    """Poll ``agents`` (one or several), moving the clock past each deadline they wait for, until
    each is done with the model; the reports of every pass, in order."""
    agents = agents if isinstance(agents, list | tuple) else [agents]
    reports = []
    for _ in range(passes):
        for agent in agents:
            reports.append(agent.poll([model_id]))
        if all(
            seat(stack, model_id, role).state in (SeatState.RELEASED, SeatState.NONE)
            and status(stack, model_id) != ModelStatus.UNVERIFIED
            for role in (_role(stack, a) for a in agents)
        ):
            return reports
        deadlines = [
            w.until
            for r in reports[-len(agents) :]
            for m, w in r.waiting.items()
            if m == model_id and w.until
        ]
        if deadlines:
            past(stack, min(deadlines))
    raise AssertionError(
        f"model {model_id} not settled and released after {passes} passes: "
        f"{reports[-len(agents) :]}"
    )


def _role(stack, agent) -> str:
    return next(r for r, s in stack.signers.items() if s.address == agent.signer.address)


def rounds_stack(tmp_path, period: int, **extra):
    """An embedded stack whose validation rounds commit for ``period`` seconds of chain time and
    reveal for as long (a day's delivery window; ``extra``: other deployment parameters)."""
    return make_stack(
        "embedded",
        tmp_path / "stack",
        delivery_window=3600,
        commit_period=period,
        reveal_period=period,
        **extra,
    )


def agent_for(stack, tmp_path, role: str = "validator", evaluator=None) -> ValidatorAgent:
    """``role``'s validator agent, its state and work folders in ``tmp_path``; it evaluates with
    ``evaluator`` (default: one that finds the toy report, ``toy_report()``)."""
    return ValidatorAgent(
        stack.chain,
        stack.signers[role],
        stack.store(role),
        tmp_path / f"{role}-state.json",
        work_dir=tmp_path / f"{role}-work",
        evaluator=evaluator or evaluator_of(toy_report()),
    )


def publish_claimed(stack, folder, report, **info) -> int:
    """`modex publish`'s library call on a folder carrying ``report`` (its claim is sent)."""
    published = publish(
        stack.chain,
        stack.signers["seller"],
        stack.store(),
        stack.vault(),
        claimed_model(folder, report),
        ListingInfo(name=folder.name, **info),
        price_wei=10**16,
    )
    assert published.work_digest == work_digest(report)
    return published.model_id
