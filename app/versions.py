"""The model page's version history (issue 15 §1, §5): each version's number, when it was
published, its model hash and its own validation status, from the index (``Indexer.versions_of``);
a status never carries over to other weights. Each version's own metadata (docs/formats.md §6)
gives its metrics, drawn side by side in an inline SVG (``versions_chart_svg``), and its card's
changelog entry. ``model_versions`` and ``licence_updates`` are the template's functions.

What a licence holder is told about newer versions (``licence_updates``) is read from the chain
for the one wallet, as ``modex fetch`` reads it (node/versionfetch.py): the index does not keep
``VersionKeyDelivered`` events, and entitlement depends on the update window in force now.
"""

from __future__ import annotations

import logging
import math
import re

from flask import Blueprint, current_app
from markupsafe import Markup, escape

from app import session_keys
from app.helpers import STATUS_NAMES
from app.lookups import listing_metadata, my_purchase
from app.resources import get_chain, get_indexer
from ml.evaluate import METRIC_NAMES
from node import versionfetch, versions
from node.errors import ModexError
from node.protocol import ModelStatus

log = logging.getLogger(__name__)
bp = Blueprint("versions", __name__)

# The metrics the chart draws (ml/evaluate.py's names), as the page names them.
METRIC_LABELS = {"accuracy": "accuracy", "macro_f1": "macro-F1"}
CHART_METRICS = tuple((key, METRIC_LABELS.get(key, key)) for key in METRIC_NAMES)
# Versions' metadata documents kept in memory: a CID names immutable JSON, and versions after
# the first are not in the index's metadata cache (it holds the listings' only).
METADATA_CACHE_SIZE = 512
_CACHE = "modex.version_metadata"
# A retrained version's card ends with "## Changelog" and one "- version N: ..." line per
# retraining, newest first (ml/retrain.py's changelog_section): the first is this version's own.
_CHANGELOG = re.compile(r"^## Changelog[ \t]*$(?P<section>.*?)(?=^## |\Z)", re.M | re.S)
_ENTRY = re.compile(r"^- (?:version \d+: )?(?P<entry>.+)$", re.M)


@bp.app_context_processor
def _template_functions() -> dict:
    return {
        "model_versions": model_versions,
        "versions_chart_svg": versions_chart_svg,
        "licence_updates": licence_updates,
        "validation_words": validation_words,
    }


def model_versions(model_id: int) -> list[dict]:
    """The model's versions, newest first (the latest is the one sold now), each with its
    ``metrics`` (metric → a fraction from 0 to 1, or None where its metadata has none) and its
    ``changelog`` entry (None without one)."""
    indexer = get_indexer()
    rows = []
    for row in reversed(indexer.versions_of(model_id)):
        meta = version_metadata(indexer, row["metadata_cid"])
        metrics = meta.get("metrics")
        rows.append(
            {
                **row,
                "metrics": {key: chart_value(metrics, key) for key, _label in CHART_METRICS},
                "changelog": changelog_entry(meta.get("card")),
            }
        )
    return rows


def version_metadata(indexer, cid: str) -> dict:
    """A version's public metadata (docs/formats.md §6), kept in this app's memory once read:
    {} while unavailable (tried again on the next call)."""
    cache = current_app.extensions.setdefault(_CACHE, {})
    meta = cache.get(cid)
    if meta is None:
        meta = listing_metadata(indexer, cid)
        if meta and len(cache) < METADATA_CACHE_SIZE:  # {}: unavailable now, tried again later
            cache[cid] = meta
    return meta


