"""The node's configuration: one TOML file plus ``MODEX_*`` environment variables.

Precedence (highest first): keyword overrides (tests, CLI flags) → ``MODEX_<KEY>`` environment
variables → the TOML file → defaults. The file is the one given, else ``$MODEX_CONFIG``, else
``<data_dir>/config.toml`` when it exists. Keys are flat, e.g.::

    chain = "http://127.0.0.1:8545"    # or "local" (default) or "embedded"
    ipfs = "embedded"                   # or a Kubo RPC API URL such as "http://127.0.0.1:5001"
    confirmations = 2

Every value is validated on load; a bad one raises ConfigError naming the key, where it came from
and what is allowed. Relative paths are resolved against ``data_dir`` (``deployment_file``
against the current directory, like a command-line argument).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from node import paths
from node.errors import ConfigError

log = logging.getLogger(__name__)

# The CID profile names are fixed by docs/formats.md §5.
CID_PROFILES = ("unixfs-v1-2025", "kubo-v1", "kubo-v0")
ENV_PREFIX = "MODEX_"


def default_data_dir() -> Path:
    """``./.modex`` when it exists (a project-local node), else ``~/.modex``."""
    local = Path.cwd() / ".modex"
    return local if local.is_dir() else Path.home() / ".modex"


# The paths whose relative values are read inside the data dir.
MAX_UI_PROCESSES = 64
_DATA_DIR_PATHS = ("keystore", "keyvault", "index_db", "store_dir")


@dataclass
class Config:
    """Everything a node needs to know; build one directly in tests."""

    data_dir: Path = field(default_factory=default_data_dir)
    # "local": the anvil `modex up` runs, its state kept in <data_dir>/chain (node/localchain.py);
    # "embedded": an in-memory chain inside the process, reset at every start; or a JSON-RPC URL
    chain: str = "local"
    chain_id: int | None = None  # expected chain id; checked on connect when set
    deployment_file: Path | None = None  # default: deployments/<chainId>.json
    ipfs: str = "embedded"  # "embedded" or a Kubo RPC API URL
    cid_profile: str = "unixfs-v1-2025"
    confirmations: int = 0  # blocks the indexer, worker and validator stay behind the head
    poll_interval: float = 2.0  # seconds between polls of followers (indexer, worker)
    rpc_timeout: float = 10.0  # seconds per JSON-RPC / IPFS API request
    rpc_retries: int = 3  # retries of a failed connection before giving up
    keystore: Path | None = None  # default: <data_dir>/keystore.json
    keyvault: Path | None = None  # the seller's content keys; default <data_dir>/keyvault.json
    index_db: Path | None = None  # default: <data_dir>/index.sqlite3
    store_dir: Path | None = None  # embedded IPFS blocks; default <data_dir>/ipfs
    gateway_port: int = 8080  # read-only IPFS gateway (embedded store)
    store_source: str = ""  # embedded store: an IPFS gateway URL to fetch missing
    # or locally corrupt blocks from ("": none)
    ui_port: int = 5000
    receipt_timeout: float = 120.0  # seconds to wait for a transaction to be mined
    worker_replace_after: float = 30.0  # seconds before the worker replaces an unmined deliverKey
    worker_max_fee_gwei: float = 100.0  # the worker never offers more per gas (replacements too)
    # The worker's retraining job (modex/retraining.py): retrain a model of this seller on its
    # feedback once this many new labelled items have come in; 0: never.
    worker_retrain_after: int = 0
    # The claimer (node/claimer.py) claims a channel's vouchers once this many calls' worth is
    # unclaimed, or whatever is unclaimed once the channel expires within claim_margin seconds.
    claim_threshold_calls: int = 100
    claim_margin: float = 3600.0
    # The worker delivers a new version's key to at most this many licence holders per
    # transaction (Marketplace.deliverVersionKeys; node/versiondelivery.py).
    version_key_batch: int = 50
    # The inference service's state store (node/servicestore: a path, sqlite:///, redis://,
    # postgresql://): `modex serve` keeps nonces, vouchers and free calls there, the worker claims
    # its vouchers; "": the SQLite file of service_store_at.
    service_store: str = ""
    # `modex up --hosted`: an exchange run for other people; the server never creates, imports
    # or unlocks a keystore, visitors sign with their browser wallet (app: MODEX_HOSTED).
    hosted: bool = False
    # Processes serving `modex up`'s UI, sharing its port (modex/uiprocesses.py): 0 = one per
    # core for a hosted exchange, else one. More than one needs hosted mode (a server-held
    # wallet is unlocked in one process's memory) and a chain reached over RPC.
    ui_processes: int = 0
    # Not a setting: where each value came from ("override", "in FILE", "from $VAR"), by key;
    # a key not in it has its default.
    sources: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        for name in _DATA_DIR_PATHS:
            value = getattr(self, name)
            if value is not None:
                value = Path(value).expanduser()
                setattr(self, name, value if value.is_absolute() else self.data_dir / value)
        if self.keystore is None:
            self.keystore = self.data_dir / "keystore.json"
        if self.keyvault is None:
            self.keyvault = self.data_dir / "keyvault.json"
        if self.index_db is None:
            self.index_db = self.data_dir / "index.sqlite3"
        if self.store_dir is None:
            self.store_dir = self.data_dir / "ipfs"
        if self.deployment_file is not None:
            self.deployment_file = Path(self.deployment_file).expanduser()

    @property
    def is_embedded_chain(self) -> bool:
        return self.chain == "embedded"

    @property
    def is_local_chain(self) -> bool:
        return self.chain == "local"

    def deployment_path(self, chain_id: int) -> Path:
        """The deployment record for ``chain_id``: the configured file or deployments/<id>.json."""
        return self.deployment_file or paths.DEPLOYMENTS_DIR / f"{chain_id}.json"

    def worker_state_path(self, chain_id: int) -> Path:
        """The key-delivery worker's state file on chain ``chain_id``: ``worker-<chainId>.json``
        beside the index (the one rule for ``modex worker`` and ``modex up``).

        Beside the index because both follow one chain: ``modex up`` keeps ``index_db`` in the
        chain's own folder (``<data dir>/chain`` for its anvil, ``<data dir>/embedded`` for the
        in-memory chain, emptied at every start), so the worker's checkpoint and open purchases
        start afresh with a new chain instead of pointing at blocks it never had. With the
        default ``index_db`` this is ``<data dir>/worker-<chainId>.json``, where ``modex worker``
        has always kept it. The chain id keeps the workers of two chains in one folder apart."""
        assert self.index_db is not None  # set by __post_init__
        return self.index_db.with_name(f"worker-{chain_id}.json")

    def retrain_state_path(self, chain_id: int) -> Path:
        """The worker's retraining job's state file on chain ``chain_id`` (the feedback items
        each model was retrained on): ``retrain-<chainId>.json`` beside the worker's own, for the
        same reasons (``worker_state_path``)."""
        return self.worker_state_path(chain_id).with_name(f"retrain-{chain_id}.json")

    def served_models_path(self, chain_id: int) -> Path:
        """The models this node serves for paid inference on chain ``chain_id`` (model id ->
        local folder, node.served_dirs): ``served-<chainId>.json`` beside the worker's state
        file, for the same reasons (``worker_state_path``): `modex up`'s local chain keeps it
        across restarts, the embedded chain starts with none served."""
        return self.worker_state_path(chain_id).with_name(f"served-{chain_id}.json")

    def service_store_at(self, chain_id: int, marketplace: str) -> str:
        """The inference service's state store on chain ``chain_id``: ``service_store`` when set,
        else a SQLite file in the data dir, ``service/<chainId>-<marketplace>.sqlite3`` (one per
        chain and deployment, so that a new chain never meets an old one's vouchers): the one
        rule for `modex serve` and the worker's claimer."""
        if self.service_store:
            return self.service_store
        return str(self.data_dir / "service" / f"{chain_id}-{marketplace.lower()}.sqlite3")

    def replace(self, **changes) -> Config:
        """A validated copy with ``changes`` applied. The paths already resolved against a
        relative data dir stay as they are (``__post_init__`` would join them to it again:
        seller/seller/keystore.json) unless the change names them or the data dir."""
        sources = {**self.sources, **dict.fromkeys(changes, "override")}
        copy = dataclasses.replace(self, sources=sources, **changes)
        if "data_dir" not in changes:
            for name in _DATA_DIR_PATHS:
                if name not in changes:
                    setattr(copy, name, getattr(self, name))
        return validate(copy, sources)


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "sources"}
# The words each endpoint accepts besides an http(s) URL.
_ENDPOINT_NAMES = {"chain": ("local", "embedded"), "ipfs": ("embedded",)}


