"""Modex ML: fine-tune (train), evaluate reproducibly (evaluate), serve signed paid inference
with dynamic batching (serve, signing, http) and recommend listings (recommend).

Heavy imports (torch, transformers) happen inside functions, so importing ml or a module of it
is cheap; weights and data come from installed packages (ml.data), never from a hub.
"""
