"""The ServiceStore on Redis (redis-py), for several machines serving one model.

Keys, under ``modex:``: ``nonce:<signer>:<nonce>`` (SET NX with a TTL that ends one second after
the request's deadline: Redis forgets it), ``voucher:<channel id>`` (a hash: cumulative,
signature, claimed) with the set ``vouchers`` of channel ids, and ``trial:<model id>:<address>``
(a counter). Each compare-and-set is one Lua script, which Redis runs atomically; amounts are
78-digit zero-padded decimal text (Lua's numbers are doubles), so comparing the text compares
the amounts.

Vouchers must be on disk before the service answers: the server has to run with
``appendonly yes`` and ``appendfsync always`` (checked when the store opens; otherwise
accept_voucher refuses with a ServiceStoreError saying so, while nonces and trials still work).
"""

from __future__ import annotations

import logging
import time

import redis

from node.servicestore.base import ServiceStore, ServiceStoreError, redacted, sortable

log = logging.getLogger(__name__)

PREFIX = "modex:"
CHANNELS = PREFIX + "vouchers"
TIMEOUT = 5.0  # seconds to connect and per command

RAISE_VOUCHER = """
local current = redis.call('HGET', KEYS[1], 'cumulative')
if current and current > ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'cumulative', ARGV[1], 'signature', ARGV[2])
redis.call('HSETNX', KEYS[1], 'claimed', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
return 1
"""
MARK_CLAIMED = """
local claimed = redis.call('HGET', KEYS[1], 'claimed')
if claimed and claimed < ARGV[1] then redis.call('HSET', KEYS[1], 'claimed', ARGV[1]) end
return 0
"""
COUNT_TRIAL = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
return 1
"""
RELEASE_TRIAL = """
if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisServiceStore(ServiceStore):
    def __init__(self, url: str, *, clock=time.time):
        self.url = redacted(url)
        self._clock = clock
        self._redis = redis.Redis.from_url(
            url, socket_connect_timeout=TIMEOUT, socket_timeout=TIMEOUT
        )
        self._durable = self._call(self._fsyncs_every_write)
        self._raise_voucher_script = self._redis.register_script(RAISE_VOUCHER)
        self._mark_claimed_script = self._redis.register_script(MARK_CLAIMED)
        self._count_trial_script = self._redis.register_script(COUNT_TRIAL)
        self._release_trial_script = self._redis.register_script(RELEASE_TRIAL)

    def _call(self, operation, *args):
        """``operation(*args)``; a Redis that cannot be reached is a ServiceStoreError."""
        try:
            return operation(*args)
        except redis.RedisError as exc:
            raise ServiceStoreError(
                f"the state store {self.url} cannot be used: {exc}; check that Redis runs "
                f"there and that the URL (--state) is right",
                url=self.url,
            ) from exc

    def _fsyncs_every_write(self) -> bool | None:
        """True when the server fsyncs its append-only file on every write; None when it does
        not say (CONFIG disabled, as on some hosted services): trusted then, with a warning."""
        self._redis.ping()
        try:
            settings = self._redis.config_get("append*")
        except redis.ResponseError:
            log.warning("%s does not answer CONFIG GET: vouchers are taken as durable", self.url)
            return None
        return settings.get("appendonly") == "yes" and settings.get("appendfsync") == "always"

    @staticmethod
    def _nonce_key(signer: str, nonce: int) -> str:
        return f"{PREFIX}nonce:{signer.lower()}:{int(nonce)}"

    def use_nonce(self, signer: str, nonce: int, deadline: int) -> bool:
        ttl = max(1, int(deadline) - int(self._clock()) + 1)
        key = self._nonce_key(signer, nonce)
        return bool(self._call(lambda: self._redis.set(key, int(deadline), ex=ttl, nx=True)))

    def release_nonce(self, signer: str, nonce: int) -> None:
        self._call(self._redis.delete, self._nonce_key(signer, nonce))

    def nonces_held(self) -> int:
        return len(self._call(lambda: list(self._redis.scan_iter(f"{PREFIX}nonce:*"))))

    def _raise_voucher(self, channel_id, cumulative_amount, signature, previous_at_most) -> bool:
        if self._durable is False:
            raise ServiceStoreError(
                f"{self.url} does not fsync every write, so a voucher could be lost in a crash "
                f"after the call was answered: run redis-server with --appendonly yes "
                f"--appendfsync always",
                url=self.url,
            )
        keys = [f"{PREFIX}voucher:{channel_id}", CHANNELS]
        values = [
            sortable(cumulative_amount),
            signature,
            sortable(previous_at_most),
            sortable(0),
            str(channel_id),
        ]
        return bool(self._call(self._raise_voucher_script, keys, values))

    def highest_voucher(self, channel_id: int) -> tuple[int, bytes] | None:
        key = f"{PREFIX}voucher:{int(channel_id)}"
        amount, signature = self._call(self._redis.hmget, key, ["cumulative", "signature"])
        return None if amount is None else (int(amount), bytes(signature))

    def vouchers_to_claim(self) -> list[tuple[int, int, bytes, int]]:
        channels = sorted(int(c) for c in self._call(self._redis.smembers, CHANNELS))
        pipe = self._redis.pipeline(transaction=False)
        for channel in channels:
            pipe.hmget(f"{PREFIX}voucher:{channel}", ["cumulative", "signature", "claimed"])
        found = []
        for channel, (amount, signature, claimed) in zip(
            channels, self._call(pipe.execute), strict=True
        ):
            if amount is not None and amount > claimed:
                found.append((channel, int(amount), bytes(signature), int(claimed)))
        return found

    def mark_claimed(self, channel_id: int, cumulative_amount: int) -> None:
        keys = [f"{PREFIX}voucher:{int(channel_id)}"]
        self._call(self._mark_claimed_script, keys, [sortable(int(cumulative_amount))])

    def _count_trial(self, model_id: int, address: str, limit: int) -> bool:
        keys = [f"{PREFIX}trial:{model_id}:{address}"]
        return bool(self._call(self._count_trial_script, keys, [limit]))

    def release_trial(self, model_id: int, address: str) -> None:
        keys = [f"{PREFIX}trial:{int(model_id)}:{address.lower()}"]
        self._call(self._release_trial_script, keys, [])

    def close(self) -> None:
        self._redis.close()
