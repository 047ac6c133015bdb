"""Exceptions of the Modex node. One tree; callers catch the branch they can handle.

    ModexError                      base: every error the node raises on purpose
    ├── InputError                  a value a person typed that must be corrected (an amount of
    │                               ETH, a form field); also a ValueError
    ├── ConfigError                 a bad configuration value (names the key)
    ├── ChainError                  RPC failures, reverts (decoded custom errors), wrong chain
    │   └── ContractRevert          a decoded custom error from a Modex contract
    ├── CompileError                solc failed or is missing
    ├── StoreError                  IPFS / embedded store failures (names the endpoint or CID)
    │   ├── ContentNotFound         the store does not hold the CID
    │   └── LocalStoreError         this node's own copy or disk failed (a corrupt cached block,
    │                               an unreadable or unwritable store): never a verdict on content
    ├── IntegrityError              bytes do not match what they claim (hash, CID, manifest)
    ├── ManifestError               a model directory that cannot be hashed (symlink, escape, pickle...)
    ├── SealError                   sealed-archive format or authentication failure
    ├── KeyWrapError                HPKE wrap/unwrap failure (wrong recipient, wrong purchase)
    ├── KeystoreError               wallet keystore problems (wrong password, missing file)
    └── KeyDeliveryError            the worker could not deliver a key (with the reason)

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


class ConfigError(ModexError):
    pass


class ChainError(ModexError):
    pass


class ContractRevert(ChainError):
    pass


class CompileError(ModexError):
    pass


class StoreError(ModexError):
    pass


class ContentNotFound(StoreError):
    pass


class LocalStoreError(StoreError):
    """This node's own copy is unusable (bit rot, a half-written file, a read or write the disk
    refused). Not an IntegrityError: it says nothing about the content the network serves."""


class IntegrityError(ModexError):
    pass


class ManifestError(ModexError):
    pass


class SealError(ModexError):
    pass


class KeyWrapError(ModexError):
    pass


class KeystoreError(ModexError):
    pass


class KeyDeliveryError(ModexError):
    pass
