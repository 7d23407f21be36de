"""The whole path over HTTP, on both stacks (SQLite + folder + memory cache, and
PostgreSQL + Azurite + Redis): notes → MIDI → audio through the NATS actors."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import httpx
import mido
import pytest
import soundfile

from tests.audio import dominant_frequency_hz, read_audio, sounding_seconds
from tests.conftest import Stack
from tuneforge.api.jobs import RangeNotSatisfiable, requested_range


def unique_score(
    seconds: float = 2.0, pitch: str | int = "A4", instrument: str | int = "flute", tempo_bpm: float = 120
) -> dict:
    """A held note plus a near-silent marker note at a unique time, so no test hits another's cache."""
    beats = seconds * tempo_bpm / 60
    marker = (uuid.uuid4().int % 1000) / 1000 * beats / 2
    return {
        "tempo_bpm": tempo_bpm,
        "tracks": [
            {
                "instrument": instrument,
                "notes": [{"pitch": pitch, "start_beats": 0, "duration_beats": beats}],
            },
            {
                "instrument": instrument,
                "notes": [
                    {"pitch": 20, "start_beats": round(marker, 3), "duration_beats": 0.01, "velocity": 1}
                ],
            },
        ],
    }


def read_sse(response: httpx.Response) -> list[dict]:
    events, current = [], {}
    for line in response.iter_lines():
        if not line:
            if "event" in current:
                events.append(current)
                if current["event"] in ("done", "failed"):
                    break
            current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        current[name] = value.strip()
    return events


def wait_done(client: httpx.Client, job_id: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} not finished: {job}")


def test_grid_becomes_a_wav_with_the_right_pitch_and_length(stack: Stack) -> None:
    # The original page's body, unchanged: one column per beat, speed 1.0 = 120 bpm.
    columns = [[440.0]] * 4 + [[]] * ((uuid.uuid4().int % 50) + 1)  # trailing rests keep inputs unique
    body = {"notes": columns, "speed": 1.0, "instrument": 73}
    with stack.client() as client:
        response = client.post("/download", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert "attachment" in response.headers["content-disposition"]
    mono, rate = read_audio(response.content)
    assert dominant_frequency_hz(mono, rate, 0.2, 1.5) == pytest.approx(440, rel=0.02)
    # Four one-beat notes at 120 bpm, tied into 2 s of sound; then the release tail.
    assert 1.9 <= sounding_seconds(mono, rate) <= 2.6
    assert len(mono) / rate <= 2.0 + 3.0


def test_notes_the_soundfont_cannot_sound_are_reported_with_the_audio(stack: Stack) -> None:
    # Contrabass on the page's grid: FluidR3_GM sounds it only up to A3, so the C4 is silent.
    columns = [[130.81], [261.63], [130.81]] + [[]] * ((uuid.uuid4().int % 50) + 1)
    with stack.client() as client:
        response = client.post("/download", json={"notes": columns, "instrument": 43})
        assert response.status_code == 200, response.text
        assert response.headers["X-TuneForge-Silent-Notes"] == "1"
        job = client.get(f"/jobs/{response.headers['X-TuneForge-Job']}").json()
        (silent,) = job["result"]["silent_notes"]
        assert silent["instrument"] == "contrabass" and silent["program"] == 43 and not silent["drums"]
        assert (silent["count"], silent["lowest_pitch"], silent["playable_high_pitch"]) == (1, 60, 57)
        assert silent["message"].startswith("1 note of contrabass (C4) makes no sound")
        # Every note in range: no header, nothing reported.
        fine = client.post("/download", json={"notes": columns[:1] + columns[3:], "instrument": 43})
        assert fine.status_code == 200 and "X-TuneForge-Silent-Notes" not in fine.headers
        assert client.get(f"/jobs/{fine.headers['X-TuneForge-Job']}").json()["result"]["silent_notes"] == []


def test_score_becomes_a_wav_of_the_score_duration(stack: Stack) -> None:
    score = unique_score(seconds=3.0, tempo_bpm=90)
    with stack.client() as client:
        response = client.post("/download", json=score)
    assert response.status_code == 200, response.text
    mono, rate = read_audio(response.content)
    assert dominant_frequency_hz(mono, rate, 0.3, 2.0) == pytest.approx(440, rel=0.02)
    assert 2.9 <= sounding_seconds(mono, rate) <= 3.6
    assert 3.0 <= len(mono) / rate <= 3.0 + 3.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-50", (950, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=10-99999", (10, 999)),
        # not ranges this reads: the whole file, as RFC 9110 allows
        ("bytes=abc-5", None),
        ("bytes=5-abc", None),
        ("bytes=-", None),
        ("bytes=5", None),
        ("items=0-1", None),
        ("bytes=0-1,3-4", None),
        ("bytes=7-3", None),
        (None, None),
    ],
)
def test_range_headers_are_read_as_rfc_9110_says(header: str | None, expected: tuple | None) -> None:
    assert requested_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_past_the_end_is_not_satisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        requested_range(header, 1000)