def _endpoint(key: str, value, source: str) -> str:
    names = _ENDPOINT_NAMES[key]
    allowed = " or ".join(f'"{name}"' for name in names) + " or an http(s) URL"
    if not isinstance(value, str):
        raise ConfigError(f"{key} ({source}) must be a string: {allowed}", key=key)
    if value in names:
        return value
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"{key} ({source}) is {value!r}: use {allowed} such as "
            f"http://127.0.0.1:{8545 if key == 'chain' else 5001}",
            key=key,
        )
    return value.rstrip("/")


def _coerce(key: str, value, source: str):
    """Turn a TOML value or an environment string into the field's type, or raise ConfigError."""
    kind = {
        "data_dir": Path,
        "deployment_file": Path,
        "keystore": Path,
        "keyvault": Path,
        "index_db": Path,
        "store_dir": Path,
        "chain_id": int,
        "confirmations": int,
        "rpc_retries": int,
        "gateway_port": int,
        "ui_port": int,
        "poll_interval": float,
        "rpc_timeout": float,
        "receipt_timeout": float,
        "worker_replace_after": float,
        "worker_max_fee_gwei": float,
        "worker_retrain_after": int,
        "claim_threshold_calls": int,
        "claim_margin": float,
        "version_key_batch": int,
        "hosted": bool,
        "ui_processes": int,
    }.get(key, str)
    if value is None:
        return None
    if kind is bool:
        return _flag(key, value, source)
    if kind is Path:
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise ConfigError(f"{key} ({source}) must be a non-empty path", key=key)
        return Path(value).expanduser()
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key} ({source}) must be a whole number, got {value!r}", key=key)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"{key} ({source}) must be a whole number, got {value!r}", key=key
            ) from None
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(
                f"{key} ({source}) must be a number of seconds, got {value!r}", key=key
            )
        try:
            return float(value)
        except ValueError:
            raise ConfigError(
                f"{key} ({source}) must be a number of seconds, got {value!r}", key=key
            ) from None
    if not isinstance(value, str):
        raise ConfigError(f"{key} ({source}) must be a string, got {value!r}", key=key)
    return value


