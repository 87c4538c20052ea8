"""The prediction cache through the real app and a real tritonserver: hits and misses with their
header, entries per user when inference needs credentials, TTL, size bound, ``DELETE /cache`` and
its admin rule, a new model version, and Redis going away and coming back. Memory always; Redis
when TEST_REDIS_URL is set."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.inference.cache import RedisCache
from serving.launcher import LocalTriton
from tests.integration.accounts import issue_api_key, make_account
from tests.integration.api_client import app_settings, running_app
from tests.integration.prometheus_text import value
from tests.integration.redis_server import (
    PrivateRedis,
    remove_prefix,
    shared_redis_url,
    unique_prefix,
)

BACKENDS = ("memory", "redis")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """Settings selecting the cache backend: memory, or the shared Redis under a fresh prefix."""
    if request.param == "memory":
        yield {"cache_enabled": True}
        return
    url = shared_redis_url()
    prefix = unique_prefix()
    yield {"cache_enabled": True, "redis_url": url, "cache_redis_prefix": prefix}
    remove_prefix(url, prefix)


def _text(tag: str) -> dict[str, str]:
    return {"text": f"computer cpu memory ram {tag} {uuid.uuid4().hex[:8]}"}


async def _predict(client: httpx.AsyncClient, body: dict[str, str]) -> httpx.Response:
    reply = await client.post("/prediction", json=body)
    assert reply.status_code == 200, reply.text
    return reply


def test_a_hit_skips_the_batcher_and_says_so(
    triton: LocalTriton,
    exported_repository: Path,
    photos: list[Path],
    backend: dict[str, Any],
) -> None:
    async def check() -> None:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url, **backend)
        async with running_app(settings) as (app, client):
            stats = {name: b.stats for name, b in app.state.services.batchers.items()}
            body = _text("hit")
            first = await _predict(client, body)
            assert first.headers["x-cache"] == "miss"
            assert first.headers["x-request-id"] and float(first.headers["x-process-time"]) >= 0
            items = stats["newsgroups"].items
            second = await _predict(client, body)
            assert second.headers["x-cache"] == "hit"
            assert second.json() == first.json()
            # The same input written differently (whitespace, escapes) is the same entry.
            escaped = body["text"].replace("c", "\\u0063", 1)
            raw = '{ "text" :\n "' + escaped + '" }'
            third = await client.post(
                "/prediction", content=raw, headers={"content-type": "application/json"}
            )
            assert third.headers["x-cache"] == "hit" and third.json() == first.json()
            assert stats["newsgroups"].items == items, "hits never reach the batcher"
            assert (await _predict(client, _text("other"))).headers["x-cache"] == "miss"

            texts = {"texts": [_text("a")["text"], _text("b")["text"]]}
            batch = await client.post("/prediction/batch", json=texts)
            assert batch.headers["x-cache"] == "miss"
            again = await client.post("/prediction/batch", json=texts)
            assert again.headers["x-cache"] == "hit" and again.json() == batch.json()
            swapped = {"texts": texts["texts"][::-1]}
            assert (await client.post("/prediction/batch", json=swapped)).headers[
                "x-cache"
            ] == "miss"

            image = photos[0].read_bytes() + uuid.uuid4().bytes  # unique bytes, still a JPEG
            upload = {"image": ("photo.jpg", image, "image/jpeg")}
            detected = await client.post(
                "/object-detection", files=upload, params={"threshold": 0.0}
            )
            assert detected.status_code == 200 and detected.headers["x-cache"] == "miss"
            yolos_items = stats["yolos"].items
            cached = await client.post("/object-detection", files=upload, params={"threshold": 0})
            assert cached.headers["x-cache"] == "hit" and cached.json() == detected.json()
            assert stats["yolos"].items == yolos_items
            other = await client.post("/object-detection", files=upload, params={"threshold": 0.5})
            assert other.headers["x-cache"] == "miss", "the threshold is part of the key"

            refused = await client.post("/prediction", json={"text": "   "})
            assert refused.status_code == 422 and "x-cache" not in refused.headers

    asyncio.run(check())


def test_one_users_entries_are_never_another_users_hits(
    triton: LocalTriton,
    exported_repository: Path,
    photos: list[Path],
    backend: dict[str, Any],
) -> None:
    """Inference needs credentials: user B's request identical to user A's is a miss served by
    the model (no X-Cache or timing oracle on what A sent); A's repeat, by bearer token or by
    A's API key, is a hit."""

    async def check() -> None:
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, inference_auth="required", **backend
        )
        async with running_app(settings) as (app, client):
            stats = {name: b.stats for name, b in app.state.services.batchers.items()}
            alice, bob = await make_account(app, stem="alice"), await make_account(app, stem="bob")
            alice_key = {"X-API-Key": await issue_api_key(app, alice.id)}

            async def post(path: str, who: dict[str, str], **kwargs: Any) -> httpx.Response:
                reply = await client.post(path, headers=who, **kwargs)
                assert reply.status_code == 200, reply.text
                return reply

            body = _text("tenant")
            assert (await post("/prediction", alice.headers, json=body)).headers[
                "x-cache"
            ] == "miss"
            items = stats["newsgroups"].items
            by_bob = await post("/prediction", bob.headers, json=body)
            assert by_bob.headers["x-cache"] == "miss"
            assert stats["newsgroups"].items == items + 1, "Bob's request reached the model"
            assert (await post("/prediction", alice.headers, json=body)).headers["x-cache"] == "hit"
            assert (await post("/prediction", alice_key, json=body)).headers["x-cache"] == "hit"
            assert (await post("/prediction", bob.headers, json=body)).headers["x-cache"] == "hit"
            assert stats["newsgroups"].items == items + 1

            texts = {"texts": [_text("a")["text"], _text("b")["text"]]}
            assert (await post("/prediction/batch", alice.headers, json=texts)).headers[
                "x-cache"
            ] == "miss"
            assert (await post("/prediction/batch", bob.headers, json=texts)).headers[
                "x-cache"
            ] == "miss"
            assert (await post("/prediction/batch", alice.headers, json=texts)).headers[
                "x-cache"
            ] == "hit"

            image = photos[0].read_bytes() + uuid.uuid4().bytes
            upload = {"image": ("photo.jpg", image, "image/jpeg")}
            assert (await post("/object-detection", alice.headers, files=upload)).headers[
                "x-cache"
            ] == "miss"
            yolos_items = stats["yolos"].items
            assert (await post("/object-detection", bob.headers, files=upload)).headers[
                "x-cache"
            ] == "miss"
            assert stats["yolos"].items == yolos_items + 1, "Bob's upload reached the model"
            assert (await post("/object-detection", alice.headers, files=upload)).headers[
                "x-cache"
            ] == "hit"

            refused = await client.post("/prediction", json=body)
            assert refused.status_code == 401 and "x-cache" not in refused.headers

    asyncio.run(check())