def chart_value(metrics, key: str) -> float | None:
    """``metrics[key]`` when it is a number from 0 to 1 (what the chart can draw), else None:
    seller-written metadata may hold anything, or nothing (docs/formats.md §6)."""
    value = metrics.get(key) if isinstance(metrics, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 <= value <= 1 else None


def changelog_entry(card) -> str | None:
    """The newest entry of the card's ``## Changelog`` section (its own version's), without the
    line's count (it matches the on-chain number only for a line of retrainings published in
    order, docs/formats.md §11) and the Markdown's backticks; None for a card without one."""
    section = _CHANGELOG.search(card) if isinstance(card, str) else None
    entry = _ENTRY.search(section.group("section")) if section else None
    return entry.group("entry").replace("`", "").strip() if entry else None


def _number(value: float) -> str:
    return f"{value:.3g}"


def validation_words(version: dict) -> str:
    """A version's validation (an ``Indexer.versions_of`` row) in words: the status its cycle
    settled (Verified, Disputed, Metrics disputed), "being validated" while its cycle runs, "not
    validated" when no cycle attested it."""
    if version["status"] != ModelStatus.UNVERIFIED.word:
        return STATUS_NAMES.get(version["status"], version["status"])
    return "being validated" if version.get("validating") else "not validated"


def chart_summary(versions_: list[dict]) -> str:
    """The chart in words (its SVG <desc>): one sentence per version, oldest first."""
    sentences = []
    for v in sorted(versions_, key=lambda v: v["version"]):
        values = ", ".join(
            f"{label} {_number(v['metrics'][key])}"
            if v["metrics"][key] is not None
            else f"no {label} listed"
            for key, label in CHART_METRICS
        )
        sentences.append(f"Version {v['version']} ({validation_words(v)}): {values}.")
    return " ".join(sentences)


def versions_chart_svg(versions_: list[dict], plot_h: int = 100) -> Markup:
    """Each version's metrics as grouped bars, oldest version on the left, drawn server-side as
    inline SVG (as the vote histogram is): the value above each bar, the version's number and
    validation status under its group; a metric its metadata lacks is a gap marked "—"."""
    ordered = sorted(versions_, key=lambda v: v["version"])
    axis_w, top, labels_h, group_w, bar_w, bar_gap = 30, 26, 30, 84, 24, 4
    width = axis_w + group_w * len(ordered)
    height = top + plot_h + labels_h
    base = top + plot_h
    parts = [
        f'<svg class="versions-chart" role="img" aria-labelledby="versions-chart-title '
        f'versions-chart-desc" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<title id="versions-chart-title">'
        f"{' and '.join(label for _key, label in CHART_METRICS).capitalize()} of each version"
        f'</title><desc id="versions-chart-desc">{escape(chart_summary(ordered))}</desc>'
    ]
    for n, (key, label) in enumerate(CHART_METRICS):  # the legend
        x = axis_w + n * 90
        parts.append(
            f'<rect x="{x}" y="2" width="10" height="10" class="chart-bar chart-{key}"/>'
            f'<text x="{x + 14}" y="11" class="chart-legend">{label}</text>'
        )
    for tick in (0, 0.5, 1):
        y = base - round(plot_h * tick)
        parts.append(
            f'<line x1="{axis_w - 4}" x2="{width}" y1="{y}" y2="{y}" class="chart-grid"/>'
            f'<text x="{axis_w - 6}" y="{y + 3}" text-anchor="end" class="chart-axis">'
            f"{tick:g}</text>"
        )
    for i, v in enumerate(ordered):
        number = int(v["version"])
        left = axis_w + i * group_w + (group_w - 2 * bar_w - bar_gap) // 2
        for n, (key, label) in enumerate(CHART_METRICS):
            x, value = left + n * (bar_w + bar_gap), v["metrics"][key]
            middle = x + bar_w // 2
            where = f'data-version="{number}" data-metric="{key}"'
            if value is None:
                parts.append(
                    f'<text x="{middle}" y="{base - 4}" text-anchor="middle" class="chart-gap" '
                    f"{where}><title>version {number}: no {label} listed</title>—</text>"
                )
                continue
            h = round(plot_h * value)
            parts.append(
                f'<rect x="{x}" y="{base - h}" width="{bar_w}" height="{h}" '
                f'class="chart-bar chart-{key}" {where} data-value="{_number(value)}">'
                f"<title>version {number}: {label} {_number(value)}</title></rect>"
                f'<text x="{middle}" y="{base - h - 3}" text-anchor="middle" '
                f'class="chart-value">{_number(value)}</text>'
            )
        centre = axis_w + i * group_w + group_w // 2
        parts.append(
            f'<text x="{centre}" y="{base + 13}" text-anchor="middle" class="chart-version">'
            f'version {number}</text><text x="{centre}" y="{base + 26}" text-anchor="middle" '
            f'class="chart-status status-{escape(v["status"])}">'
            f"{escape(validation_words(v))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def licence_updates(model_id: int, latest: int) -> dict | None:
    """For a wallet whose licence of the model is delivered, when the model has a version newer
    than the one its purchase's key opens: ``opens``, and ``newer`` (newest first), each version
    with its ``state``: ``delivered`` (its ``VersionKeyDelivered`` key is on-chain for this
    wallet), ``waiting`` (entitled: the seller's worker has not delivered it yet) or ``outside``
    (published after the update window, given as ``window``, closed for this licence). None
    otherwise, and when the chain cannot be read now (logged: the page still shows)."""
    address = session_keys.current_address()
    if address is None or latest < 2:
        return None
    purchase = my_purchase(model_id)
    if purchase is None or purchase["state"] != "delivered":
        return None
    try:
        return _updates(get_chain(), address, model_id, purchase["purchase_id"], latest)
    except ModexError as exc:
        log.warning("model %s: cannot read %s's newer versions: %s", model_id, address, exc)
        return None


def _updates(chain, address: str, model_id: int, purchase_id: int, latest: int) -> dict | None:
    delivered = chain.events("KeyDelivered", purchaseId=purchase_id)
    if not delivered:  # the index is ahead of this node's view of the chain
        return None
    opens = versions.delivered_version(
        chain, model_id, delivered[-1]["blockNumber"], delivered[-1]["logIndex"]
    )
    if latest <= opens:
        return None
    held = versionfetch.later_version_keys(chain, address, model_id)
    market = chain.marketplace.functions
    newer = []
    for number in range(latest, opens, -1):
        if number in held:
            state = "delivered"
        elif chain.call(market.entitledTo(model_id, number, address)):
            state = "waiting"
        else:
            state = "outside"
        newer.append({"version": number, "state": state})
    window = None
    if any(v["state"] == "outside" for v in newer):
        seconds = int(chain.call(chain.registry.functions.updateWindow(model_id)))
        window = versions.update_window_words(seconds)
    return {"opens": opens, "newer": newer, "window": window, "model_id": model_id}
