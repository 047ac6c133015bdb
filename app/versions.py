"""The model page's version history (issue 15 §1): each version's number, when it was published,
its model hash and its own validation status, from the index (``Indexer.versions_of``); a
status never carries over to other weights. ``model_versions`` is the template's function."""

from __future__ import annotations

from flask import Blueprint

from app.resources import get_indexer

bp = Blueprint("versions", __name__)


@bp.app_context_processor
def _template_functions() -> dict:
    return {"model_versions": model_versions}


def model_versions(model_id: int) -> list[dict]:
    """The model's versions, newest first (the latest is the one sold now)."""
    return list(reversed(get_indexer().versions_of(model_id)))
