"""Redis ACL users of the compose stack: each service may touch only what its job needs.

=========== ===================================================================================
user        permissions (keys under the registry prefix, default ``slicetwin:``)
=========== ===================================================================================
default     PING only (health checks); no keys, no data
controller  read/write ``cells:*`` and ``transitions*`` (XADD, every shard); read
            ``{models}:*``; subscribe to ``{models}:events``
trainer     read/write ``{models}:*`` (publish, promote) and ``transitions*`` (consumer
            groups); publish/subscribe ``{models}:events``
twin        read ``{models}:*``; subscribe ``{models}:events``; nothing else
operator    as trainer on ``{models}:*`` (``slicetwin models promote|rollback|publish``)
=========== ===================================================================================

Passwords are stored as SHA-256 (``#<hex>``), so the rendered file holds no password.
``slicetwin keys init`` writes it beside ``.env``; ``tests/integration/test_security_redis_acl.py`` starts a
real redis-server with it and checks every allowance and refusal.
"""

from __future__ import annotations

import hashlib

# command categories: connection upkeep, reads, and the writes/scripts each role needs.
# Lua scripts (cell commit, XADD batch, promote/rollback) are checked key by key by Redis 7.
_BASE = "+ping +hello +client|setname +client|id +select +echo +quit +reset " \
        "+cluster|slots +cluster|shards +cluster|nodes +readonly"  # (a cluster client's map)
_READ_MODELS = "+hmget +hget +hgetall +get +zrange +lrange +lindex +exists +type +subscribe " \
               "+unsubscribe +psubscribe"
# registry keys carry the hash tag {models}; transitions shards are {p}transitions:{...}
RULES = {
    "controller": ("~{p}cells:* ~{p}transitions* %R~{p}{{models}}:* &{p}{{models}}:events "
                   f"{_BASE} {_READ_MODELS} +hset +expire +set +del +incr +xadd +xlen +wait "
                   "+evalsha +eval +script|load +script|exists"),
    "trainer": ("~{p}{{models}}:* ~{p}transitions* &{p}{{models}}:events "
                f"{_BASE} {_READ_MODELS} +hset +hsetnx +zadd +set +lpush +ltrim +wait "
                "+publish +xreadgroup +xack +xgroup|create +xinfo|groups +xinfo|consumers "
                "+xinfo|stream +xlen +xpending +xclaim +xautoclaim +evalsha +eval "
                "+script|load +script|exists +multi +exec"),
    "twin": f"%R~{{p}}{{{{models}}}}:* &{{p}}{{{{models}}}}:events {_BASE} {_READ_MODELS}",
    "operator": ("~{p}{{models}}:* &{p}{{models}}:events "
                 f"{_BASE} {_READ_MODELS} +hset +hsetnx +zadd +set +lpush +ltrim +wait "
                 "+publish +evalsha +eval +script|load +script|exists +multi +exec"),
}


def render_acl(passwords: dict[str, str], prefix: str = "slicetwin:") -> str:
    """The ACL file for ``passwords`` (user -> password), one ``user`` line each."""
    lines = ["user default on nopass resetchannels -@all +ping"]
    for user, rule in RULES.items():
        pw = passwords[user]
        digest = hashlib.sha256(pw.encode()).hexdigest()
        lines.append(f"user {user} on #{digest} resetchannels -@all "
                     + rule.format(p=prefix))
    return "\n".join(lines) + "\n"


def passwords_from_env(env: dict[str, str]) -> dict[str, str]:
    return {u: env[f"REDIS_{u.upper()}_PASSWORD"] for u in RULES}
