"""A hosted exchange under load (issue 16 §3): visitors browse the market, search, open model
pages and sign in (SIWE, eth-account keys), pausing between pages, against `modex up --hosted`.

    .venv/bin/python benchmarks/hosted_load.py [--listings 1000] [--visitors 200] [--duration 60]
        [--pause 1.0] [--step-duration 20] [--p99-ms 300] [--baseline-clients 100]

1. Seeding: one funded dev account lists ``--listings`` real listings on the local chain (the
   anvil `modex up` runs, its state in the data dir): one small model sealed and pinned once,
   then per listing its own metadata JSON pinned to the embedded store and `list()` sent without
   waiting (anvil mines each as it comes). Then `modex up --hosted --no-demo` starts on that data
   dir; its follower indexes every listing and its metadata before the clock starts.
2. Baseline ("today's ~200 page requests/s", measured here the way the issue's figure was):
   ``--baseline-clients`` clients without pauses, for ``--baseline-duration`` s, on the same
   pages, against the server as it stood when the issue measured it: one UI process, the
   market's listings cache off ($MODEX_LISTINGS_CACHE_SIZE=0: every market page reads the index
   and renders its table), abnf's pure-Python parser for the sign-in checks ($ABNF_NO_RUST=1).
   With ``--baseline-ref COMMIT`` that is the code of COMMIT itself, run from a git worktree with
   this venv (BENCHMARKS.md's runs use the last commit before the hosted-load work); without it,
   this code with those parts turned off (BASELINE_ENV: also $MODEX_UI_PROCESSES=1), which is
   close but not the same code. A server of its own, started first on a copy of the seeded data
   dir.
3. The run: ``--visitors`` visitors for ``--duration`` s, each with its own cookies and key,
   pausing about ``--pause`` s between pages (from half to one and a half times it, drawn per
   page) and starting at its own point of the journey, spread over one journey's time: people
   arrive at any moment and read at their own pace. (Started within the first pause, with equal
   pauses, every visitor would open the same kind of page in the same second, journey after
   journey: the sign-in second then packed all 200 sign-ins, 200 signatures made by the load
   generator and 400 requests into one second of the two cores.) Latency of every request,
   errors (any status >= 400 or a failed connection), and the memory of the server's processes
   at the start and the end: VmRSS and PSS. Before the run, the same visitors browse for
   ``--warmup`` s, unmeasured but for the memory it takes (warmup_rss_mb, warmup_pss_mb): each
   of the processes' threads opens its index connection and maps the index, templates compile,
   caches fill. The run's growth is what the server keeps taking once warm (a leak shows there).
4. The ramp: more visitors, ``--step-duration`` s a step (``--ramp-factor`` times more each
   step), until a step's p99 passes ``--p99-ms`` or it has errors; the highest rate of requests
   a step served with p99 <= ``--p99-ms`` and no errors is ``max_rps_p99_300``.

The last line is JSON: errors, p50_ms, p99_ms, rss_growth_mb (the run at ``--visitors``, once
warm; warmup_rss_mb and warmup_pss_mb: what the warm-up took; with
rss_growth_by_kind_mb, its heap (anon) and mapped-file (file) parts), pss_growth_mb (the same
growth with each physical page counted once: VmRSS counts a page of the index file once per
SQLite connection that maps it), max_rps_p99_300, baseline_rps, ratio_to_baseline, the ramp's
steps, and the machine's state.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import aiohttp  # noqa: E402
import siwe  # noqa: E402
from eth_account import Account  # noqa: E402
from eth_account.messages import encode_defunct  # noqa: E402

from app.lookups import TASKS  # noqa: E402
from benchmarks.common import machine_state, print_figures, scratch_dir  # noqa: E402
from modex.exchange import Exchange  # noqa: E402
from node.config import load_config  # noqa: E402
from node.devchain import free_port  # noqa: E402
from node.onchain import canonical_json  # noqa: E402
from node.procs import proc_stat  # noqa: E402
from node.publish import ListingInfo, prepare  # noqa: E402

PASSWORD = "hosted-load-benchmark"
WORDS = ("sentiment", "vision", "translation", "speech", "summary", "embedding", "ranking")
# The server as the issue measured "today's ~200 requests/s", emulated by this code: one UI
# process, no listings cache, abnf's pure-Python parser (abnf-rust installed, but not used).
BASELINE_ENV = {"MODEX_UI_PROCESSES": "1", "MODEX_LISTINGS_CACHE_SIZE": "0", "ABNF_NO_RUST": "1"}
# The same for an older checkout (--baseline-ref), which had one UI process and no abnf-rust.
OLD_CODE_ENV = {"MODEX_LISTINGS_CACHE_SIZE": "0", "ABNF_NO_RUST": "1"}
LIST_GAS = 600_000  # list() with its metadata CID; given so that no estimate runs per listing
ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listings", type=int, default=1000)
    p.add_argument("--visitors", type=int, default=200)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of the main run")
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of browsing before it")
    p.add_argument("--pause", type=float, default=1.0, help="seconds a visitor waits per page")
    p.add_argument("--step-duration", type=float, default=20.0, help="seconds per ramp step")
    p.add_argument("--ramp-factor", type=float, default=1.25)
    p.add_argument("--max-steps", type=int, default=8)
    p.add_argument("--p99-ms", type=float, default=300.0)
    p.add_argument("--baseline-clients", type=int, default=100)
    p.add_argument("--baseline-duration", type=float, default=20.0)
    p.add_argument(
        "--baseline-ref",
        default=None,
        help="a git commit whose code is the baseline server (run from a worktree of it with "
        "this venv); default: this code with its later parts turned off (BASELINE_ENV)",
    )
    p.add_argument("--tmpdir", default=None)
    return p.parse_args(argv)


# ---- seeding: real listings on the local chain ---------------------------------------------


def listing_name(i: int) -> str:
    return f"{WORDS[i % len(WORDS)]} model {i}"


def seed(data: Path, n: int, say=print) -> None:
    """``n`` listings on a new local chain in ``data`` by its first dev account."""
    config = load_config(
        None, env={}, data_dir=data, chain="local", ipfs="embedded", gateway_port=0
    )
    exchange = Exchange.start(config, password=PASSWORD, start_threads=False)
    try:
        model_dir = data / "seed-model"
        model_dir.mkdir()
        (model_dir / "model.safetensors").write_bytes(os.urandom(4096))
        (model_dir / "README.md").write_text("A small model listed many times by the benchmark.\n")
        prepared = prepare(
            model_dir,
            exchange.store,
            exchange.vault,
            ListingInfo(name="seed", task=TASKS[0]),
            cid_profile=config.cid_profile,
        )
        registry, funder = exchange.chain.registry, exchange.dev_funder
        started = time.perf_counter()
        sent = None
        for i in range(1, n + 1):
            metadata = {
                **prepared.metadata,
                "name": listing_name(i),
                "description": f"Listing {i} of the hosted load benchmark, for {WORDS[i % 7]}.",
                "task": TASKS[i % len(TASKS)],
            }
            cid = exchange.store.put(BytesIO(canonical_json(metadata)), profile=config.cid_profile)
            price = (i % 97 + 1) * 10**15
            sent = registry.functions.list(prepared.model_hash, cid, price).transact(
                {"from": funder, "gas": LIST_GAS}
            )
        if sent is not None:
            receipt = exchange.chain.w3.eth.wait_for_transaction_receipt(sent, timeout=120)
            assert receipt["status"] == 1, receipt
        say(f"seeded {n} listings in {time.perf_counter() - started:.1f} s", flush=True)
    finally:
        exchange.stop()


# ---- the server ------------------------------------------------------------------------------


@dataclass
class Server:
    """`modex up --hosted --no-demo` on a data dir, its output in log_path."""

    process: subprocess.Popen
    url: str
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, data: Path, env: dict | None = None, timeout: float = 300.0, code: Path = ROOT
    ) -> Server:
        """``code``: the checkout whose `modex` runs (this one, or the baseline's worktree)."""
        log_path = data / "modex-up.log"
        command = [sys.executable, "-m", "modex", "up", "--hosted", "--no-demo"]
        command += ["--data-dir", str(data), "--port", str(free_port()), "--gateway-port", "0"]
        process = subprocess.Popen(
            command,
            cwd=code,
            env={
                **os.environ,
                "MODEX_VAULT_PASSWORD": PASSWORD,
                "PYTHONUNBUFFERED": "1",
                **(env or {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = cls(process, "", log_path)
        up = threading.Event()

        def drain():
            with open(log_path, "w") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    server.lines.append(line)
                    found = re.search(r"Modex is up at (http://\S+)", line)
                    if found:
                        server.url = found.group(1)
                        up.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not up.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("modex up did not start:\n" + "".join(server.lines[-30:]))
        return server

    def ui_pids(self) -> list[int]:
        """The server's processes: `modex up` and the UI processes it started beside it
        (multiprocessing's spawned children; not its anvil, the chain)."""
        pids = [self.process.pid]
        listed = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*/children"):
            try:  # each thread's children apart: a replacement is started by a watcher thread
                listed += task.read_text().split()
            except OSError:  # a thread that ended since
                continue
        for child in listed:
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:  # ended since
                continue
            if b"spawn_main" in command:
                pids.append(int(child))
        return pids

    def memory_mb(self) -> dict[str, float]:
        """The server's resident memory, summed over its processes (ui_pids): VmRSS and its
        parts, RssAnon (heap: what they allocated) and RssFile (file pages they map, such as each
        SQLite connection's mmap of the index: the same page of the file counts once per
        mapping); and PSS (smaps_rollup), which counts each physical page once (a page mapped n
        times, 1/n per mapping)."""
        found: dict[str, float] = {}
        for pid in self.ui_pids():
            for source, wanted in (
                ("status", {"VmRSS:": "rss", "RssAnon:": "anon", "RssFile:": "file"}),
                ("smaps_rollup", {"Pss:": "pss"}),
            ):
                for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
                    name = line.split(maxsplit=1)[0] if line else ""
                    if name in wanted:
                        key = wanted[name]
                        found[key] = found.get(key, 0.0) + int(line.split()[1]) / 1024
        if "rss" not in found:
            raise RuntimeError("no VmRSS for the server")
        return found

    def cpu_s(self) -> float:
        """The server's CPU time so far (user + system, all threads of all its processes)."""
        total = 0.0
        for pid in self.ui_pids():
            fields = proc_stat(pid)
            if fields is None:
                raise RuntimeError(f"UI process {pid} ended during the run")
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(2)  # Ctrl-C: the local chain saves its state and stops
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def wait_indexed(url: str, n: int, timeout: float = 600.0) -> None:
    """Until the index holds the ``n`` listings with their metadata (the last one by name)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(f"{url}/api/models", params={"q": listing_name(n)}) as r:
                if r.status == 200 and (await r.json())["total"] >= 1:
                    async with http.get(f"{url}/api/models") as everything:
                        if (await everything.json())["total"] >= n:
                            return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the index did not reach {n} listings in {timeout:.0f} s")
            await asyncio.sleep(0.5)


# ---- visitors --------------------------------------------------------------------------------


@dataclass
class Tally:
    """Every request's latency (seconds) and the errors, from ``since`` on."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    by_page: dict[str, list[float]] = field(default_factory=dict)  # page kind -> latencies

    def add(self, path: str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.by_page.setdefault(page_kind(path), []).append(seconds)

    def pages(self) -> dict:
        """Each kind of page's count, median and p99 (ms): where the time goes."""
        return {
            kind: {
                "n": len(values),
                "p50_ms": round(percentile(sorted(values), 0.50) * 1000, 1),
                "p99_ms": round(percentile(sorted(values), 0.99) * 1000, 1),
            }
            for kind, values in sorted(self.by_page.items())
        }

    def summary(self, seconds: float) -> dict:
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered),
            "rps": round(len(ordered) / seconds, 1),
            "errors": len(self.errors),
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 1) if ordered else None,
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 1) if ordered else None,
        }


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def page_kind(path: str) -> str:
    """market, search, market_page, model, nonce, sign_in."""
    if path.startswith("/models/"):
        return "model"
    if path.startswith("/auth/"):
        return "nonce" if path == "/auth/nonce" else "sign_in"
    if path.startswith("/?q="):
        return "search"
    return "market_page" if path.startswith("/?") else "market"


JOURNEY_PAGES = 6  # the pages of one journey (Visitor.pages)


class Visitor:
    """One person: the market, a search, a model page, signing in, another page of the market
    sorted by price, another model page; a pause after each page."""

    def __init__(self, http: aiohttp.ClientSession, url: str, chain_id: int, n: int, seed: int):
        self.http, self.url, self.chain_id, self.n = http, url, chain_id, n
        self.random = random.Random(seed)
        self.account = Account.create()
        self.csrf = ""

    async def get(self, tally: Tally, path: str) -> str:
        return await self.request(tally, "GET", path)

    async def request(self, tally: Tally, method: str, path: str, **kw) -> str:
        started = time.perf_counter()
        try:
            async with self.http.request(method, self.url + path, **kw) as r:
                body = await r.text()
                status = r.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            tally.errors.append(f"{method} {path}: {type(exc).__name__} {exc}")
            return ""
        tally.add(path, time.perf_counter() - started)
        if status >= 400:
            tally.errors.append(f"{method} {path}: HTTP {status} {body[:200]}")
        found = re.search(r'name="csrf-token" content="([^"]+)"', body)
        if found:
            self.csrf = found.group(1)
        return body

    async def sign_in(self, tally: Tally) -> None:
        body = await self.request(tally, "GET", "/auth/nonce")
        nonce = re.search(r'"nonce":\s*"([^"]+)"', body)
        if nonce is None:
            return
        host = self.url.split("://", 1)[1]
        text = siwe.SiweMessage(
            domain=host,
            address=self.account.address,
            uri=self.url,
            version="1",
            chain_id=self.chain_id,
            nonce=nonce.group(1),
            issued_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            statement="Sign in to this Modex exchange.",
        ).prepare_message()
        signature = self.account.sign_message(encode_defunct(text=text)).signature
        await self.request(
            tally,
            "POST",
            "/auth/siwe",
            json={"message": text, "signature": "0x" + bytes(signature).hex()},
            headers={"X-CSRFToken": self.csrf, "Origin": self.url},
        )

    def pages(self):
        """One journey: JOURNEY_PAGES pages (sign-in counts as one)."""
        pick = self.random
        yield "/"
        yield f"/?q={pick.choice(WORDS)}"
        yield f"/models/{pick.randint(1, self.n)}"
        yield "sign-in"
        yield f"/?sort=price&page={pick.randint(1, 5)}"
        yield f"/models/{pick.randint(1, self.n)}"

    async def browse(self, tally: Tally, stop_at: float, pause: float) -> None:
        """Journey after journey until ``stop_at``, a pause of 0.5 to 1.5 times ``pause`` (drawn)
        after each page. A pause that would end past ``stop_at`` ends the visit: cut short to
        ``stop_at`` and followed by one more page, every visitor then reading a page would have
        asked for its next one at the same instant, a burst no visitor makes."""
        while True:
            for page in self.pages():
                if page == "sign-in":
                    await self.sign_in(tally)
                else:
                    await self.get(tally, page)
                wait = pause * self.random.uniform(0.5, 1.5)
                if time.monotonic() + wait >= stop_at:
                    return
                await asyncio.sleep(wait)


async def visit(url: str, chain_id: int, n: int, visitors: int, seconds: float, pause: float):
    """``visitors`` visitors for ``seconds``, their starts spread over one journey's time (its
    pages times ``pause``), so that at any moment they are at every point of it."""
    tally = Tally()
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [
        aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=1),
            cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies of 127.0.0.1 (an IP address)
        )
        for _ in range(visitors)
    ]
    try:
        stop_at = time.monotonic() + seconds

        async def one(k: int, http):
            await asyncio.sleep(JOURNEY_PAGES * pause * k / max(1, visitors))
            await Visitor(http, url, chain_id, n, seed=k).browse(tally, stop_at, pause)

        started = time.monotonic()
        await asyncio.gather(*(one(k, http) for k, http in enumerate(sessions)))
        return tally, time.monotonic() - started
    finally:
        await asyncio.gather(*(http.close() for http in sessions))