def test_entries_expire_after_the_ttl(
    triton: LocalTriton, exported_repository: Path, backend: dict[str, Any]
) -> None:
    async def check() -> None:
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, cache_ttl_s=0.5, **backend
        )
        async with running_app(settings) as (_, client):
            body = _text("ttl")
            assert (await _predict(client, body)).headers["x-cache"] == "miss"
            assert (await _predict(client, body)).headers["x-cache"] == "hit"
            await asyncio.sleep(0.7)
            assert (await _predict(client, body)).headers["x-cache"] == "miss"

    asyncio.run(check())


def test_the_size_bound_evicts_the_least_recently_used(
    triton: LocalTriton, exported_repository: Path, backend: dict[str, Any]
) -> None:
    async def check() -> None:
        settings = app_settings(
            exported_repository, triton_url=triton.grpc_url, cache_max_entries=3, **backend
        )
        async with running_app(settings) as (app, client):
            one, two, three, four = (_text(str(n)) for n in range(4))

            async def outcome(body: dict[str, str]) -> str:
                return str((await _predict(client, body)).headers["x-cache"])

            assert [await outcome(b) for b in (one, two, three)] == ["miss"] * 3
            assert await outcome(one) == "hit"  # two is now the least recently used
            assert await outcome(four) == "miss"  # evicts two
            assert await outcome(two) == "miss"  # evicts three
            assert [await outcome(b) for b in (one, four, two)] == ["hit"] * 3
            assert await outcome(three) == "miss"
            backend_object = app.state.services.cache.store.backend
            if backend_object.name == "redis":
                assert await backend_object.size() == 3
            else:
                assert len(backend_object) == 3

    asyncio.run(check())


def test_delete_cache_needs_admin_rights(
    triton: LocalTriton, exported_repository: Path, backend: dict[str, Any]
) -> None:
    async def check() -> None:
        settings = app_settings(exported_repository, triton_url=triton.grpc_url, **backend)
        async with running_app(settings) as (app, client):
            body = _text("delete")
            await _predict(client, body)
            user = await make_account(app)
            admin = await make_account(app, admin=True, stem="admin")
            keys = "/users/me/api-keys"

            assert (await client.delete("/cache")).status_code == 401
            assert (await client.delete("/cache", headers=user.headers)).status_code == 403
            admin_key = {"name": "x", "admin": True}
            scoped = await client.post(keys, json=admin_key, headers=user.headers)
            assert scoped.status_code == 403, "only admins get admin-scoped keys"
            plain = await client.post(keys, json={"name": "bench"}, headers=admin.headers)
            assert plain.status_code == 201 and plain.json()["admin"] is False
            refused = await client.delete("/cache", headers={"X-API-Key": plain.json()["key"]})
            assert refused.status_code == 403 and "admin scope" in refused.json()["detail"]
            assert (await _predict(client, body)).headers["x-cache"] == "hit"

            assert (await client.delete("/cache", headers=admin.headers)).status_code == 204
            assert (await _predict(client, body)).headers["x-cache"] == "miss"

            ops = await client.post(keys, json=admin_key, headers=admin.headers)
            assert ops.status_code == 201 and ops.json()["admin"] is True
            listed = (await client.get(keys, headers=admin.headers)).json()
            assert [key["admin"] for key in listed] == [False, True]
            assert "key" not in listed[1]
            by_key = await client.delete("/cache", headers={"X-API-Key": ops.json()["key"]})
            assert by_key.status_code == 204
            assert (await _predict(client, body)).headers["x-cache"] == "miss"

    asyncio.run(check())


