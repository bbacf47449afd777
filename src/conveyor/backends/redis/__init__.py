"""The Redis backend (single node or Redis Cluster). Needs ``conveyor[redis]``."""

from conveyor.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
