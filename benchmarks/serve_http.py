"""`modex serve` over real HTTP: one server process (the default) vs ``--processes N``.

    .venv/bin/python benchmarks/serve_http.py [--model-dir DIR] [--processes 2] [--requests 2048]

Everything real: an anvil chain started here (stopped by PID), the deployed suite, a listing
bought by a buyer whose key was delivered, and `modex serve` started as a subprocess, so every
request goes through EIP-712 recovery, the deadline and nonce checks (SQLite store with several
processes), the licence check (Marketplace.hasLicense, cached) and the dynamic batcher. The
32 clients (one text per request, pre-signed, closed loops, one keep-alive connection each) run
in a separate process, as buyers are not inside the server. The baseline is the same command
with one process (its default two batcher workers), measured in the same run, before and after.
Without --model-dir the model is a tiny classifier trained here in seconds (speed does not
depend on its accuracy).
Last line: JSON with ``throughput_vs_one_process`` and ``p99_over_p50``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.common import print_figures
from tests.ml.conftest import TINY, licensed_deployment, start_modex_serve


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", help="a classifier directory (default: a tiny one trained here)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=2048)
    return p.parse_args()


def clients_main(url: str, bodies: list, clients: int, out) -> None:
    """In a child process: ``clients`` threads in closed loops over their share of ``bodies``."""
    import httpx

    per = len(bodies) // clients
    latencies, errors = [], []
    lock = threading.Lock()

    def run(k):
        with httpx.Client(timeout=120) as client:
            for body in bodies[k * per : (k + 1) * per]:
                t0 = time.perf_counter()
                r = client.post(url, json=body)
                took = time.perf_counter() - t0
                with lock:
                    (latencies if r.status_code == 200 else errors).append(
                        took if r.status_code == 200 else f"{r.status_code} {r.text[:120]}"
                    )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put({"wall": time.perf_counter() - start, "latencies": latencies, "errors": errors[:3]})


def measure(url: str, bodies: list, clients: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=clients_main, args=(url, bodies, clients, out))
    proc.start()
    result = out.get()
    proc.join()
    if result["errors"]:
        raise SystemExit(f"requests failed, e.g. {result['errors']}")
    lat = sorted(result["latencies"])
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    return {"throughput": len(lat) / result["wall"], "p50_ms": p50 * 1000, "p99_ms": p99 * 1000}


def start_server(model_dir, model_id, config, processes: int, log) -> tuple[subprocess.Popen, str]:
    extra = ["--processes", str(processes)] if processes > 1 else []
    proc, _, banner = start_modex_serve(model_dir, model_id, config, extra, log)
    if "serving model" not in banner:
        proc.kill()
        raise SystemExit(f"modex serve did not start: {banner}")
    return proc, banner.strip()


def main():
    args = parse_args()

    from ml import data, signing
    from node.devchain import start_anvil
    from node.procs import stop_process

    print(f"machine: {platform.machine()} {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    texts = [ex.text for ex in data.split("test")]
    with tempfile.TemporaryDirectory() as tmp, start_anvil() as anvil:
        tmp = Path(tmp)
        model_dir = args.model_dir
        if not model_dir:
            from ml.train import train

            model_dir = tmp / "tiny"
            train({"output_dir": str(model_dir), **TINY})
        chain, buyer, model_id, config = licensed_deployment(
            anvil.url, tmp, "bafkreibenchservehttp"
        )

        def bodies(n):
            return [
                signing.sign_request(
                    buyer,
                    model_id=model_id,
                    inputs=[texts[i % len(texts)]],
                    chain_id=chain.chain_id,
                    ttl=3600,
                    verifying_contract=chain.marketplace.address,
                )
                for i in range(n)
            ]

        runs = {}
        with open(tmp / "serve.log", "w") as log:
            for label, processes in (
                ("one process, before", 1),
                (f"{args.processes} processes", args.processes),
                ("one process, after", 1),
            ):
                proc, banner = start_server(model_dir, model_id, config, processes, log)
                try:
                    url = banner.split(" at ", 1)[1].split(" ", 1)[0] + "/v1/infer"
                    measure(url, bodies(256), args.clients)  # warm-up: licence cache, batcher
                    stats = measure(url, bodies(args.requests), args.clients)
                finally:
                    stop_process(proc, timeout=20)
                runs[label] = stats
                print(
                    f"{label}: {banner.split('(', 1)[1].split(')', 1)[0]}; {args.clients} "
                    f"clients: {stats['throughput']:.1f} req/s, p50 {stats['p50_ms']:.1f} ms, "
                    f"p99 {stats['p99_ms']:.1f} ms",
                    flush=True,
                )
    one = (runs["one process, before"]["throughput"] + runs["one process, after"]["throughput"]) / 2
    many = runs[f"{args.processes} processes"]
    print_figures(
        {
            "benchmark": "serve_http",
            "clients": args.clients,
            "requests": args.requests,
            "processes": args.processes,
            "throughput": round(many["throughput"], 1),
            "one_process_throughput": round(one, 1),
            "throughput_vs_one_process": round(many["throughput"] / one, 3),
            "p50_ms": round(many["p50_ms"], 1),
            "p99_ms": round(many["p99_ms"], 1),
            "p99_over_p50": round(many["p99_ms"] / many["p50_ms"], 2),
        }
    )


if __name__ == "__main__":
    main()
