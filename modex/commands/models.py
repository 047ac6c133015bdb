"""`modex models`: a table of listings from the local index (synced from the chain first)."""

from __future__ import annotations

import json

from modex.commandline import add_command, add_node_options
from node.indexer import SORTS
from node.protocol import ModelStatus
from node.stack import Stack


def register(sub) -> None:
    p = add_command(sub, "models", run)
    p.add_argument("--query", "-q", metavar="TEXT", help="words in the name, task or description")
    p.add_argument("--task", metavar="TASK", help="only this task, e.g. text-classification")
    p.add_argument(
        "--status",
        choices=tuple(s.word for s in ModelStatus),
        help="what validators settled: metrics_disputed is the listed files with "
        "other evaluation results than the seller claimed",
    )
    p.add_argument("--sort", choices=tuple(SORTS), default="newest")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--per-page", type=int, default=20)
    p.add_argument("--all", action="store_true", help="include inactive listings")
    p.add_argument("--no-sync", action="store_true", help="read the index as it is")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_node_options(p)


def open_index(stack: Stack, *, sync: bool = True, metadata: bool = True):
    """The configured index, synced unless told not to; listings' metadata is fetched from the
    configured store unless ``metadata`` is False (a command that needs no names)."""
    index = stack.indexer(metadata=metadata)
    if sync:
        index.sync()
    return index


def run(args) -> int:
    """Bring the local index up to date with the chain (unless --no-sync), then print one page of
    listings. Names and tasks come from each listing's metadata JSON when the store can serve
    it; prices and subscription offers are shown in the token each listing is priced in."""
    if args.page < 1 or not 1 <= args.per_page <= 500:
        print("modex: --page must be >= 1 and --per-page 1..500")
        return 2
    index = open_index(Stack.from_args(args), sync=not args.no_sync)
    rows, total = index.list_models(
        query=args.query,
        task=args.task,
        status=args.status,
        sort=args.sort,
        page=args.page,
        per_page=args.per_page,
        active=None if args.all else True,
    )
    if args.json:
        print(json.dumps({"total": total, "page": args.page, "models": rows}, indent=2))
        return 0
    print(render_table(rows))
    first = (args.page - 1) * args.per_page
    shown = f"{first + 1}-{first + len(rows)}" if rows else "none"
    print(f"{shown} of {total} models" + ("" if args.all else " (active)"))
    return 0


def render_table(rows: list[dict]) -> str:
    header = ("ID", "NAME", "TASK", "PRICE", "SUBSCRIPTION", "SCORE", "STATUS", "OWNER")
    lines = [header]
    for r in rows:
        score = (
            f"{r['score']:.1f} ({r['vote_count']})" if r["vote_count"] else "-"
        )  # weighted mean (voters)
        name = r["name"] or "(no metadata)"
        if not r["active"]:
            name += " [inactive]"
        lines.append(
            (
                str(r["model_id"]),
                _clip(name, 32),
                _clip(r["task"] or "-", 20),
                r["price_text"],
                r["subscription"]["text"] if r["subscription"] else "-",
                score,
                r["status"],
                r["owner"][:10] + "…",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