def test_a_player_can_seek_in_a_jobs_audio(stack: Stack) -> None:
    """Media players ask for byte ranges to seek: while every Range request got the whole file,
    Chromium's <audio> could not seek, and showed an OGG job's length wrong (6.1 s for 8.9 s)."""
    score = unique_score(seconds=2.0, tempo_bpm=120)
    with stack.client() as client:
        job_id = client.post("/jobs", json=score).json()["id"]
        assert wait_done(client, job_id)["status"] == "done"
        whole = client.get(f"/jobs/{job_id}/audio")
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        size = len(whole.content)
        for header, (first, last) in (
            ("bytes=0-99", (0, 99)),
            ("bytes=100-", (100, size - 1)),
            ("bytes=-50", (size - 50, size - 1)),
            (f"bytes=10-{size + 1000}", (10, size - 1)),
        ):
            part = client.get(f"/jobs/{job_id}/audio", headers={"Range": header})
            assert part.status_code == 206, (header, part.text)
            assert part.headers["content-range"] == f"bytes {first}-{last}/{size}"
            assert part.content == whole.content[first : last + 1]
        beyond = client.get(f"/jobs/{job_id}/audio", headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
        several = client.get(f"/jobs/{job_id}/audio", headers={"Range": "bytes=0-1,5-9"})
        assert several.status_code == 200 and several.content == whole.content  # allowed by RFC 9110
        midi = client.get(f"/jobs/{job_id}/midi", headers={"Range": "bytes=0-3"})
        assert midi.status_code == 206 and midi.content == b"MThd"
        misspelt = client.get(f"/jobs/{job_id}/audio?fromat=ogg")
        assert misspelt.status_code == 400 and "'fromat'" in misspelt.json()["detail"], misspelt.text


def assert_midi_length(audio: bytes, seconds: float) -> None:
    """The note sounds for the file's length, then only its release tail follows."""
    mono, rate = read_audio(audio)
    assert seconds - 0.1 <= sounding_seconds(mono, rate) <= seconds + 0.6  # + release above 5 % of peak
    assert seconds <= len(mono) / rate <= seconds + 3.0


def test_uploaded_midi_comes_back_as_audio_of_its_length(stack: Stack, tmp_path) -> None:
    midi = mido.MidiFile(type=0, ticks_per_beat=96)
    track = mido.MidiTrack(
        [mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(150)), mido.Message("program_change", program=73)]
    )
    seconds = 4.0 + (uuid.uuid4().int % 100) / 1000
    ticks = round(mido.second2tick(seconds, 96, mido.bpm2tempo(150)))
    track += [
        mido.Message("note_on", note=69, velocity=90, time=0),
        mido.Message("note_off", note=69, velocity=0, time=ticks),
    ]
    midi.tracks.append(track)
    path = tmp_path / "upload.mid"
    midi.save(path)
    with stack.client() as client:
        raw = client.post("/download", content=path.read_bytes(), headers={"content-type": "audio/midi"})
        multipart = client.post(
            "/download?format=flac", files={"file": ("upload.mid", path.read_bytes(), "audio/midi")}
        )
    assert raw.status_code == 200, raw.text
    assert_midi_length(raw.content, seconds)
    assert multipart.status_code == 200, multipart.text
    assert multipart.headers["content-type"] == "audio/flac"
    assert_midi_length(multipart.content, seconds)
    # `curl --data-binary @song.mid` labels the file form data; with no label it is just bytes;
    # clients label MIDI in many ways, some wrongly: the file's own first bytes say what it is.
    for label in ("application/x-www-form-urlencoded", "", "audio/x-mid", "image/png"):
        with stack.client() as client:
            unlabelled = client.post("/download", content=path.read_bytes(), headers={"content-type": label})
        assert unlabelled.status_code == 200, (label, unlabelled.text)
        assert_midi_length(unlabelled.content, seconds)


