"""Every response of the UI carries the security headers (CSP without inline script, no framing,
nosniff), and no template holds a script the CSP would block: an inline <script> or an on*=
handler (issue 16 §5)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app import SECURITY_HEADERS
from tests.app.conftest import unlock

TEMPLATES = Path(__file__).resolve().parents[2] / "app" / "templates"
# What a route's parameters are filled with: a listed model, a job, a transaction and a browser
# wallet's upload unknown to the node (their 404 pages and JSON errors are responses too).
UNKNOWN_JOB = "0" * 32
UNKNOWN_TX = "0x" + "ab" * 32


def get_urls(app, model_id: int) -> list[str]:
    """One URL for every GET route of the app (static: the app's own script)."""
    values = {
        "model_id": model_id,
        "job_id": UNKNOWN_JOB,
        "tx_hash": UNKNOWN_TX,
        "upload_id": UNKNOWN_JOB,
    }
    urls = []
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods:
                continue
            if rule.endpoint == "static":
                urls.append("/static/modex.js")
                continue
            urls.append(rule.build({k: values[k] for k in rule.arguments})[1])
    return urls


def assert_secured(response, url: str) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (url, name, response.headers)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("role", [None, "buyer"])
def test_every_page_and_json_response_sends_the_headers(app, client, stack, listed, role):
    if role:
        unlock(client, stack, role)
    urls = get_urls(app, listed["plain"])
    assert {"/", "/wallet/", "/validate/", "/api/health", f"/models/{listed['plain']}"} <= set(urls)
    for url in urls:
        response = client.get(url)
        assert_secured(response, url)
        response.close()
    assert_secured(client.get("/no-such-page"), "/no-such-page")  # the 404 page
    # A JSON refusal (no CSRF token) and a form POST's redirect carry them as well.
    refused = client.post("/api/tx/prepare", json={"action": "buy"})
    assert refused.status_code >= 400 and refused.is_json
    assert_secured(refused, "/api/tx/prepare")
    assert_secured(client.post("/wallet/lock"), "/wallet/lock")


class InlineScripts(HTMLParser):
    """Collects what a CSP of script-src 'self' would block in one template."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name.lower().startswith("on"):
                self.found.append(f"<{tag} {name}=...> handler")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}='javascript:...'>")
        if tag == "script":
            self.in_script = True
            if not dict(attrs).get("src"):
                self.found.append("<script> without src")

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.found.append(f"inline script body {data.strip()[:40]!r}")


def inline_scripts(text: str) -> list[str]:
    parser = InlineScripts()
    parser.feed(text)
    parser.close()
    # Jinja can hide a handler from the parser (in a {% if %} inside a tag): a plain look too.
    loose = re.findall(r"<[^>]*(?<![\w-])on[a-z]+\s*=", text, re.IGNORECASE)
    return parser.found + [f"handler in {m[:40]!r}" for m in loose]


def test_no_template_holds_an_inline_script_or_handler():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) >= 10
    for template in templates:
        assert inline_scripts(template.read_text()) == [], template.name


@pytest.mark.parametrize(
    "snippet",
    [
        "<script>alert(1)</script>",
        '<button onclick="go()">x</button>',
        '<a href="javascript:go()">x</a>',
        "<div {% if x %}onmouseover='go()'{% endif %}>x</div>",
    ],
)
def test_the_template_check_finds_inline_scripts(snippet):
    assert inline_scripts(f"<p>{snippet}</p>") != []
    assert inline_scripts('<script src="/static/modex.js" defer></script>') == []
