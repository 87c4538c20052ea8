"""The per-process objects the routes use, built and closed by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from api.config import ModelBatching, Settings
from api.inference.cache import NullCacheObserver, PredictionCache, build_prediction_cache
from api.inference.streaming import NullStreamObserver, OpenStreams, StreamObserver
from api.platform.metrics import Metrics
from serving.batching import BatcherConfig, MicroBatcher
from serving.client import InferenceClient, InProcessOrtClient, TritonGrpcClient
from serving.detector import ObjectDetector
from serving.registry import ModelRegistry
from serving.specs import MODEL_SPECS, NEWSGROUPS, YOLOS
from serving.text import TextClassifier

logger = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    """The settings cannot produce a working service."""


@dataclass
class Services:
    settings: Settings
    client: InferenceClient
    registry: ModelRegistry
    batchers: dict[str, MicroBatcher]
    classifier: TextClassifier
    detector: ObjectDetector
    executor: ThreadPoolExecutor
    cache: PredictionCache
    stream_observer: StreamObserver = field(default_factory=NullStreamObserver)
    streams: OpenStreams = field(default_factory=OpenStreams)
    refresher: asyncio.Task[None] | None = None

    async def close(self) -> None:
        await self.streams.close_all()
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        for batcher in self.batchers.values():
            await batcher.close()
        await self.client.close()
        await self.cache.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def build_client(settings: Settings) -> InferenceClient:
    if settings.inference_backend == "onnxruntime":
        return InProcessOrtClient(
            settings.model_repository, list(MODEL_SPECS), settings.triton_config_name or None
        )
    if not settings.triton_url:
        raise ConfigurationError(
            "TRITONGATE_TRITON_URL is not set: run `tritongate serve` (it starts a local Triton), "
            "point TRITONGATE_TRITON_URL at a running Triton's gRPC address, or set "
            "TRITONGATE_INFERENCE_BACKEND=onnxruntime"
        )
    return TritonGrpcClient(settings.triton_url)


# While a model's version is unconfirmed (Triton was unreachable or served another version), the
# registry is refreshed this often instead of every ``model_refresh_interval_s``.
UNCONFIRMED_REFRESH_S = 0.25


async def _refresh_forever(registry: ModelRegistry, interval: float) -> None:
    while True:
        pause = interval if registry.all_confirmed else min(interval, UNCONFIRMED_REFRESH_S)
        await asyncio.sleep(pause)
        try:
            await registry.refresh()
        except Exception:  # keep refreshing whatever one round hit
            logger.exception("model registry refresh failed")


async def start_services(settings: Settings, metrics: Metrics | None = None) -> Services:
    """Connect, read each model's state, build one micro-batcher per model and the cache."""
    client = build_client(settings)
    registry = ModelRegistry(
        client, settings.model_repository, list(MODEL_SPECS), settings.triton_config_name or None
    )
    await registry.refresh()
    for state in registry.states.values():
        if not state.ready:
            logger.warning("model %s is not ready yet: %s", state.name, state.error)
    batchers = {}
    for name in MODEL_SPECS:
        own = settings.batching_per_model.get(name, ModelBatching())
        max_delay_us = settings.batch_max_delay_us if own.max_delay_us is None else own.max_delay_us
        config = BatcherConfig(
            max_batch_size=registry.max_batch_size(name),
            max_delay=max_delay_us / 1e6,
            idle_delay=own.idle_delay_us / 1e6,
            prepare_wait=own.prepare_wait_us / 1e6,
            max_queue=settings.queue_size,
            timeout=settings.request_timeout_s,
            max_in_flight=own.max_in_flight or settings.batch_max_in_flight,
            enabled=settings.batching_enabled,
            ride_through=settings.triton_ride_through_s,
        )
        observer = metrics.batcher_observer(name) if metrics is not None else None
        batchers[name] = MicroBatcher(name, client, config, observer)
        batchers[name].start()
    executor = ThreadPoolExecutor(settings.preprocess_threads, thread_name_prefix="preprocess")
    cache = await build_prediction_cache(
        settings,
        metrics.cache_observer() if metrics is not None else NullCacheObserver(),
        registry,
    )
    services = Services(
        settings=settings,
        client=client,
        registry=registry,
        batchers=batchers,
        classifier=TextClassifier(
            batchers[NEWSGROUPS.name], registry.states[NEWSGROUPS.name].labels
        ),
        detector=ObjectDetector(
            batchers[YOLOS.name],
            registry.states[YOLOS.name].labels,
            executor,
            settings.max_image_pixels,
        ),
        executor=executor,
        cache=cache,
        stream_observer=metrics.stream_observer() if metrics is not None else NullStreamObserver(),
    )
    services.refresher = asyncio.create_task(
        _refresh_forever(registry, settings.model_refresh_interval_s), name="model-refresh"
    )
    return services
