"""The content formats: what a model is as bytes and how those bytes are addressed, sealed and
stored (manifest and model hash, tarball, seal, key wrapping, CIDs, CAR files, the stores).

Nothing here talks to a chain: these modules depend only on node.errors, node.onchain and
node.pipes, and docs/formats.md is their specification."""