async def closed_loop(url: str, chain_id: int, n: int, clients: int, seconds: float):
    """``clients`` visitors without pauses: the most the server serves (the baseline)."""
    return await visit(url, chain_id, n, clients, seconds, pause=0.0)


async def chain_id_of(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/api/health") as r:
        return int((await r.json())["chain_id"])


# ---- the run ---------------------------------------------------------------------------------


def measure_baseline(data: Path, args) -> dict:
    """Closed-loop clients on the same pages, against the server as the issue measured it: the
    code of ``--baseline-ref`` (a worktree of it, run with this venv) or, without it, this code
    with its later parts turned off (BASELINE_ENV)."""
    copy = data.parent / "baseline-node"
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("modex-up.log"))
    with baseline_code(data.parent, args.baseline_ref) as code:
        env = OLD_CODE_ENV if args.baseline_ref else BASELINE_ENV
        server = Server.start(copy, env=env, code=code)
        try:
            asyncio.run(wait_indexed(server.url, args.listings))
            chain_id = asyncio.run(chain_id_of(server.url))
            tally, seconds = asyncio.run(
                closed_loop(
                    server.url,
                    chain_id,
                    args.listings,
                    args.baseline_clients,
                    args.baseline_duration,
                )
            )
        finally:
            server.stop()
    return {
        **tally.summary(seconds),
        "pages": tally.pages(),
        "code": args.baseline_ref or "emulated",
    }


