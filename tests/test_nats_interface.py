"""The actors as operators and other services see them: plain JSON over NATS, `$SRV.*` discovery,
error headers, and durable jobs published straight onto JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
import soundfile
from nats.aio.client import Client

from tests.audio import dominant_frequency_hz
from tests.conftest import Stack, _stop
from tuneforge.actors.runtime import EventPublisher, connect
from tuneforge.embedded import free_port, start_nats_server


@pytest.fixture
async def nc(live_stack: Stack) -> AsyncIterator[Client]:
    client = await nats.connect(live_stack.nats_url)
    yield client
    await client.drain()


async def request_json(nc: Client, subject: str, body: bytes | str, wait_s: float = 30) -> tuple[dict, dict]:
    data = body.encode() if isinstance(body, str) else body
    reply = await nc.request(subject, data, timeout=wait_s)
    return (json.loads(reply.data) if reply.data else {}), dict(reply.headers or {})


async def test_convert_then_export_with_plain_json(nc: Client, live_stack: Stack) -> None:
    # Exactly what `nats request tuneforge.convert '{…}'` sends: JSON typed by hand.
    converted, headers = await request_json(
        nc, "tuneforge.convert", '{"notes": [[440], [440]], "speed": 1.0, "instrument": 73}'
    )
    assert "Nats-Service-Error" not in headers, headers
    midi = converted["midi"]
    assert set(midi) >= {"uri", "sha256", "size_bytes"} and len(midi["sha256"]) == 64
    assert converted["duration_seconds"] == 1.0 and converted["notes"] == 2

    body = json.dumps({"midi": midi, "format": "flac", "sample_rate_hz": 48000})
    exported, headers = await request_json(nc, "tuneforge.export", body)
    assert "Nats-Service-Error" not in headers, headers
    assert exported["format"] == "flac" and exported["sample_rate_hz"] == 48000
    assert 1.0 <= exported["duration_seconds"] <= 4.0
    assert exported["silent_notes"] == []  # A4 on a flute: in its keys

    # A tuba has no C6 in FluidR3_GM: the reply says so, in the same request.
    high = (await request_json(nc, "tuneforge.convert", '{"notes": [[1046.5]], "instrument": 58}'))[0]
    tuba, headers = await request_json(nc, "tuneforge.export", json.dumps({"midi": high["midi"]}))
    assert "Nats-Service-Error" not in headers, headers
    (silent,) = tuba["silent_notes"]
    assert (silent["instrument"], silent["count"], silent["lowest_pitch"], silent["playable_high_pitch"]) == (
        "tuba",
        1,
        84,
        72,
    )
    audio = exported["audio"]
    assert audio["uri"].endswith(".flac") and audio["size_bytes"] > 0
    # The reference resolves in the stack's blob store, to the audio it describes.
    from tuneforge.contracts.jobs import BlobRef
    from tuneforge.storage.blobs import open_blob_store

    store = open_blob_store("", live_stack.data_dir)
    data = await store.read_bytes(BlobRef(**audio))
    samples, rate = soundfile.read(io.BytesIO(data))
    assert rate == 48000
    assert dominant_frequency_hz(samples.mean(axis=1), rate, 0.1, 0.8) == pytest.approx(440, rel=0.02)


@pytest.mark.parametrize(
    ("subject", "body", "words"),
    [
        ("tuneforge.convert", "{not json", "malformed JSON"),
        (
            "tuneforge.convert",
            '{"tracks": [{"notes": [{"pitch": 200, "start_beats": 0, "duration_beats": 1}]}]}',
            "outside the MIDI range",
        ),
        ("tuneforge.convert", '{"tracks": [{"instrument": "kazoo", "notes": []}]}', "unknown instrument"),
        (
            "tuneforge.export",
            '{"midi": {"uri": "file:///etc/passwd", "sha256": "' + "0" * 64 + '", "size_bytes": 1}}',
            "not a blob of this store (outside its folder)",
        ),
        ("tuneforge.export", '{"format": "wav"}', "midi"),
        ("tuneforge.export", "[]", "invalid request: Expected `object`"),
        ("tuneforge.export", '{"midi": {"uri": "x"', "malformed JSON: Input data was truncated"),
        ("tuneforge.mood", "{not json", "malformed JSON"),
        ("tuneforge.convert", '{"notes": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
        ("tuneforge.export", '{"midi": ' + "[" * 5000 + "]" * 5000 + "}", "Expected `object`"),
    ],
)
async def test_bad_requests_get_400_error_headers(nc: Client, subject: str, body: str, words: str) -> None:
    _, headers = await request_json(nc, subject, body)
    assert headers.get("Nats-Service-Error-Code") == "400", headers
    assert words in headers["Nats-Service-Error"]


async def test_corrupt_midi_blob_gets_400_and_the_actor_keeps_serving(nc: Client, live_stack: Stack) -> None:
    from tuneforge.storage.blobs import open_blob_store

    store = open_blob_store("", live_stack.data_dir)
    corrupt = await store.put_bytes(
        b"MThd\x00\x00\x00\x06garbage" + uuid.uuid4().bytes, "midi", "mid", "audio/midi"
    )
    _, headers = await request_json(
        nc,
        "tuneforge.export",
        json.dumps(
            {"midi": {"uri": corrupt.uri, "sha256": corrupt.sha256, "size_bytes": corrupt.size_bytes}}
        ),
    )
    assert headers.get("Nats-Service-Error-Code") == "400" and "MIDI" in headers["Nats-Service-Error"]
    converted, _ = await request_json(nc, "tuneforge.convert", '{"notes": [[262]]}')
    exported, headers = await request_json(nc, "tuneforge.export", json.dumps({"midi": converted["midi"]}))
    assert "Nats-Service-Error" not in headers and exported["audio"]["size_bytes"] > 0


async def test_services_are_discoverable_with_stats(nc: Client) -> None:
    infos = await collect(nc, "$SRV.INFO")
    by_name = {info["name"]: info for info in infos}
    assert {"tuneforge-converter", "tuneforge-exporter"} <= set(by_name)
    converter = by_name["tuneforge-converter"]
    assert converter["version"] == "0.1.0" and converter["description"]
    endpoint = converter["endpoints"][0]
    assert endpoint["subject"] == "tuneforge.convert" and endpoint["queue_group"] == "q"
    assert by_name["tuneforge-exporter"]["endpoints"][0]["subject"] == "tuneforge.export"
    await request_json(nc, "tuneforge.convert", "{not json")
    stats = {s["name"]: s for s in await collect(nc, "$SRV.STATS.tuneforge-converter")}
    endpoint_stats = stats["tuneforge-converter"]["endpoints"][0]
    assert endpoint_stats["num_requests"] >= 1 and endpoint_stats["num_errors"] >= 1
    pings = await collect(nc, "$SRV.PING.tuneforge-exporter")
    assert pings and pings[0]["name"] == "tuneforge-exporter"


async def collect(nc: Client, subject: str, wait_s: float = 0.5) -> list[dict]:
    """Every answer to a discovery request (what `nats micro ls/info/stats` do)."""
    inbox = nc.new_inbox()
    replies: list[dict] = []

    async def on_reply(msg: nats.aio.msg.Msg) -> None:
        if msg.data:
            replies.append(json.loads(msg.data))

    subscription = await nc.subscribe(inbox, cb=on_reply)
    await nc.publish(subject, b"", reply=inbox)
    await asyncio.sleep(wait_s)
    await subscription.unsubscribe()
    return replies


async def test_a_poison_job_is_reported_failed_not_retried(nc: Client, live_stack: Stack) -> None:
    """A job message that can never succeed becomes a `failed` event at once, with the reason."""
    js = nc.jetstream()
    job_id = str(uuid.uuid4())
    events = await js.subscribe(f"tuneforge.events.{job_id}", ordered_consumer=True)
    # (A reference to a blob that is not there is retried instead, as a replica reading another
    # store than the pipeline's would see it: tests/test_worker_death.py.)
    bogus = {"kind": "export", "job_id": job_id, "midi": {"uri": "file:///nowhere.mid"}}
    await js.publish("tuneforge.jobs.export", json.dumps(bogus).encode())
    message = await events.next_msg(timeout=20)
    event = json.loads(message.data)
    if event["event"] == "progress":
        message = await events.next_msg(timeout=20)
        event = json.loads(message.data)
    assert (
        event["event"] == "failed" and event["error"]["code"] == 400 and "sha256" in event["error"]["message"]
    )
    await events.unsubscribe()


async def test_a_progress_event_the_bus_cannot_take_costs_the_job_nothing(tmp_path: Path) -> None:
    """After a NATS outage a failed "rendering 100 %" event threw the finished render away and the
    job was rendered again; progress is best effort, a job's final event is not."""
    process, url = start_nats_server(tmp_path / "nats", port=free_port())
    client, _ = await connect(url, "progress-test")
    try:
        events = EventPublisher(client.jetstream(timeout=1))
        await events.progress("job-1", "rendering", 50.0)
        _stop(process)
        await asyncio.wait_for(events.progress("job-1", "rendering", 100.0), 5)  # logged, not raised
        with pytest.raises(Exception):  # noqa: B017 - whatever the bus raises, it reaches the job
            await asyncio.wait_for(events.failed("job-1", "rendering", 500, "render lost"), 5)
    finally:
        _stop(process)
        with contextlib.suppress(Exception):  # closing a client whose server is gone may raise
            await client.close()
