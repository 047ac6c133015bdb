"""The bytes Modex hashes for the chain, written one way: canonical JSON and the digests of it.

Canonical JSON (docs/formats.md) is ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``
encoded as UTF-8 (non-ASCII characters as \\u escapes, no whitespace, no trailing newline). Its
SHA-256 is the model hash (of the manifest, node/content/manifest.py), the work digest a seller claims
and a validator reveals (of the evaluation report), the inputs digest a signed inference request
carries (ml/signing.py) and the ABI hash a deployment record keeps for each contract. The key
vault encrypts its entries as canonical JSON too.

Standard library only: `modex hash` reaches this module through node/content/manifest.py and must start
without the chain libraries. The contracts' own facts (status values, records, the attestation
commitment) are in node/protocol.py.
"""

from __future__ import annotations

import hashlib
import json


def canonical_json(obj) -> bytes:
    """``obj`` as canonical JSON bytes (see the module docstring)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def canonical_digest(obj) -> bytes:
    """SHA-256 of the canonical JSON of ``obj``."""
    return hashlib.sha256(canonical_json(obj)).digest()


def work_digest(report: dict) -> bytes:
    """The digest of an evaluation report (docs/formats.md): what a seller claims and a validator
    reveals."""
    return canonical_digest(report)


def abi_hash(abi: list) -> str:
    """Hex SHA-256 of a contract ABI's canonical JSON: tells whether a deployment matches the
    compiled sources."""
    return canonical_digest(abi).hex()
