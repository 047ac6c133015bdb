"""`modex up` against real services chosen by configuration: anvil + the IPFS daemon (js-ipfs
speaking the Kubo RPC API), both started here on 127.0.0.1 and stopped by PID."""

from __future__ import annotations

import httpx
import pytest

from tests.app.conftest import modex_up

pytestmark = [pytest.mark.anvil, pytest.mark.kubo, pytest.mark.slow, pytest.mark.timeout(900)]


def test_modex_up_on_anvil_and_the_ipfs_daemon(tmp_path):
    from node.devchain import start_anvil
    from node.ipfsdaemon import start_ipfs_daemon

    with start_anvil() as anvil:
        daemon = start_ipfs_daemon()
        try:
            # The deployment record goes to the test's folder, not the shared deployments/.
            record = tmp_path / "deployments" / "31337.json"
            with modex_up(tmp_path / "node", "--chain", anvil.url, "--ipfs", daemon.api_url,
                          env={"MODEX_DEPLOYMENT_FILE": str(record)}) as (url, log_path):
                health = httpx.get(f"{url}/api/health", timeout=30).json()
                assert health["chain_id"] == 31337 and health["endpoint"] == anvil.url
                page = httpx.get(url, timeout=30).text
                for _ in range(60):  # the indexer follows the chain in its own thread
                    if "Demo sentiment classifier (MiniLM)" in page:
                        break
                    page = httpx.get(url, timeout=30).text
                assert "Demo sentiment classifier (MiniLM)" in page and "0.1 ETH" in page
                listing = httpx.get(f"{url}/api/models?sort=price", timeout=30).json()["models"][0]
                # The listing's metadata JSON is pinned on the daemon, not in an embedded store.
                cat = httpx.post(f"{daemon.api_url}/api/v0/cat",
                                 params={"arg": listing["metadata_cid"]}, timeout=30)
                assert cat.status_code == 200 and b'"name"' in cat.content
                assert "gateway" not in log_path.read_text().split("Modex is up at")[1].split("\n")[0]
            assert record.is_file()
        finally:
            daemon.stop()