def _flag(key: str, value, source: str) -> bool:
    """A yes/no setting: a TOML boolean, or in the environment 1/0, true/false, yes/no."""
    if isinstance(value, bool):
        return value
    words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
    if isinstance(value, str) and value.strip().lower() in words:
        return words[value.strip().lower()]
    raise ConfigError(f"{key} ({source}) must be true or false, got {value!r}", key=key)


def _gateway_url(url: str, source: str) -> str:
    """store_source: an IPFS gateway's http(s) URL, without its trailing slash."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"store_source ({source}) is {url!r}: use an "
            "IPFS gateway's http(s) URL such as http://127.0.0.1:8080, or leave it empty",
            key="store_source",
        )
    return url.rstrip("/")


def _check_chain_numbers(config: Config, where: Callable[[str], str]) -> None:
    """chain_id, confirmations, rpc_retries and the RPC timings, in that order."""
    if config.chain_id is not None and config.chain_id <= 0:
        raise ConfigError(
            f"chain_id ({where('chain_id')}) must be a positive integer", key="chain_id"
        )
    if config.confirmations < 0:
        raise ConfigError(
            f"confirmations ({where('confirmations')}) must be 0 or more blocks",
            key="confirmations",
        )
    if config.rpc_retries < 0:
        raise ConfigError(
            f"rpc_retries ({where('rpc_retries')}) must be 0 or more", key="rpc_retries"
        )
    for key in ("poll_interval", "rpc_timeout", "receipt_timeout"):
        if not getattr(config, key) > 0:
            raise ConfigError(f"{key} ({where(key)}) must be more than 0 seconds", key=key)


def _check_worker_and_ports(config: Config, where: Callable[[str], str]) -> None:
    """The worker's replacement delay and fee cap, then the HTTP ports."""
    if not 0 <= config.worker_replace_after < math.inf:
        raise ConfigError(
            f"worker_replace_after ({where('worker_replace_after')}) must be 0 or "
            "more seconds (0: replace an unmined delivery on every pass)",
            key="worker_replace_after",
        )
    if not 0 < config.worker_max_fee_gwei < math.inf:
        raise ConfigError(
            f"worker_max_fee_gwei ({where('worker_max_fee_gwei')}) must be more "
            "than 0 gwei per gas",
            key="worker_max_fee_gwei",
        )
    if config.worker_retrain_after < 0:
        raise ConfigError(
            f"worker_retrain_after ({where('worker_retrain_after')}) must be 0 (no retraining) "
            "or a number of feedback items",
            key="worker_retrain_after",
        )
    if not 1 <= config.version_key_batch <= 1000:
        raise ConfigError(
            f"version_key_batch ({where('version_key_batch')}) must be 1 to 1000 licence "
            "holders per transaction",
            key="version_key_batch",
        )
    for key in ("claim_threshold_calls", "claim_margin"):
        if not 0 <= getattr(config, key) < math.inf:
            raise ConfigError(f"{key} ({where(key)}) must be 0 or more", key=key)
    if not 0 <= config.ui_processes <= MAX_UI_PROCESSES:
        raise ConfigError(
            f"ui_processes ({where('ui_processes')}) must be 1 to {MAX_UI_PROCESSES} processes, "
            "or 0 (one per core for a hosted exchange, else one)",
            key="ui_processes",
        )
    for key in ("gateway_port", "ui_port"):
        if not 0 <= getattr(config, key) <= 65535:
            raise ConfigError(
                f"{key} ({where(key)}) must be a TCP port 0..65535 (0 = any free port)", key=key
            )


