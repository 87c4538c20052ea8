"""The prediction cache: memory (default) or Redis (``TRITONGATE_REDIS_URL``), built from the
settings in the app's lifespan. See the README's "Caching" section."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from api.config import Settings
from api.inference.cache.base import (
    CacheBackend,
    CacheError,
    CacheObserver,
    CacheUnavailableError,
    NullCacheObserver,
)
from api.inference.cache.guard import GuardedCache
from api.inference.cache.keys import CacheKey, image_key, image_key_off_loop, text_key, texts_key
from api.inference.cache.memory import MemoryCache
from api.inference.cache.predictions import CACHE_HEADER, ModelVersions, PredictionCache
from api.inference.cache.redis import RedisCache

__all__ = [
    "CACHE_HEADER",
    "CacheBackend",
    "CacheError",
    "CacheKey",
    "CacheObserver",
    "CacheUnavailableError",
    "GuardedCache",
    "MemoryCache",
    "NullCacheObserver",
    "PredictionCache",
    "RedisCache",
    "build_prediction_cache",
    "image_key",
    "image_key_off_loop",
    "text_key",
    "texts_key",
]

logger = logging.getLogger(__name__)


def redis_location(url: str) -> str:
    """``host:port/db`` of a Redis URL, without credentials (for logs)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"


def build_backend(settings: Settings) -> CacheBackend:
    redis_url = settings.redis_url_value
    if redis_url:
        return RedisCache.from_url(
            redis_url,
            prefix=settings.cache_redis_prefix,
            max_entries=settings.cache_max_entries,
            ttl=settings.cache_ttl_s,
            timeout=settings.redis_timeout_s,
        )
    return MemoryCache(settings.cache_max_entries, settings.cache_ttl_s)


async def build_prediction_cache(
    settings: Settings, observer: CacheObserver, versions: ModelVersions
) -> PredictionCache:
    """The configured cache. With Redis, its reachability is checked (and logged) but a Redis
    that is down does not stop the API: it serves without the cache until Redis answers."""
    if not settings.cache_enabled:
        logger.info("prediction cache disabled")
        return PredictionCache(None, versions)
    backend = build_backend(settings)
    store = GuardedCache(
        backend,
        observer,
        retry_interval=settings.cache_retry_interval_s,
        warning_interval=settings.cache_warning_interval_s,
    )
    if isinstance(backend, RedisCache):
        location = redis_location(settings.redis_url_value or "")
        try:
            await backend.ping()
            logger.info("prediction cache: redis at %s", location)
        except CacheError as error:
            logger.warning(
                "prediction cache: redis at %s is unavailable (%s); serving without the cache "
                "until it answers",
                location,
                error,
            )
    else:
        logger.info(
            "prediction cache: in-process LRU (%d entries, TTL %.0f s)",
            settings.cache_max_entries,
            settings.cache_ttl_s,
        )
    return PredictionCache(store, versions)
