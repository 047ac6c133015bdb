"""Try it's last answer, kept in the visitor's session for the "wrong? correct it" form beside it
(app/feedback.py): Try it (app.market) remembers it, the form offers it and forgets it once the
correction is sent. It lives in the signed session cookie of the visitor who typed it."""

from __future__ import annotations

from flask import session

from node.feedback import MAX_INPUT_CHARS, MAX_OUTPUT_CHARS

LAST_ANSWER = "feedback_answer"  # {"model_id", "text", "output"}


def remember_answer(model_id: int, text: str, answer: dict) -> None:
    """Keep Try it's answer on ``model_id``: the text and the first output's label."""
    first = (answer.get("outputs") or [{}])[0]
    session[LAST_ANSWER] = {
        "model_id": model_id,
        "text": text[:MAX_INPUT_CHARS],
        "output": str(first.get("label", ""))[:MAX_OUTPUT_CHARS],
    }


def last_answer(model_id: int) -> dict:
    """The session's last Try it answer on ``model_id`` ({} if none)."""
    found = session.get(LAST_ANSWER)
    return found if isinstance(found, dict) and found.get("model_id") == model_id else {}


def forget_answer() -> None:
    session.pop(LAST_ANSWER, None)
