"""node/config.py: one TOML file + MODEX_* variables, validated with messages naming the key."""

from pathlib import Path

import pytest

from node import paths
from node.config import Config, load_config
from node.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_resolve_paths_under_data_dir(tmp_path):
    config = load_config(env={}, data_dir=tmp_path)
    assert config.chain == "local" and config.ipfs == "embedded"
    assert config.cid_profile == "unixfs-v1-2025"
    assert config.confirmations == 0
    assert config.keystore == tmp_path / "keystore.json"
    assert config.index_db == tmp_path / "index.sqlite3"
    assert config.deployment_path(31337) == paths.DEPLOYMENTS_DIR / "31337.json"


def test_file_then_env_then_overrides(tmp_path):
    path = write(
        tmp_path,
        'chain = "http://127.0.0.1:8545/"\nconfirmations = 2\nrpc_timeout = 3\n'
        f'keystore = "wallets/me.json"\ndata_dir = "{tmp_path}"\n',
    )
    env = {"MODEX_CONFIRMATIONS": "5", "MODEX_IPFS": "http://127.0.0.1:5001", "MODEX_PASSWORD": "x"}
    config = load_config(path, env=env, poll_interval=0.5)
    assert config.chain == "http://127.0.0.1:8545"  # trailing slash dropped
    assert config.confirmations == 5  # env beats file
    assert config.rpc_timeout == 3.0 and isinstance(config.rpc_timeout, float)
    assert config.ipfs == "http://127.0.0.1:5001"
    assert config.poll_interval == 0.5
    assert config.keystore == tmp_path / "wallets" / "me.json"  # relative to data_dir


def test_config_file_found_in_data_dir_and_via_env(tmp_path):
    write(tmp_path, "confirmations = 7\n")
    assert load_config(env={"MODEX_DATA_DIR": str(tmp_path)}).confirmations == 7
    other = tmp_path / "other.toml"
    other.write_text("confirmations = 9\n")
    assert load_config(env={"MODEX_CONFIG": str(other)}, data_dir=tmp_path).confirmations == 9


# (config file text, the key the error names, what it says)
BAD_FILES = [
    ('chain = "ftp://x"', "chain", "http(s) URL"),
    ("chain = 5", "chain", "must be a string"),
    ('ipfs = "localhost:5001"', "ipfs", "http(s) URL"),
    ('cid_profile = "sha1"', "cid_profile", "kubo-v0"),
    ("confirmations = -1", "confirmations", "0 or more"),
    ('confirmations = "two"', "confirmations", "whole number"),
    ("confirmations = true", "confirmations", "whole number"),
    ("poll_interval = 0", "poll_interval", "more than 0"),
    ("gateway_port = 70000", "gateway_port", "0..65535"),
    ('store_source = "gateway.example:8080"', "store_source", "IPFS gateway's http(s) URL"),
    ("chain_id = 0", "chain_id", "positive"),
    ("worker_replace_after = -1", "worker_replace_after", "0 or more seconds"),
    ('colour = "blue"', "colour", "allowed keys"),
    ('[chain]\nurl = "x"', "chain", "not a table"),
    ("chain = ", "config", "not valid TOML"),
]
# (environment over an empty config file, the key the error names, what it says)
BAD_ENVIRONMENTS = [
    ({"MODEX_RPC_TIMEOUT": "soon"}, "rpc_timeout", "$MODEX_RPC_TIMEOUT"),
    ({"MODEX_WORKER_MAX_FEE_GWEI": "0"}, "worker_max_fee_gwei", "more than 0 gwei"),
]


@pytest.mark.parametrize(
    "text, env, key, hint",
    [(text, {}, key, hint) for text, key, hint in BAD_FILES]
    + [("", env, key, hint) for env, key, hint in BAD_ENVIRONMENTS],
)
def test_bad_values_name_the_key(tmp_path, text, env, key, hint):
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env, data_dir=tmp_path)
    assert info.value.context["key"] == key
    assert hint in str(info.value)
    if key not in ("config",) and not env:
        assert str(path) in str(info.value) or key in str(info.value)


def test_missing_file_and_unknown_override(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="unknown configuration key 'colour'"):
        load_config(env={}, data_dir=tmp_path, colour="blue")


def test_the_default_chain_is_the_local_one_modex_up_runs(tmp_path):
    """ "local" is the anvil `modex up` starts (state kept in <data dir>/chain); another command
    given it is told to pass the URL `modex up` prints. The store has no "local"."""
    from node.chain import connect

    config = load_config(env={}, data_dir=tmp_path)
    assert config.is_local_chain and not config.is_embedded_chain
    with pytest.raises(ConfigError, match=r"pass the URL it prints, e\.g\. --chain http://"):
        connect(config)
    assert load_config(env={"MODEX_CHAIN": "embedded"}, data_dir=tmp_path).is_embedded_chain
    with pytest.raises(
        ConfigError, match=r'ipfs \(from \$MODEX_IPFS\) is \'local\': use "embedded"'
    ):
        load_config(env={"MODEX_IPFS": "local"}, data_dir=tmp_path)


def test_sources_say_where_each_value_came_from(tmp_path):
    """`modex up` replaces a taken default port but refuses a taken port someone chose."""
    path = write(tmp_path, "gateway_port = 8081\n")
    config = load_config(path, env={"MODEX_UI_PORT": "5001"}, data_dir=tmp_path)
    assert config.sources == {
        "gateway_port": f"in {path}",
        "ui_port": "from $MODEX_UI_PORT",
        "data_dir": "override",
    }
    assert config.replace(confirmations=2).sources["confirmations"] == "override"
    assert "confirmations" not in config.sources  # a copy: the original is unchanged
    with pytest.raises(ConfigError, match="unknown key 'sources'"):
        load_config(write(tmp_path, "sources = 1\n"), env={})


def test_replace_validates():
    config = Config(data_dir=Path("/tmp/x"))
    assert config.replace(confirmations=3).confirmations == 3
    with pytest.raises(ConfigError, match="confirmations \\(override\\)"):
        config.replace(confirmations=-2)


def test_store_source_gives_the_embedded_store_a_gateway_to_fetch_from(tmp_path):
    from node.stack import open_configured_store

    config = load_config(env={"MODEX_STORE_SOURCE": "http://127.0.0.1:8080/"}, data_dir=tmp_path)
    assert config.store_source == "http://127.0.0.1:8080"
    store = open_configured_store(config)
    assert repr(store.source) == "GatewaySource('http://127.0.0.1:8080')"
    assert open_configured_store(load_config(env={}, data_dir=tmp_path)).source is None


def test_replacing_a_setting_keeps_the_paths_of_a_relative_data_dir(tmp_path, monkeypatch):
    """`modex worker --data-dir seller --replace-after 5` looked for seller/seller/keystore.json:
    the copy re-joined the already resolved paths to the relative data dir."""
    monkeypatch.chdir(tmp_path)
    config = load_config(None, data_dir="seller")
    copy = config.replace(worker_replace_after=5)
    for name in ("keystore", "keyvault", "index_db", "store_dir"):
        assert getattr(copy, name) == getattr(config, name)
    assert copy.keystore == Path("seller/keystore.json")