def test_job_progress_events_arrive_in_order_then_done(stack: Stack) -> None:
    with stack.client() as client:
        created = client.post(
            "/jobs", json={**unique_score(seconds=60.0), "options": {"sample_rate_hz": 48000}}
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["status"] in ("queued", "running") and job["links"]["events"].endswith("/events")
        with client.stream("GET", job["links"]["events"]) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_sse(response)
        kinds = [e["event"] for e in events]
        assert kinds[-1] == "done" and kinds.count("done") == 1
        assert set(kinds[:-1]) == {"progress"}
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        stages = [json.loads(e["data"])["stage"] for e in events[:-1]]
        order = ["queued", "converting", "rendering"]
        assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == order
        rendering = [json.loads(e["data"])["percent"] for e in events[:-1] if "rendering" in e["data"]]
        assert rendering == sorted(rendering) and rendering[-1] == 100.0 and len(rendering) >= 3

        # A client that reconnects with Last-Event-ID gets only what came after.
        with client.stream(
            "GET", job["links"]["events"], headers={"Last-Event-ID": events[-3]["id"]}
        ) as response:
            resumed = read_sse(response)
        assert [e["id"] for e in resumed] == [e["id"] for e in events[-2:]]

        final = wait_done(client, job["id"])
        assert final["status"] == "done" and final["error"] is None
        assert set(final["timings"]) >= {"queued", "converting", "rendering"}

        # A client reconnecting after `done` (as EventSource does when the stream closes) gets the
        # final event again at once, under the id it already has: never a lower one, never a wait.
        started = time.monotonic()
        with client.stream(
            "GET", job["links"]["events"], headers={"Last-Event-ID": events[-1]["id"]}
        ) as response:
            again = read_sse(response)
        assert time.monotonic() - started < 5.0
        assert [(e["event"], e["id"]) for e in again] == [("done", events[-1]["id"])]
        # An id beyond any JetStream sequence (64 bits) is the same: past the end.
        for huge in ("18446744073709551615", "9" * 30):
            with client.stream("GET", job["links"]["events"], headers={"Last-Event-ID": huge}) as response:
                assert [e["event"] for e in read_sse(response)] == ["done"], huge

        assert final["result"]["duration_seconds"] >= 60.0
        audio = client.get(final["links"]["audio"])
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        mono, rate = read_audio(audio.content)
        assert rate == 48000 and len(mono) / rate == pytest.approx(
            final["result"]["duration_seconds"], abs=0.01
        )
        # HEAD (curl -I, download managers) answers as GET would, without the body.
        for link in ("audio", "midi", "self"):
            got, probe = client.get(final["links"][link]), client.head(final["links"][link])
            assert probe.status_code == 200 and probe.content == b"", (link, probe)
            assert probe.headers["content-type"] == got.headers["content-type"], link
            assert int(probe.headers["content-length"]) == len(got.content), link
        midi = client.get(final["links"]["midi"])
        assert midi.status_code == 200 and midi.content.startswith(b"MThd")
        ogg = client.get(final["links"]["audio"], params={"format": "ogg"})
        assert ogg.status_code == 200 and ogg.headers["content-type"] == "audio/ogg"
        assert client.get("/jobs", params={"limit": 5}).json()["jobs"][0]["id"] in {
            job["id"],
            *[j["id"] for j in client.get("/jobs", params={"limit": 50}).json()["jobs"]],
        }


def test_repeat_request_is_answered_from_the_cache(stack: Stack) -> None:
    score = unique_score(seconds=1.0)
    with stack.client() as client:
        first = client.post("/jobs", json=score).json()
        assert wait_done(client, first["id"])["from_cache"] is False
        again = client.post("/jobs", json=score)
        assert again.status_code == 202 and again.json()["status"] == "done"
        repeat = client.get(f"/jobs/{again.json()['id']}").json()
        assert repeat["from_cache"] is True and repeat["result"] == wait_done(client, first["id"])["result"]
        with client.stream("GET", f"/jobs/{again.json()['id']}/events") as response:
            assert [(e["event"], e.get("id")) for e in read_sse(response)] == [("done", "1")]
        # Clearing the cache needs the password; then the same score renders again.
        assert client.post("/clearcache", json={"password": "wrong"}).status_code == 401
        missing = client.post("/clearcache")
        assert missing.status_code == 401 and "no password given" in missing.json()["detail"]
        assert client.post("/clearcache", data={"password": "test-secret"}).status_code == 200
        third = client.post("/jobs", json=score).json()
        assert third["status"] == "queued" and wait_done(client, third["id"])["from_cache"] is False


NOTE = {"pitch": 60, "start_beats": 0, "duration_beats": 1}


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "malformed JSON"),
        (
            json.dumps(
                {"tracks": [{"notes": [{"pitch": 200, "start_beats": 0, "duration_beats": 1}]}]}
            ).encode(),
            {},
            400,
            "outside the MIDI range",
        ),
        (
            json.dumps(
                {"tracks": [{"notes": [{"pitch": "C4", "start_beats": 0, "duration_beats": -1}]}]}
            ).encode(),
            {},
            400,
            "duration_beats",
        ),
        (
            json.dumps(
                {
                    "tracks": [
                        {
                            "instrument": "kazoo",
                            "notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 1}],
                        }
                    ]
                }
            ).encode(),
            {},
            400,
            "unknown instrument",
        ),
        (json.dumps({"notes": [[440]], "options": {"format": "mp4"}}).encode(), {}, 400, "format"),
        (json.dumps({"notes": [[440]], "format": "flac"}).encode(), {}, 400, 'go in "options"'),
        (b"this is not a MIDI file", {"content-type": "audio/midi"}, 400, "MIDI"),
        (  # tempo and end of track only: no notes
            b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x0c"
            b"\x00\xff\x51\x03\x07\xa1\x20\x87\x40\xff\x2f\x00",
            {"content-type": "audio/midi"},
            400,
            "no notes",
        ),
        (b"GIF89a", {"content-type": "image/gif"}, 400, "unsupported content type"),
        (b"", {"content-type": "application/json"}, 400, "no body"),
        (b'{"tracks": [{"notes": []}]}', {}, 400, "the score has no notes"),
        (b'{"notes": ' + b"[" * 5000 + b"]" * 5000 + b"}", {}, 400, "nested too deeply"),
        (
            json.dumps(
                {
                    "notes": [[440]],
                    "tracks": [{"notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 1}]}],
                }
            ).encode(),
            {},
            400,
            "not both",
        ),
        (
            json.dumps({"notes": [[440]], "options": {"analyze_mood": "maybe"}}).encode(),
            {},
            400,
            "true or false",
        ),
        (
            json.dumps({"notes": [[440]], "options": {"sample_rate_hz": "44.1k"}}).encode(),
            {},
            400,
            "whole number",
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_the_service_keeps_serving(
    live_stack: Stack, body: bytes, headers: dict, status: int, words: str
) -> None:
    with live_stack.client() as client:
        for path in ("/download", "/jobs"):
            response = client.post(path, content=body, headers=headers)
            assert response.status_code == status, response.text
            assert words in response.json()["detail"]
        assert client.get("/healthz").status_code in (200, 503)
        assert client.post("/download", json={"notes": [[440.0]], "speed": 2.0}).status_code == 200


def test_options_from_a_query_string_read_as_people_write_them(live_stack: Stack) -> None:
    body = {"notes": [[440.0, 660.0]], "speed": 2.0}
    with live_stack.client() as client:
        response = client.post("/download?sample_rate_hz=22050.0&format=FLAC".lower(), json=body)
        assert response.status_code == 200, response.text
        assert soundfile.info(io.BytesIO(response.content)).samplerate == 22050
        assert client.post("/jobs?analyze_mood=maybe", json=body).status_code == 400
        # A misspelt option is not ignored (it rendered a WAV for `?fromat=ogg`).
        misspelt = client.post("/jobs?fromat=ogg", json=body)
        assert misspelt.status_code == 400, misspelt.text
        assert "'fromat'" in misspelt.json()["detail"] and "format" in misspelt.json()["detail"]
        # A query is checked even where the body gives options, and the two may not disagree.
        with_options = {**body, "options": {"format": "flac"}}
        for query, words in (("format=bogus", "format"), ("sample_rate_hz=abc", "whole number")):
            response = client.post(f"/jobs?{query}", json=with_options)
            assert response.status_code == 400 and words in response.json()["detail"], response.text
        clash = client.post("/download?format=ogg", json=with_options)
        assert clash.status_code == 400 and "given twice" in clash.json()["detail"], clash.text
        agreed = client.post("/download?format=flac&sample_rate_hz=22050", json=with_options)
        assert agreed.status_code == 200 and soundfile.info(io.BytesIO(agreed.content)).format == "FLAC"


def test_json_saved_with_a_byte_order_mark_is_read(live_stack: Stack) -> None:
    body = b"\xef\xbb\xbf" + json.dumps({"notes": [[440.0, 550.0]], "speed": 2.0}).encode()
    with live_stack.client() as client:
        response = client.post("/download", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.content[:4] == b"RIFF"


def test_a_million_notes_is_refused_without_harm(live_stack: Stack) -> None:
    note = b'{"pitch":60,"start_beats":0,"duration_beats":1},'
    body = b'{"tracks":[{"notes":[' + note * 1_000_000 + note[:-1] + b"]}]}"
    with live_stack.client() as client:
        response = client.post("/jobs", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 413 and "20 MiB" in response.json()["detail"], response.text
        notes = [{"pitch": 60, "start_beats": i / 100, "duration_beats": 0.01} for i in range(20_001)]
        response = client.post("/jobs", json={"tracks": [{"notes": notes}]})
        assert response.status_code == 400 and "at most 20000" in response.json()["detail"]
        assert client.post("/download", json={"notes": [[330.0]], "speed": 2.0}).status_code == 200


def test_unknown_job_is_404(live_stack: Stack) -> None:
    with live_stack.client() as client:
        for path in ("/jobs/nope", "/jobs/nope/audio", "/jobs/nope/midi", "/jobs/nope/events"):
            response = client.get(path)
            assert response.status_code == 404 and "no job" in response.json()["detail"]


def test_health_reports_every_component(stack: Stack) -> None:
    with stack.client() as client:
        health = client.get("/healthz").json()
        probe = client.head("/healthz")  # as load balancers ask
        assert probe.status_code == 200 and probe.content == b""
        for path in ("/", "/instruments", "/jobs"):  # as uptime monitors and curl -I ask
            probe = client.head(path)
            assert probe.status_code == 200 and probe.content == b"", (path, probe)
        assert client.head("/jobs/nope").status_code == 404
    for name in ("nats", "database", "blob_store", "cache", "tuneforge-converter", "tuneforge-exporter"):
        assert health["checks"][name]["ok"] is True, health


def test_openapi_schema_is_served(live_stack: Stack) -> None:
    with live_stack.client() as client:
        schema = client.get("/schema/openapi.json").json()
    paths = schema["paths"]
    assert {"/download", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/events", "/healthz"} <= set(paths)
    body = paths["/download"]["post"]["requestBody"]["content"]
    assert {"application/json", "audio/midi", "multipart/form-data"} <= set(body)
    assert paths["/jobs"]["post"]["requestBody"]["content"].keys() == body.keys()
    components = schema["components"]["schemas"]
    assert {"Score", "Grid", "Note", "Track", "RenderOptions"} <= set(components)
    assert components["Note"]["properties"]["velocity"]["maximum"] == 127


def test_a_cached_render_whose_file_is_gone_is_rendered_again(live_stack: Stack) -> None:
    """A cache kept across a change of blob store (or shared with another stack's) names files this
    store does not hold: that is a miss, not a download that breaks off."""
    from urllib.parse import unquote, urlparse

    score = unique_score(seconds=2.0)
    with live_stack.client() as client:
        first = client.post("/download", json=score)
        assert first.status_code == 200, first.text
        job = client.get(f"/jobs/{first.headers['X-TuneForge-Job']}").json()
        audio_file = urlparse(job["result"]["audio"]["uri"])
        assert audio_file.scheme == "file"
        Path(unquote(audio_file.path)).unlink()
        again = client.post("/download", json=score)
    assert again.status_code == 200, again.text
    first_audio, _ = soundfile.read(io.BytesIO(first.content))
    again_audio, _ = soundfile.read(io.BytesIO(again.content))
    assert abs(len(again_audio) - len(first_audio)) <= 4096, (
        len(first_audio),
        len(again_audio),
    )  # same music
    with live_stack.client() as client:
        assert client.get(f"/jobs/{again.headers['X-TuneForge-Job']}").json()["from_cache"] is False