@contextlib.contextmanager
def baseline_code(scratch: Path, ref: str | None):
    """This checkout, or a worktree of ``ref`` in ``scratch`` (removed after), sharing this
    checkout's node_modules (its anvil)."""
    if not ref:
        yield ROOT
        return
    tree = scratch / "baseline-code"
    added = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
        capture_output=True,
        text=True,
    )
    if added.returncode != 0:
        raise SystemExit(
            f"--baseline-ref {ref}: git cannot check it out ({added.stderr.strip()}); a shallow "
            "clone lacks it: `git fetch --unshallow`, or leave out --baseline-ref"
        )
    try:
        (tree / "node_modules").symlink_to(ROOT / "node_modules")
        yield tree
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )


def ramp(server: Server, chain_id: int, args, first: int) -> list[dict]:
    """More visitors a step until p99 passes the bound or errors come."""
    steps = []
    visitors = first
    for _ in range(args.max_steps):
        visitors = max(visitors + 1, int(visitors * args.ramp_factor))
        tally, seconds = asyncio.run(
            visit(server.url, chain_id, args.listings, visitors, args.step_duration, args.pause)
        )
        step = {"visitors": visitors, **tally.summary(seconds)}
        print(f"ramp: {step}", flush=True)
        steps.append(step)
        if step["errors"] or step["p99_ms"] is None or step["p99_ms"] > args.p99_ms:
            break
    return steps


