"""Helpers shared by the content-format tests (manifest, tar, CLI)."""


def make_model(root, files):
    """Write ``{relative path: bytes}`` under ``root`` (creating folders); return ``root``."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root