def test_a_new_model_version_invalidates_old_entries(
    exported_repository: Path, tmp_path: Path
) -> None:
    """Triton polls a private copy of the repository; version 2 appears, and the registry's
    refresh makes every earlier entry unreachable."""
    repository = tmp_path / "model_repository"
    shutil.copytree(exported_repository, repository)
    server = LocalTriton(
        repository,
        tmp_path / "triton",
        config_name="cpu",
        extra_args=("--model-control-mode=poll", "--repository-poll-secs=1"),
    )
    server.start()

    async def check() -> None:
        settings = app_settings(repository, triton_url=server.grpc_url, cache_enabled=True)
        async with running_app(settings) as (_, client):
            body = _text("version")
            first = await _predict(client, body)
            assert first.headers["x-cache"] == "miss" and first.json()["model_version"] == "1"
            assert (await _predict(client, body)).headers["x-cache"] == "hit"
            shutil.copytree(repository / "newsgroups" / "1", repository / "newsgroups" / "2")
            for _ in range(150):
                described = (await client.get("/models/newsgroups")).json()
                if described["versions"] == ["2"] and described["ready"]:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail(f"Triton never served version 2: {described}")
            renewed = await _predict(client, body)
            assert renewed.headers["x-cache"] == "miss"
            assert renewed.json()["model_version"] == "2"
            assert (await _predict(client, body)).headers["x-cache"] == "hit"

    try:
        asyncio.run(check())
    finally:
        server.stop()


def test_redis_down_keeps_serving_and_the_cache_comes_back(
    triton: LocalTriton,
    exported_repository: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A private redis-server (the shared one is never stopped): down at start-up, started,
    killed mid-test and started again. Every request succeeds throughout."""
    redis = PrivateRedis(tmp_path)

    async def check() -> None:
        settings = app_settings(
            exported_repository,
            triton_url=triton.grpc_url,
            cache_enabled=True,
            redis_url=redis.url,
            cache_retry_interval_s=0.2,
            cache_warning_interval_s=60.0,
        )
        async with running_app(settings) as (_, client):
            body = _text("redis")
            for _ in range(3):  # Redis not started yet: served without the cache
                assert (await _predict(client, body)).headers["x-cache"] == "miss"
            redis.start()
            await asyncio.sleep(0.3)
            assert (await _predict(client, body)).headers["x-cache"] == "miss"  # stored now
            assert (await _predict(client, body)).headers["x-cache"] == "hit"

            redis.stop()
            replies = [await _predict(client, body) for _ in range(5)]
            assert [reply.headers["x-cache"] for reply in replies] == ["miss"] * 5
            other = await client.post("/prediction/batch", json={"texts": [body["text"]]})
            assert other.status_code == 200
            assert (await client.delete("/cache")).status_code == 401  # auth before the backend

            metrics = (await client.get("/metrics")).text
            assert value(metrics, "tritongate_cache_errors_total", operation="get") >= 2
            assert value(metrics, "tritongate_cache_bypassed_total", model="newsgroups") >= 7
            assert value(metrics, "tritongate_cache_hits_total", model="newsgroups") == 1

            redis.start()  # empty: a new server
            await asyncio.sleep(0.3)
            assert (await _predict(client, body)).headers["x-cache"] == "miss"
            assert (await _predict(client, body)).headers["x-cache"] == "hit"

    with caplog.at_level(logging.INFO, logger="api.inference.cache"):
        try:
            asyncio.run(check())
        finally:
            redis.stop()
    guard = [r for r in caplog.records if r.name == "api.inference.cache.guard"]
    warnings = [r for r in guard if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per interval, however many failures"
    assert "redis cache unavailable" in warnings[0].getMessage()
    assert sum("redis cache is back" in r.getMessage() for r in guard) == 2
    startup = [r for r in caplog.records if r.name == "api.inference.cache"]
    assert any("unavailable" in r.getMessage() for r in startup)


def test_redis_backend_keeps_its_bound_under_many_writers() -> None:
    """Four writers at once on the shared Redis: never more than the bound, newest kept."""
    url = shared_redis_url()
    prefix = unique_prefix()

    async def check() -> None:
        caches = [
            RedisCache.from_url(url, prefix=prefix, max_entries=50, ttl=60.0, timeout=2.0)
            for _ in range(4)
        ]
        try:

            async def write(cache: RedisCache, worker: int) -> None:
                for n in range(100):
                    await cache.set(f"w{worker}-{n}", b"x")

            await asyncio.gather(*(write(cache, w) for w, cache in enumerate(caches)))
            assert await caches[0].size() == 50
            for worker in range(4):
                assert await caches[1].get(f"w{worker}-99") == b"x"
                assert await caches[2].get(f"w{worker}-0") is None
            await caches[3].clear()
            assert await caches[0].size() == 0
        finally:
            for cache in caches:
                await cache.close()

    try:
        asyncio.run(check())
    finally:
        remove_prefix(url, prefix)