def main(argv=None) -> int:
    args = parse_args(argv)
    state = machine_state()
    with scratch_dir("modex-hosted-load-", args.tmpdir) as tmp:
        data = tmp / "node"
        data.mkdir()
        seed(data, args.listings)
        baseline = measure_baseline(data, args)
        print(
            f"baseline (closed loop, the server as the issue measured it): {baseline}", flush=True
        )
        server = Server.start(data)
        try:
            asyncio.run(wait_indexed(server.url, args.listings))
            chain_id = asyncio.run(chain_id_of(server.url))
            memory_cold = server.memory_mb()
            asyncio.run(
                visit(server.url, chain_id, args.listings, args.visitors, args.warmup, args.pause)
            )
            memory_start = server.memory_mb()
            ui_processes = len(server.ui_pids())
            cpu_start = (server.cpu_s(), time.process_time())
            tally, seconds = asyncio.run(
                visit(server.url, chain_id, args.listings, args.visitors, args.duration, args.pause)
            )
            memory_end = server.memory_mb()
            run = {"visitors": args.visitors, **tally.summary(seconds), "pages": tally.pages()}
            served = max(1, run["requests"])
            run["server_cpu_ms_per_request"] = round(
                (server.cpu_s() - cpu_start[0]) * 1000 / served, 2
            )
            run["client_cpu_ms_per_request"] = round(
                (time.process_time() - cpu_start[1]) * 1000 / served, 2
            )
            print(f"run: {run}", flush=True)
            for error in tally.errors[:5]:
                print(f"  error: {error}", flush=True)
            steps = ramp(server, chain_id, args, args.visitors)
        finally:
            server.stop()
    held = [
        s["rps"]
        for s in [run, *steps]
        if not s["errors"] and s["p99_ms"] is not None and s["p99_ms"] <= args.p99_ms
    ]
    max_rps = max(held, default=0.0)
    print_figures(
        {
            "listings": args.listings,
            "visitors": args.visitors,
            "ui_processes": ui_processes,
            "duration_s": args.duration,
            "errors": run["errors"],
            "p50_ms": run["p50_ms"],
            "p99_ms": run["p99_ms"],
            "rps": run["rps"],
            "warmup_s": args.warmup,
            "warmup_rss_mb": round(memory_start["rss"] - memory_cold["rss"], 1),
            "warmup_pss_mb": round(memory_start["pss"] - memory_cold["pss"], 1),
            "rss_growth_mb": round(memory_end["rss"] - memory_start["rss"], 1),
            "pss_growth_mb": round(memory_end["pss"] - memory_start["pss"], 1),
            "rss_growth_by_kind_mb": {
                kind: round(memory_end[kind] - memory_start[kind], 1)
                for kind in ("anon", "file")
                if kind in memory_start and kind in memory_end
            },
            "max_rps_p99_300": max_rps,
            "baseline_rps": baseline["rps"],
            "baseline_p99_ms": baseline["p99_ms"],
            "baseline_pages": baseline["pages"],
            "baseline_code": baseline["code"],
            "pages": run["pages"],
            "server_cpu_ms_per_request": run["server_cpu_ms_per_request"],
            "client_cpu_ms_per_request": run["client_cpu_ms_per_request"],
            "ratio_to_baseline": round(max_rps / baseline["rps"], 2) if baseline["rps"] else None,
            "ramp": steps,
            **state,
        }
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