def validate(config: Config, sources: dict[str, str] | None = None) -> Config:
    """Check every value's range; raise ConfigError naming the first bad key and its origin."""
    sources = config.sources if sources is None else sources

    def where(key: str) -> str:
        return sources.get(key, "default")

    config.chain = _endpoint("chain", config.chain, where("chain"))
    config.ipfs = _endpoint("ipfs", config.ipfs, where("ipfs"))
    if config.store_source:
        config.store_source = _gateway_url(config.store_source, where("store_source"))
    if config.cid_profile not in CID_PROFILES:
        raise ConfigError(
            f"cid_profile ({where('cid_profile')}) is {config.cid_profile!r}: use one of {', '.join(CID_PROFILES)}",
            key="cid_profile",
        )
    _check_chain_numbers(config, where)
    _check_worker_and_ports(config, where)
    return config


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} does not exist", key="config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"configuration file {path} is not valid TOML: {exc}", key="config"
        ) from None
    for key, value in data.items():
        if key not in _FIELDS:
            raise ConfigError(
                f"unknown key {key!r} in {path}; allowed keys: {', '.join(sorted(_FIELDS))}",
                key=key,
            )
        if isinstance(value, dict):
            raise ConfigError(f"{key} in {path} must be a plain value, not a table", key=key)
    return data


def load_config(path: str | os.PathLike | None = None, env=os.environ, **overrides) -> Config:
    """Read the TOML file and ``MODEX_*`` variables, apply ``overrides``, validate, return Config."""
    for key in overrides:
        if key not in _FIELDS:
            raise ConfigError(
                f"unknown configuration key {key!r}; allowed: {', '.join(sorted(_FIELDS))}", key=key
            )
    values: dict = {}
    sources: dict = {}

    env_values = {}
    for key in _FIELDS:
        name = ENV_PREFIX + key.upper()
        if name in env and env[name] != "":
            env_values[key] = env[name]

    # The data dir decides where the default config file lives, so resolve it first.
    data_dir = overrides.get("data_dir") or env_values.get("data_dir")
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = env[ENV_PREFIX + "CONFIG"]
    if path is None:
        candidate = Path(data_dir).expanduser() if data_dir else default_data_dir()
        candidate = candidate / "config.toml"
        path = candidate if candidate.is_file() else None
    if path is not None:
        path = Path(path).expanduser()
        for key, value in _read_toml(path).items():
            values[key], sources[key] = value, f"in {path}"
    for key, value in env_values.items():
        values[key], sources[key] = value, f"from ${ENV_PREFIX}{key.upper()}"
    for key, value in overrides.items():
        if value is not None:
            values[key], sources[key] = value, "override"

    kwargs = {key: _coerce(key, value, sources[key]) for key, value in values.items()}
    # Relative paths in a file are relative to the data dir; a relative data_dir to the cwd.
    config = Config(**kwargs, sources=sources)
    config = validate(config, sources)
    log.debug("configuration loaded from %s", path or "defaults and environment")
    return config
