"""`modex serve` over real HTTP against the naive pipeline, and the voucher path against the licence path.

    .venv/bin/python benchmarks/serve_http.py [--model-dir DIR] [--processes 2] [--clients 32]
        [--requests 2048] [--naive-requests 384] [--backend torch|onnx]

Everything real: an anvil chain started here (stopped by PID), the deployed suite, a listing
bought by a buyer whose key was delivered and given a price per call, and `modex serve` started
as a subprocess (gunicorn, ``--processes`` workers), so every request goes through EIP-712
recovery, the deadline and nonce checks (the SQLite state store), the payment check and the
dynamic batcher. Two ways to pay, in the same run against the same server:
- licence: the buyer's signed requests (Marketplace.hasLicense, cached);
- voucher: another account that holds no licence opened one payment channel per client
  (Channels.openChannel), and each request carries a voucher (node/channels.py's EIP-712
  Voucher, one call price above the last on its channel), stored durably before the answer.
The clients (one text per request, pre-signed, closed loops, one keep-alive http.client
connection each) run in a separate process, as buyers are not inside the server; the CPU time
per request of the server's processes and of the clients is printed beside each run. The order is licence, voucher,
licence; ``voucher_over_licence`` is the voucher run's throughput over the licence runs' mean.

Baseline (same run, same model, same texts): benchmarks/serve.py's naive pipeline, one request at
a time through a plain transformers ``pipeline("text-classification")`` in this process, before
the server starts and after it stops; ratios use the mean of the two. The in-process ceiling
(same run, same model): the batcher of one `modex serve` driven directly by ``--clients``
callers (benchmarks/serve.py's served run), no HTTP; ``http_vs_in_process_32`` is what the HTTP
layer keeps of what the machine's cores serve, ``in_process_vs_naive_32`` what the machine allows.
Without --model-dir the model is a tiny classifier trained here in seconds (the base model's
architecture; speed does not depend on its accuracy).
Targets: ``http_vs_naive_32`` >= 5, ``http_p99_over_p50_32`` <= 3, ``voucher_over_licence``
>= 0.9. Last line: JSON with those figures (named for the --clients given).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.common import print_figures
from benchmarks.paid_service import TINY, licensed_deployment, send_tx, start_modex_serve
from benchmarks.serve import (
    add_naive_option,
    naive_pipeline,
    run_naive,
    serve_levels,
    show_naive,
    summarize,
)

CALL_PRICE = 10**12  # wei per call on the voucher path
ETH = "0x" + "00" * 20
WEEK = 7 * 86400


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", help="a classifier directory (default: a tiny one trained here)")
    p.add_argument("--processes", type=int, default=2, help="modex serve --processes")
    p.add_argument("--backend", choices=("torch", "onnx"), help="modex serve --backend")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=2048, help="requests per measured run")
    add_naive_option(p, "the server runs")
    p.add_argument("--max-length", type=int, default=128)
    return p.parse_args()


def clients_main(url: str, bodies: list, clients: int, out) -> None:
    """In a child process: ``clients`` threads in closed loops, client k sending its own slice of
    ``bodies`` in order (k-th of ``clients`` equal slices), each on one keep-alive connection of
    the standard library's http.client: a buyer's own CPU, kept small, since the clients share
    this machine's cores with the server (httpx cost ~6 ms of CPU per request here, as much as
    the model's share of one)."""
    per = len(bodies) // clients
    address = urlsplit(url)
    encoded = [json.dumps(body).encode() for body in bodies]
    headers = {"Content-Type": "application/json"}
    latencies, errors = [], []
    lock = threading.Lock()

    def run(k):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            for body in encoded[k * per : (k + 1) * per]:
                t0 = time.perf_counter()
                connection.request("POST", address.path, body, headers)
                response = connection.getresponse()
                answer = response.read()
                took = time.perf_counter() - t0
                with lock:
                    if response.status == 200:
                        latencies.append(took)
                    else:
                        errors.append(f"{response.status} {answer[:120]!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start, cpu = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    out.put({"wall": wall, "cpu": cpu, "latencies": latencies, "errors": errors[:3]})


def cpu_seconds(processes: list) -> float:
    """User + system CPU seconds the ``processes`` (psutil) have used so far."""
    return sum(sum(p.cpu_times()[:2]) for p in processes)


def measure(url: str, bodies: list, clients: int, server: list) -> dict:
    """One run of ``bodies`` by ``clients`` in a separate process: summarize()'s figures, the
    latencies themselves, and the CPU per request (ms) of the ``server`` processes (psutil) and
    of the clients."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=clients_main, args=(url, bodies, clients, out))
    server_cpu = cpu_seconds(server)
    proc.start()
    result = out.get()
    proc.join()
    server_cpu = cpu_seconds(server) - server_cpu
    if result["errors"]:
        raise SystemExit(f"requests failed, e.g. {result['errors']}")
    n = len(result["latencies"])
    return {
        **summarize(result["latencies"], result["wall"]),
        "latencies": result["latencies"],
        "server_cpu_ms": 1000 * server_cpu / n,
        "client_cpu_ms": 1000 * result["cpu"] / n,
    }


class Requests:
    """Pre-signed request bodies: the licence holder's, and the payer's with vouchers, each of
    ``clients`` channels counting up its own cumulative amount."""

    def __init__(self, chain, buyer, payer, model_id, channel_ids, texts):
        self.chain, self.buyer, self.payer = chain, buyer, payer
        self.model_id, self.channel_ids, self.texts = model_id, channel_ids, texts
        self.paid = dict.fromkeys(channel_ids, 0)  # calls paid so far per channel
        self.sent = 0
        self.channels = chain.contract("Channels").address

    def _signed(self, who) -> dict:
        from ml import signing

        text = self.texts[self.sent % len(self.texts)]
        self.sent += 1
        return signing.sign_request(
            who,
            model_id=self.model_id,
            inputs=[text],
            chain_id=self.chain.chain_id,
            ttl=3600,
            verifying_contract=self.chain.marketplace.address,
        )

    def licence(self, n: int) -> list[dict]:
        return [self._signed(self.buyer) for _ in range(n)]

    def voucher(self, per_client: int) -> list[dict]:
        """Client k's ``per_client`` bodies on channel k, in order, one slice after another."""
        from ml import signing

        bodies = []
        for channel_id in self.channel_ids:
            for _ in range(per_client):
                self.paid[channel_id] += 1
                bodies.append(
                    signing.with_voucher(
                        self._signed(self.payer),
                        self.payer,
                        chain_id=self.chain.chain_id,
                        channels_address=self.channels,
                        channel_id=channel_id,
                        cumulative_amount=self.paid[channel_id] * CALL_PRICE,
                    )
                )
        return bodies


def open_channels(chain, payer, model_id: int, count: int, calls: int) -> list[int]:
    """``count`` channels of ``payer`` on ``model_id``, each with a deposit for ``calls`` calls."""
    w3 = chain.w3
    deposit = calls * CALL_PRICE
    w3.eth.send_transaction(
        {"from": w3.eth.accounts[0], "to": payer.address, "value": count * deposit + 10**18}
    )
    channels = chain.contract("Channels").functions
    expires = w3.eth.get_block("latest")["timestamp"] + WEEK
    ids = []
    for _ in range(count):
        opening = channels.openChannel(model_id, ETH, deposit, expires)
        ids.append(opening.call({"from": payer.address, "value": deposit}))
        send_tx(w3, payer, opening, value=deposit)
    return ids


def show(label: str, stats: dict, clients: int) -> None:
    cpu = (
        f"; CPU per request: server {stats['server_cpu_ms']:.2f} ms, clients "
        f"{stats['client_cpu_ms']:.2f} ms"
        if "server_cpu_ms" in stats
        else ""
    )
    print(
        f"{label}, {clients} clients: {stats['throughput']:.1f} req/s, "
        f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms{cpu}",
        flush=True,
    )


def in_process_ceiling(args, model_dir, texts) -> dict:
    """The same model and batcher settings as one `modex serve` (default dtype, --max-batch-size
    16, --max-wait-ms 5, two batcher workers over all cores), driven in this process by
    ``--clients`` callers with no HTTP, signature or payment: what this machine's cores serve at
    best (benchmarks/serve.py's served run)."""
    from ml.serve import Predictor

    predictor = Predictor(model_dir, max_length=args.max_length, backend=args.backend)
    settings = SimpleNamespace(max_batch_size=16, max_wait_ms=5.0, workers=2, http=False)
    serve_levels(predictor, settings, texts, {args.clients: 256})  # warm-up, as the server's
    results, batches, _ = serve_levels(predictor, settings, texts, {args.clients: args.requests})
    return results[args.clients] | {"mean_batch": batches[args.clients]}


def serve_and_measure(args, model_dir, chain, buyer, model_id, config, texts, tmp) -> dict:
    """`modex serve` started, warmed up, measured licence / voucher / licence, and stopped."""
    from eth_account import Account

    from node.procs import stop_process

    per = max(1, args.requests // args.clients)
    payer = Account.create()
    channel_ids = open_channels(chain, payer, model_id, args.clients, per + 2)
    requests = Requests(chain, buyer, payer, model_id, channel_ids, texts)
    bodies = {
        "warm-up": requests.licence(256) + requests.voucher(1),
        "licence": requests.licence(per * args.clients),
        "voucher": requests.voucher(per),
        "licence, again": requests.licence(per * args.clients),
    }
    extra = ["--processes", str(args.processes), "--max-length", str(args.max_length)]
    extra += ["--backend", args.backend] if args.backend else []
    runs = {}
    with open(tmp / "serve.log", "w") as log:
        proc, port, banner = start_modex_serve(model_dir, model_id, config, extra, log)
        try:
            if "serving model" not in banner:
                raise SystemExit(f"modex serve did not start: {banner}; see {tmp}/serve.log")
            print(f"server: {banner.split('(', 1)[1].split(')', 1)[0]}", flush=True)
            url = f"http://127.0.0.1:{port}/v1/infer"
            warm = bodies.pop("warm-up")
            master = psutil.Process(proc.pid)
            server = [master, *master.children()]  # gunicorn's master and its workers
            measure(url, warm[:256], args.clients, server)  # licence cache, batcher, threads
            measure(url, warm[256:], args.clients, server)  # each channel read once
            for label, run in bodies.items():
                runs[label] = measure(url, run, args.clients, server)
                show(f"HTTP, {label}", runs[label], args.clients)
        finally:
            stop_process(proc, timeout=20)
    return runs


def main():
    args = parse_args()

    from ml import data
    from node.devchain import start_anvil

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    texts = [ex.text for ex in data.split("test")]
    with tempfile.TemporaryDirectory() as tmp, start_anvil() as anvil:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if not model_dir:
            from ml.train import train

            model_dir = tmp / "tiny"
            train({"output_dir": str(model_dir), **TINY})
        pipe = naive_pipeline(model_dir)
        naive_runs = [run_naive(pipe, texts, args.naive_requests, args.max_length)]
        show_naive("before", naive_runs[0])
        ceiling = in_process_ceiling(args, model_dir, texts)
        show(
            f"in process (batcher, no HTTP), mean batch {ceiling['mean_batch']:.1f}",
            ceiling,
            args.clients,
        )
        chain, buyer, model_id, config = licensed_deployment(
            anvil.url, tmp, "bafkreibenchservehttp", call_price=CALL_PRICE
        )
        runs = serve_and_measure(args, model_dir, chain, buyer, model_id, config, texts, tmp)
        naive_runs.append(run_naive(pipe, texts, args.naive_requests, args.max_length))
        show_naive("after", naive_runs[1])
    naive = sum(r["throughput"] for r in naive_runs) / len(naive_runs)
    licence_runs = [runs["licence"], runs["licence, again"]]
    licence = summarize(
        [t for r in licence_runs for t in r["latencies"]],
        sum(r["requests"] / r["throughput"] for r in licence_runs),
    )
    voucher = runs["voucher"]
    n = args.clients
    cores = os.cpu_count() or 1
    server_cpu = sum(r["server_cpu_ms"] for r in licence_runs) / len(licence_runs)
    client_cpu = sum(r["client_cpu_ms"] for r in licence_runs) / len(licence_runs)
    model_cpu = 1000 * cores / ceiling["throughput"]  # every core busy with the model alone
    print(f"naive pipeline, mean of before and after: {naive:.1f} req/s")
    print(
        f"in process vs naive at {n} clients: {ceiling['throughput'] / naive:.2f}x; HTTP vs in "
        f"process: {licence['throughput'] / ceiling['throughput']:.2f}. Core time per request "
        f"(ms): the model at its in-process ceiling {model_cpu:.2f} ({cores} cores busy), the "
        f"HTTP server (licence) {server_cpu:.2f}, the clients {client_cpu:.2f}"
    )
    print(
        f"HTTP (licence, both runs) vs naive at {n} clients: {licence['throughput'] / naive:.2f}x; "
        f"p99/p50 {licence['p99_ms'] / licence['p50_ms']:.2f}; voucher / licence: "
        f"{voucher['throughput'] / licence['throughput']:.3f}"
    )
    print_figures(
        {
            "benchmark": "serve_http",
            "clients": n,
            "requests": args.requests,
            "processes": args.processes,
            "backend": args.backend or "default",
            "naive_throughput": round(naive, 1),
            "naive_before_after": [round(r["throughput"], 1) for r in naive_runs],
            f"http_throughput_{n}": round(licence["throughput"], 1),
            f"http_vs_naive_{n}": round(licence["throughput"] / naive, 2),
            f"in_process_throughput_{n}": round(ceiling["throughput"], 1),
            f"in_process_vs_naive_{n}": round(ceiling["throughput"] / naive, 2),
            f"http_vs_in_process_{n}": round(licence["throughput"] / ceiling["throughput"], 3),
            "core_ms_per_request": {
                "model_in_process": round(model_cpu, 2),
                "server_licence": round(server_cpu, 2),
                "server_voucher": round(voucher["server_cpu_ms"], 2),
                "clients": round(client_cpu, 2),
            },
            f"http_p50_ms_{n}": round(licence["p50_ms"], 1),
            f"http_p99_ms_{n}": round(licence["p99_ms"], 1),
            f"http_p99_over_p50_{n}": round(licence["p99_ms"] / licence["p50_ms"], 2),
            "licence_throughputs": [round(r["throughput"], 1) for r in licence_runs],
            f"voucher_throughput_{n}": round(voucher["throughput"], 1),
            f"voucher_p99_over_p50_{n}": round(voucher["p99_ms"] / voucher["p50_ms"], 2),
            "voucher_over_licence": round(voucher["throughput"] / licence["throughput"], 3),
            "targets": {
                "http_vs_naive_32": ">= 5",
                "http_p99_over_p50_32": "<= 3",
                "voucher_over_licence": ">= 0.9",
            },
        }
    )


if __name__ == "__main__":
    main()
