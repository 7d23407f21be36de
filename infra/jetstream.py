"""Apply the JetStream streams and consumers defined in `infra/nats/jetstream.json`.

Every process applies them on start, idempotently, so the first one up creates them and a
changed definition reaches the server with the next deployment.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

log = logging.getLogger(__name__)


def definitions() -> dict[str, Any]:
    text = resources.files("tuneforge.infra").joinpath("nats/jetstream.json").read_text()
    return dict(json.loads(text))


def consumer_definition(durable_name: str) -> dict[str, Any]:
    for consumer in definitions()["consumers"]:
        if consumer["durable_name"] == durable_name:
            return dict(consumer)
    raise KeyError(durable_name)


def _stream_config(spec: dict[str, Any]) -> StreamConfig:
    return StreamConfig(
        name=spec["name"],
        description=spec.get("description"),
        subjects=spec["subjects"],
        retention=RetentionPolicy(spec["retention"]),
        storage=StorageType(spec["storage"]),
        max_age=float(spec["max_age_seconds"]),  # 0: no age limit
        max_msg_size=spec.get("max_msg_size"),
        max_msgs_per_subject=spec.get("max_msgs_per_subject", -1),
        duplicate_window=float(spec["duplicate_window_seconds"]),
    )


def _consumer_config(spec: dict[str, Any]) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec["durable_name"],
        filter_subject=spec["filter_subject"],
        ack_wait=float(spec["ack_wait_seconds"]),
        max_deliver=spec["max_deliver"],
        max_ack_pending=spec["max_ack_pending"],
    )


async def apply_definitions(js: JetStreamContext) -> None:
    spec = definitions()
    for stream in spec["streams"]:
        config = _stream_config(stream)
        try:
            await js.stream_info(config.name or "")
            await js.update_stream(config)
        except NotFoundError:
            await js.add_stream(config)
    for consumer in spec["consumers"]:
        try:
            await js.add_consumer(consumer["stream"], _consumer_config(consumer))
        except BadRequestError as error:
            # An existing durable with another config: keep it (deleting would lose its
            # position and in-flight acks) and say so, so an operator can migrate it.
            log.warning("consumer %s left as it is: %s", consumer["durable_name"], error)
