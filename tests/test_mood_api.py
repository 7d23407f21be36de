"""The mood actor end to end: HTTP (`/mood`, `/get_mood`, `/jobs/{id}/mood`), the job pipeline's
last stage with its SSE events, and the plain-JSON NATS endpoint `tuneforge.mood`."""

from __future__ import annotations

import io
import json
import struct
import uuid

import msgspec
import nats
import numpy as np
import pytest
import soundfile

from tests.conftest import Stack
from tests.test_mood import HAPPY, SAD, tone
from tests.test_pipeline_http import read_sse, unique_score, wait_done
from tuneforge.contracts.mood import MOOD_LABELS

MOOD_KEYS = {"label", "quadrant", "valence", "arousal", "confidence", "probabilities", "features", "timeline"}


def encoded(fmt: str, seconds: float = 6.0, rate: int = 44100) -> bytes:
    # A unique amplitude per call, so no test is answered from another's cache.
    amplitude = 0.1 + (uuid.uuid4().int % 1000) / 10000
    out = io.BytesIO()
    soundfile.write(out, tone(seconds, rate, 2, amplitude), rate, format=fmt)
    return out.getvalue()


# The quadrant each label names: (valence ≥ 0, arousal > 0); the origin (silence) is calm.
LABEL_SIDES = {"happy": (True, True), "tense": (False, True), "sad": (False, False), "calm": (True, False)}


def assert_in_its_quadrant(mood: dict) -> None:
    """The label, the quadrant and the (valence, arousal) point say the same thing."""
    assert (mood["valence"] >= 0, mood["arousal"] > 0) == LABEL_SIDES[mood["label"]], mood
    assert mood["quadrant"] == f"Q{list(LABEL_SIDES).index(mood['label']) + 1}", mood


def assert_mood(body: dict) -> None:
    assert set(body) >= MOOD_KEYS, body
    assert body["label"] in MOOD_LABELS
    assert -1 <= body["valence"] <= 1 and -1 <= body["arousal"] <= 1
    for mood in (body, *body["timeline"]):
        assert_in_its_quadrant(mood)
    assert set(body["probabilities"]) == set(MOOD_LABELS)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert {"tempo_bpm", "key", "mode", "loudness_db", "brightness_hz", "note_density_per_s"} <= set(
        body["features"]
    )


@pytest.mark.parametrize(
    ("fmt", "content_type"),
    [("WAV", "audio/wav"), ("FLAC", "audio/flac"), ("OGG", "audio/ogg"), ("MP3", "audio/mpeg")],
)
def test_uploaded_audio_gets_its_mood(live_stack: Stack, fmt: str, content_type: str) -> None:
    data = encoded(fmt)
    with live_stack.client() as client:
        response = client.post("/mood", content=data, headers={"content-type": content_type})
        assert response.status_code == 200, response.text
        body = response.json()
        assert_mood(body)
        assert body["features"]["note_density_per_s"] is None  # no MIDI behind an audio upload
        assert body["duration_seconds"] == pytest.approx(6.0, abs=0.15)
        assert [w["start_seconds"] for w in body["timeline"]] == [0.0, 5.0]
        # Multipart, same bytes: the same answer (from the cache, keyed by the audio's sha256).
        again = client.post("/mood", files={"file": (f"x.{fmt.lower()}", data, content_type)})
        assert again.status_code == 200, again.text
        assert again.json() == body
        # Mislabelled (Postman's raw mode and `fetch` with a string say text/plain): the file's own
        # first bytes say it is audio.
        for label in ("text/plain", "application/json", "audio/midi"):
            mislabelled = client.post("/mood", content=data, headers={"content-type": label})
            assert mislabelled.status_code == 200, (label, mislabelled.text)
            assert mislabelled.json() == body


