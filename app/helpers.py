"""Small pieces the views share: ETH amounts (parsed by node.amounts), Markdown cards (sanitized),
the vote histogram picture, the template globals, and `require_signer()` for views that sign a
transaction.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

import markdown as md
import nh3
from flask import current_app, flash, redirect, request, session, url_for
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from app import session_keys
from app.errors import format_eth, json_error
from node.amounts import parse_eth  # noqa: F401 (re-exported: the views parse amounts through it)
from node.errors import InputError, ModexError  # noqa: F401 (InputError re-exported: the views raise it)
from node.protocol import ModelStatus
from node.revert_sentences import when

# The indexer's status words (ModelStatus.word) as the badges name them.
STATUS_NAMES = {
    ModelStatus.UNVERIFIED.word: "Unverified",
    ModelStatus.VERIFIED.word: "Verified",
    ModelStatus.METRICS_DISPUTED.word: "Metrics disputed",
    ModelStatus.DISPUTED.word: "Disputed",
}

# Tags a model card may use after Markdown rendering; everything else is stripped by nh3.
CARD_TAGS = {
    "p",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "strong",
    "em",
    "code",
    "pre",
    "blockquote",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "hr",
    "br",
}


class NeedsWallet(ModexError):
    """Raised by require_signer() when the session has no unlocked wallet; its own handler turns
    it into a redirect to the wallet page (pages) or a 401 with this sentence (/api)."""

    def __init__(self):
        super().__init__(
            "Unlock your wallet first (Wallet page); your session has none "
            "unlocked or it timed out."
        )


def local_path(target: str | None, default: str = "") -> str:
    """``target`` when it is a path on this site, else ``default``: the guard for ?next= and other
    redirect targets. Refuses "//host", backslashes ("/\\host" is "//host" to a browser) and control
    characters or spaces (the tab in "/<tab>/host" is dropped on the way to the Location header)."""
    target = target or ""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in target)
    ):
        return default
    return target


def strip_front_matter(text: str) -> str:
    """Model cards open with YAML front matter (hub style); it is data for tools, not prose."""
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("-").lstrip("\n")
    return text


def render_card(text: str | None) -> Markup:
    """Model card Markdown -> HTML, then sanitized by nh3 (no script, no event handlers)."""
    if text is not None and not isinstance(text, str):  # seller-written metadata: any JSON
        return Markup('<p class="muted">The seller\'s model card is not text; it is not shown.</p>')
    return _card_html(text or "")


# A card is part of a version's metadata, which never changes (content-addressed), and a model
# page shows it at every visit: rendering it (a new Markdown parser each time) was a tenth of a
# model page's CPU. The cards of the last pages seen are kept, rendered.
@functools.lru_cache(maxsize=128)
def _card_html(text: str) -> Markup:
    rendered = md.markdown(strip_front_matter(text), extensions=["tables", "fenced_code"])
    clean = nh3.clean(
        rendered,
        tags=CARD_TAGS,
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https", "ipfs"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)


def vote_histogram_svg(counts: dict[int, int], width: int = 260, bar_h: int = 18) -> Markup:
    """Horizontal bars for scores 5..1, drawn server-side as inline SVG (the picture asked for)."""
    total = sum(counts.get(s, 0) for s in range(1, 6))
    peak = max([counts.get(s, 0) for s in range(1, 6)] + [1])
    label_w, count_w = 34, 40
    bar_max = width - label_w - count_w
    height = 5 * (bar_h + 6)
    parts = [
        (
            f'<svg class="histogram" role="img" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f"<title>Votes: {total} in all</title>"
        )
    ]
    for row, score in enumerate(range(5, 0, -1)):
        n = int(counts.get(score, 0))
        y = row * (bar_h + 6)
        w = round(bar_max * n / peak) if n else 0
        parts.append(
            f'<text x="0" y="{y + bar_h - 4}" class="hist-label">{score}★</text>'
            f'<rect x="{label_w}" y="{y}" width="{bar_max}" height="{bar_h}" class="hist-bg"/>'
            f'<rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" class="hist-bar"/>'
            f'<text x="{label_w + bar_max + 6}" y="{y + bar_h - 4}" class="hist-count">{n}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def metric_rows(metrics: dict | None) -> list[tuple[str, str]]:
    """Listing metrics as (name, text) rows: numbers rounded, per-class dicts on one line;
    matrices and bookkeeping fields left to the metadata JSON."""

    def fmt(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    if metrics is not None and not isinstance(metrics, dict):  # seller-written metadata: any JSON
        return [("metrics", "not readable (the listing's metrics are not a JSON object)")]
    rows = []
    for key, value in (metrics or {}).items():
        if key in ("version", "confusion"):
            continue
        if isinstance(value, dict):
            value = " · ".join(f"{k} {fmt(v)}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(fmt(v) for v in value)
        else:
            value = fmt(value)
        rows.append((key.replace("_", " "), value))
    return rows


def score_text(score: float | None, voters: int) -> str:
    """The listing's vote mean (weighted by the price each voter paid) and how many voted."""
    if not voters or score is None:
        return "no votes yet"
    return f"{score:.1f} from {voters} voter{'s' if voters != 1 else ''}"


def short(value: str | bytes | None, keep: int = 6) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = "0x" + value.hex()
    return value if len(value) <= 2 * keep + 3 else f"{value[: keep + 2]}…{value[-keep:]}"


def require_signer():
    """The session's unlocked signer, or NeedsWallet (-> wallet page with a sentence)."""
    signer = session_keys.current_signer()
    if signer is None:
        raise NeedsWallet()
    return signer


def _needs_wallet(exc: NeedsWallet):
    if request.path.startswith("/api/"):
        return json_error("needs_wallet", str(exc), 401)
    flash(
        "Unlock or create a wallet first; your session has none unlocked (or it timed out).",
        "error",
    )
    return redirect(url_for("wallet.index", next=_page_to_return_to()))


def _page_to_return_to() -> str:
    """Where the wallet page sends the person back after unlocking: the page asked for, or for a
    form's POST (buy, vote: POST-only addresses) the page that held the form, ready again."""
    if request.method == "GET":
        return request.full_path
    sender = urlsplit(request.referrer or "")
    if sender.netloc == request.host and local_path(sender.path):
        return sender.path
    parent = request.path.rsplit("/", 1)[0]  # /models/7/buy -> /models/7
    try:
        current_app.url_map.bind_to_environ(request.environ).match(parent, method="GET")
    except HTTPException:
        return ""
    return parent


def init_app(app) -> None:
    app.register_error_handler(NeedsWallet, _needs_wallet)
    app.jinja_env.filters["eth"] = format_eth
    app.jinja_env.filters["short"] = short
    app.jinja_env.filters["card"] = render_card
    app.jinja_env.filters["metric_rows"] = metric_rows
    app.jinja_env.filters["when"] = lambda ts: when(ts) if ts else "—"
    app.jinja_env.globals["status_name"] = lambda s: STATUS_NAMES.get(s, str(s))

    @app.context_processor
    def globals_():
        return {
            "wallet_address": session_keys.current_address(),
            "wallet_unlocked": session_keys.current_signer() is not None,
            "browser_wallet": session.get("browser_wallet"),
            "demo": app.config.get("MODEX_DEMO"),
            "faucet": bool(app.config.get("MODEX_FAUCET_WEI") and app.config.get("MODEX_DEMO")),
        }
