"""Modex node: the off-chain core every front end shares (chain client, content layer, worker)."""
