"""Exceptions of the Modex node. One tree; callers catch the branch they can handle.

    ModexError                      base: every error the project raises on purpose
    ├── InputError                  a value a person typed that must be corrected (an amount of
    │                               ETH, a form field, an argument); also a ValueError
    ├── ConfigError                 a bad configuration value (names the key)
    ├── ChainError                  RPC failures, reverts (decoded custom errors), wrong chain
    │   └── ContractRevert          a decoded custom error from a Modex contract
    ├── CompileError                solc failed or is missing
    ├── StoreError                  IPFS / embedded store failures (names the endpoint or CID)
    │   ├── ContentNotFound         the store does not hold the CID
    │   └── LocalStoreError         this node's own copy or disk failed (a corrupt cached block,
    │                               an unreadable or unwritable store): never a verdict on content
    ├── IntegrityError              bytes do not match what they claim (hash, CID, manifest)
    │   └── DecodeError             bytes that do not parse as their binary format (a varint,
    │                               a dag-pb or CBOR item); also a ValueError
    ├── ManifestError               a model directory that cannot be hashed (symlink, escape, pickle...)
    ├── SealError                   sealed-archive format or authentication failure
    ├── KeyWrapError                HPKE wrap/unwrap failure (wrong recipient, wrong purchase)
    ├── KeystoreError               wallet keystore problems (wrong password, missing file)
    └── KeyDeliveryError            the worker could not deliver a key (with the reason)

The layers above the node derive their own errors from ModexError too (app.helpers.NeedsWallet,
app.train.TrainingCancelled, ml.endpoint.Refusal, ml.serve.InvalidInput and QueueFull), so that
the command line (modex.cli.main) and the web app (app.errors) each handle the whole tree in one
place: a sentence for a person, no traceback.

Every exception carries a message meant for a person: what went wrong and what to do.
"""


class ModexError(Exception):
    """Base class; ``context`` holds the values a caller or a log may need."""

    def __init__(self, message: str, **context):
        super().__init__(message)
        self.context = context


class InputError(ModexError, ValueError):
    """A value a person wrote that cannot be used as it is: the message says how to write it. The
    CLI prints it, the app shows it next to the form (status 400)."""


class InvalidQuery(InputError):
    """A market query the index cannot answer: an unknown sort, a page out of range, a cursor
    from another query (node.indexer.queries)."""


class ConfigError(ModexError):
    """A configuration value, deployment record or file the node was pointed at is unusable; the
    message names the key (``context["key"]``) or the file and how to fix it."""


class ChainError(ModexError):
    """The chain could not be used: an RPC failure, a transaction not mined in time, the wrong
    chain id, a revert that is not a Modex custom error."""


class ContractRevert(ChainError):
    """A Modex contract refused the call with one of its custom errors; ``context`` holds the
    error's name and arguments, the message says it in words."""


class CompileError(ModexError):
    """solc is missing or failed to compile the contracts."""


class StoreError(ModexError):
    """The content store (kubo over HTTP or the embedded store) failed; the message names the
    endpoint or the CID."""


class ContentNotFound(StoreError):
    """The store does not hold the CID asked for (status 404 in the app)."""


class LocalStoreError(StoreError):
    """This node's own copy is unusable (bit rot, a half-written file, a read or write the disk
    refused). Not an IntegrityError: it says nothing about the content the network serves."""


class IntegrityError(ModexError):
    """Bytes do not match what they claim to be: a CID, a model hash, a manifest, metadata."""


class DecodeError(IntegrityError, ValueError):
    """Bytes that do not parse as the binary format they should be in (a truncated varint, a
    dag-pb field of an unknown wire type, a CBOR item dag-cbor forbids). The reader that knows
    which CID or file it was reading says so in the IntegrityError it raises from this."""


class ManifestError(ModexError):
    """A model directory that cannot be hashed or published (a symlink, a path escaping it, a
    pickle file, an unreadable evaluation report); the message names the file."""


class SealError(ModexError):
    """A sealed archive that is not one, or whose authentication failed (wrong key, tampering)."""


class KeyWrapError(ModexError):
    """A content key could not be wrapped or unwrapped (wrong recipient key, another purchase)."""


class KeystoreError(ModexError):
    """The wallet keystore cannot be used: a wrong password, a missing or damaged file, a private
    key that is not one (status 403 in the app)."""


class KeyDeliveryError(ModexError):
    """The key-delivery worker could not deliver a buyer's key; the message gives the reason."""