def test_a_long_wav_upload_streams_in_and_gets_its_timeline(live_stack: Stack) -> None:
    # 2.5 minutes of 44.1 kHz 16-bit stereo: 26 MB, more than a JSON body may be, well inside 200 MiB.
    wav = encoded("WAV", 150.0)
    assert len(wav) > 25 * 1024 * 1024
    with live_stack.client(timeout=120) as client:
        chunks = (wav[i : i + (1 << 20)] for i in range(0, len(wav), 1 << 20))  # chunked, as curl -T sends
        response = client.post("/mood", content=chunks, headers={"content-type": "audio/wav"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_mood(body)
    assert body["duration_seconds"] == pytest.approx(150.0, abs=0.1)
    assert len(body["timeline"]) == 30


def test_uploaded_midi_is_rendered_and_analysed_with_its_notes(live_stack: Stack) -> None:
    with live_stack.client(timeout=120) as client:
        happy = client.post("/mood", content=HAPPY, headers={"content-type": "audio/midi"})
        sad = client.post("/mood", files={"file": ("sad.mid", SAD, "audio/midi")})
    assert happy.status_code == 200, happy.text
    assert sad.status_code == 200, sad.text
    happy_mood, sad_mood = happy.json(), sad.json()
    assert_mood(happy_mood)
    assert happy_mood["features"]["note_density_per_s"] > 5
    assert happy_mood["features"]["tempo_bpm"] == pytest.approx(168, abs=0.5)
    assert happy_mood["arousal"] > sad_mood["arousal"] and happy_mood["valence"] > sad_mood["valence"]


def with_impossible_key_signature_in_rmid(smf: bytes) -> bytes:
    """The file as some editors save it: a key signature of 9 sharps, in a RIFF `RMID` wrapper."""
    at = smf.index(b"MTrk")
    length = struct.unpack(">I", smf[at + 4 : at + 8])[0]
    event = b"\x00\xff\x59\x02\x09\x00"
    smf = smf[: at + 4] + struct.pack(">I", length + len(event)) + event + smf[at + 8 :]
    return b"RIFF" + struct.pack("<I", 12 + len(smf)) + b"RMIDdata" + struct.pack("<I", len(smf)) + smf


def test_midi_as_found_in_the_wild_gets_its_mood(live_stack: Stack) -> None:
    wild = with_impossible_key_signature_in_rmid(SAD)
    with live_stack.client(timeout=120) as client:
        response = client.post("/mood", content=wild, headers={"content-type": "application/octet-stream"})
        plain = client.post("/mood", content=SAD, headers={"content-type": "audio/midi"})
    assert response.status_code == 200, response.text
    assert_mood(response.json())
    heard, plain_heard = response.json()["features"], plain.json()["features"]
    for name in ("note_density_per_s", "tempo_bpm", "key", "mode"):  # from the notes: the same notes
        assert heard[name] == plain_heard[name], name


def test_get_mood_of_a_grid(live_stack: Stack) -> None:
    # The /download body: a rising C-major figure, fast.
    columns = [[261.63, 329.63, 392.0], [523.25], [659.25], [783.99]] * 6 + [[]] * (uuid.uuid4().int % 40 + 1)
    with live_stack.client(timeout=120) as client:
        response = client.post("/get_mood", json={"notes": columns, "speed": 2.0, "instrument": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert_mood(body)
    assert body["features"]["tempo_bpm"] == pytest.approx(240, abs=1)
    assert body["features"]["note_density_per_s"] > 0


def test_job_with_mood_ends_analyzing_then_done(live_stack: Stack) -> None:
    score = {
        **unique_score(seconds=7.0, pitch="E4", instrument="acoustic_grand_piano"),
        "options": {"analyze_mood": True},
    }
    # A tuba note above the SoundFont's tuba: the report of it survives the mood stage.
    tuba = {"instrument": "tuba", "notes": [{"pitch": "E5", "start_beats": 1, "duration_beats": 0.5}]}
    score["tracks"] = [*score["tracks"], tuba]
    with live_stack.client(timeout=120) as client:
        job = client.post("/jobs", json=score).json()
        with client.stream("GET", job["links"]["events"]) as response:
            events = read_sse(response)
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "done", events
        stages = [json.loads(e["data"])["stage"] for e in events[:-1]]
        assert "analyzing" in stages and stages.index("analyzing") > stages.index("rendering")
        analyzing = [json.loads(e["data"])["percent"] for e in events[:-1] if '"analyzing"' in e["data"]]
        assert analyzing[0] == 0 and analyzing[-1] == 100 and analyzing == sorted(analyzing)
        done = json.loads(events[-1]["data"])
        assert_mood(done["result"]["mood"])
        assert done["result"]["mood"]["duration_seconds"] > 7.0
        assert [(p["instrument"], p["count"]) for p in done["result"]["silent_notes"]] == [("tuba", 1)]
        assert wait_done(client, job["id"])["status"] == "done"
        mood = client.get(f"/jobs/{job['id']}/mood")
        assert mood.status_code == 200, mood.text
        assert mood.json() == done["result"]["mood"]
        # A job rendered without analyze_mood is analysed on demand.
        plain = client.post("/jobs", json=unique_score(seconds=2.0)).json()
        assert wait_done(client, plain["id"])["result"]["mood"] is None
        on_demand = client.get(f"/jobs/{plain['id']}/mood")
        assert on_demand.status_code == 200, on_demand.text
        assert_mood(on_demand.json())
        assert client.get("/jobs/nope/mood").status_code == 404


def test_non_audio_and_corrupt_uploads_get_a_clear_4xx(live_stack: Stack) -> None:
    flac = encoded("FLAC")
    with live_stack.client() as client:
        cases = {
            "text": (b"hello, I am not a song\n" * 50, "audio/wav"),
            "truncated header": (flac[:30], "audio/flac"),
            "garbage after a header": (flac[:200] + bytes(range(256)) * 200, "audio/flac"),
            "json": (b'{"notes": [[440]]}', "application/json"),
            "corrupt midi": (b"MThd\x00\x00\x00\x06\x00\x01", "audio/midi"),
            "empty": (b"", "audio/wav"),
        }
        for name, (data, content_type) in cases.items():
            response = client.post("/mood", content=data, headers={"content-type": content_type})
            assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
            assert response.json()["detail"], name
            assert "object at 0x" not in response.json()["detail"], name  # words, not our internals
        # Plain text is not audio: said so, not answered with a hint about Grid or Score JSON.
        text = client.post("/mood", files={"file": ("notes.txt", b"la la la\n" * 40, "text/plain")})
        assert text.status_code == 400 and "not a readable audio file" in text.json()["detail"], text.text
        # Formats it does not take are named: 415, saying what was sent and what is accepted.
        named = {
            "MP4/M4A": b"\x00\x00\x00\x20ftypM4A \x00\x00\x02\x00" + bytes(4000),
            "WMA": bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c") + bytes(4000),
            "Ogg Opus": b"OggS\x00\x02" + bytes(20) + b"\x01\x13OpusHead\x01\x02" + bytes(4000),
            "FLAC in an Ogg container": b"OggS\x00\x02" + bytes(22) + b"\x7fFLAC\x01\x00" + bytes(4000),
            "JPEG image": b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(4000),
        }
        for name, data in named.items():
            response = client.post(
                "/mood", content=data, headers={"content-type": "application/octet-stream"}
            )
            assert response.status_code == 415, (name, response.text)
            assert name in response.json()["detail"] and "send WAV, FLAC" in response.json()["detail"]
        aiff = io.BytesIO()
        soundfile.write(aiff, 0.3 * np.sin(np.linspace(0, 2000 * np.pi, 44100 * 2)), 44100, format="AIFF")
        accepted = client.post("/mood", content=aiff.getvalue(), headers={"content-type": "audio/aiff"})
        assert accepted.status_code == 200, accepted.text
        assert_mood(accepted.json())
        # Over the audio limit: sent in chunks (no content-length), refused once 200 MiB have arrived.
        too_big = client.post(
            "/mood",
            content=(b"RIFF" if i == 0 else bytes(1024 * 1024) for i in range(202)),
            headers={"content-type": "audio/wav"},
        )
        assert too_big.status_code == 413 and "200 MiB" in too_big.json()["detail"], too_big.text
        # A MIDI file over its own limit, inside the audio one.
        big_midi = client.post(
            "/mood", content=b"MThd" + bytes(5 * 1024 * 1024), headers={"content-type": "audio/midi"}
        )
        assert big_midi.status_code == 413 and str(4 * 1024 * 1024) in big_midi.json()["detail"], (
            big_midi.text
        )
        # Longer than an hour (a FLAC of silence is small): refused before anything is stored.
        hour = io.BytesIO()
        soundfile.write(hour, np.zeros(8000 * 3605, dtype=np.int16), 8000, format="FLAC")
        too_long = client.post("/mood", content=hour.getvalue(), headers={"content-type": "audio/flac"})
        assert too_long.status_code == 400 and "at most 3600 s" in too_long.json()["detail"], too_long.text
        # Below 8 kHz the band the features read is not there; absurd rates are not audio anyone made.
        for rate, words in ((4000, "needs at least 8000 Hz"), (2_000_000_000, "at most 384000 Hz")):
            low = io.BytesIO()
            soundfile.write(low, np.zeros(4000), rate, format="WAV")
            response = client.post("/mood", content=low.getvalue(), headers={"content-type": "audio/wav"})
            assert response.status_code == 400 and words in response.json()["detail"], response.text
        # The service is still fine.
        assert (
            client.post(
                "/mood", content=encoded("WAV", 2.0), headers={"content-type": "audio/wav"}
            ).status_code
            == 200
        )


async def test_nats_endpoint_takes_plain_json_and_reports_errors(live_stack: Stack) -> None:
    from tuneforge.storage.blobs import open_blob_store

    store = open_blob_store("", live_stack.data_dir)
    ref = await store.put_bytes(encoded("WAV", 3.0), "uploads", "wav", "audio/wav")
    text = await store.put_bytes(b"not audio at all" * 64, "uploads", "wav", "audio/wav")
    hour = io.BytesIO()
    soundfile.write(hour, np.zeros(8000 * 3605, dtype=np.int16), 8000, format="FLAC")
    over_an_hour = await store.put_bytes(hour.getvalue(), "uploads", "flac", "audio/flac")
    nc = await nats.connect(live_stack.nats_url)
    try:
        body = json.dumps({"audio": {"uri": ref.uri, "sha256": ref.sha256, "size_bytes": ref.size_bytes}})
        reply = await nc.request("tuneforge.mood", body.encode(), timeout=60)
        assert "Nats-Service-Error" not in (reply.headers or {}), reply.headers
        assert_mood(json.loads(reply.data))
        for bad in (
            b"{not json",
            b'{"audio": {"uri": "file:///etc/passwd", "sha256": "' + b"0" * 64 + b'", "size_bytes": 1}}',
            json.dumps(
                {"audio": {"uri": text.uri, "sha256": text.sha256, "size_bytes": text.size_bytes}}
            ).encode(),
            msgspec.json.encode({"audio": over_an_hour}),  # longer than MAX_AUDIO_SECONDS
            # the analysed audio's hash at another blob's address: no remembered mood for it
            json.dumps(
                {"audio": {"uri": text.uri, "sha256": ref.sha256, "size_bytes": ref.size_bytes}}
            ).encode(),
        ):
            reply = await nc.request("tuneforge.mood", bad, timeout=60)
            headers = reply.headers or {}
            assert headers.get("Nats-Service-Error-Code") == "400", (bad, headers)
            assert headers.get("Nats-Service-Error")
            assert str(live_stack.data_dir) not in headers["Nats-Service-Error"]  # no scratch paths
        info = await nc.request("$SRV.INFO.tuneforge-mood", b"", timeout=5)
        assert any(e["subject"] == "tuneforge.mood" for e in json.loads(info.data)["endpoints"])
    finally:
        await nc.drain()
        await store.close()


def test_silence_upload_has_no_confidence(live_stack: Stack) -> None:
    out = io.BytesIO()
    soundfile.write(out, np.zeros((int(44100 * (1 + uuid.uuid4().int % 100 / 1000)), 1)), 44100, format="WAV")
    with live_stack.client() as client:
        response = client.post("/mood", content=out.getvalue(), headers={"content-type": "audio/wav"})
    assert response.status_code == 200, response.text
    assert response.json()["confidence"] == 0.0
