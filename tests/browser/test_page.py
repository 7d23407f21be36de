"""The TuneForge page in headless Chromium against a real running stack (`live_stack`).

Each test drives the page the way a person would (clicks, drags, keys, file picker) and keeps a
screenshot of each state in test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import math
import random
import re
import struct
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

MOODS = {"happy", "tense", "sad", "calm"}
RENDER_TIMEOUT_MS = 60_000
PHONE = {"width": 375, "height": 812}


# --- helpers ---------------------------------------------------------------------------------


def cell(page: Any, label: str) -> Any:
    return page.locator(f'#grid button[aria-label="{label}"]')


def http_json(base_url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Call the API directly (not through the page): (status, decoded JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + path, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def sine_wav(path: Path, seconds: float = 6.0, rate: int = 22050, then_silence_seconds: float = 0.0) -> Path:
    """A small mono 16-bit WAV: a C major arpeggio of sines (then silence), written with the stdlib only."""
    notes = [261.63, 329.63, 392.00, 523.25, 392.00, 329.63, 261.63, 392.00]
    frames = bytearray()
    total = int(seconds * rate)
    per_note = total // len(notes)
    for i in range(total):
        freq = notes[min(i // per_note, len(notes) - 1)]
        t = i / rate
        envelope = min(1.0, (i % per_note) / 200) * (1 - 0.5 * (i % per_note) / per_note)
        sample = 0.5 * envelope * (math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t))
        frames += struct.pack("<h", int(max(-1.0, min(1.0, sample)) * 32767))
    frames += bytes(2 * int(then_silence_seconds * rate))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    path.write_bytes(buffer.getvalue())
    return path


def watch_progress(page: Any) -> None:
    """Record every value the progress bar takes and every status text, from now on."""
    page.evaluate(
        """() => {
          window.__progress = [];
          window.__statuses = [];
          const bar = document.getElementById('job-progress');
          const status = document.getElementById('job-status');
          new MutationObserver(() => window.__progress.push(Number(bar.value)))
            .observe(bar, {attributes: true, attributeFilter: ['value']});
          new MutationObserver(() => window.__statuses.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
        }"""
    )


def wait_until_done(page: Any) -> None:
    page.wait_for_function(
        "() => ['done', 'failed'].includes(document.getElementById('job-view').dataset.status)",
        timeout=RENDER_TIMEOUT_MS,
    )
    error = page.locator("#job-error")
    assert not error.is_visible(), f"the job failed: {error.text_content()}"
    assert "done" in page.locator("#job-status").text_content().lower()


def assert_audio_playable(page: Any) -> None:
    page.wait_for_function(
        "() => { const a = document.getElementById('job-audio'); return a.readyState >= 1 || a.error; }",
        timeout=20_000,
    )
    audio = page.evaluate(
        """() => { const a = document.getElementById('job-audio');
                   return {ready: a.readyState, duration: a.duration, error: a.error && a.error.message,
                           src: a.currentSrc}; }"""
    )
    assert audio["error"] is None, audio
    assert audio["ready"] >= 1, audio
    assert audio["duration"] > 0, audio
    response = page.request.get(audio["src"])
    assert response.ok, (response.status, response.text()[:200])
    assert response.headers["content-type"].startswith("audio/"), response.headers
    assert len(response.body()) > 1000
    # The player can seek (it asks for byte ranges; with the whole file to every request it could not).
    seekable = page.evaluate(
        """() => { const a = document.getElementById('job-audio');
                   return a.seekable.length ? a.seekable.end(0) : 0; }"""
    )
    assert seekable > 0.5 * audio["duration"], (seekable, audio)


def assert_mood_shown(page: Any, container: str, *, timeline: bool = False) -> str:
    label = page.locator(f"{container} .mood-label")
    label.wait_for(timeout=RENDER_TIMEOUT_MS)
    text = label.text_content().strip().lower()
    assert text in MOODS, text
    # the valence–arousal chart with its four labelled quadrants and the overall point
    chart = page.locator(f"{container} svg.va-chart")
    assert chart.is_visible()
    quadrant_labels = {t.strip() for t in chart.locator(".quad-label").all_text_contents()}
    assert quadrant_labels == MOODS
    assert chart.locator("circle.point").count() == 1
    assert "valence" in chart.get_attribute("aria-label").lower()
    # features and the timeline
    features = " ".join(page.locator(f"{container} .features dt").all_text_contents())
    assert "Tempo" in features and "Key" in features, features
    words = page.locator(container).inner_text()
    assert "null" not in words and "undefined" not in words and "NaN" not in words, words
    # the mood over time: coloured parts (audio shorter than one analysis window has none: say so)
    parts = page.locator(f"{container} .timeline .seg").count()
    if timeline:
        assert parts >= 1
    else:
        assert parts >= 1 or page.locator(f"{container} .no-timeline").is_visible()
    return text


# --- tests -----------------------------------------------------------------------------------


def test_compose_render_progress_audio_and_mood(browser_page: Any, screenshot: Any) -> None:
    page = browser_page
    page.goto("/")
    assert page.locator("#grid button.cell").count() == (25 + 6) * 32
    # a unique tempo so the render is new work for the stack, not a cache hit; 16 beats at this
    # tempo last long enough (6 s or more) for a mood timeline
    tempo = random.randint(80, 150)
    page.fill("#tempo", str(tempo))
    page.locator("#tempo").dispatch_event("change")
    page.select_option("#instrument", "73")  # flute

    # compose by clicking cells (one step = an eighth note by default)
    for label in [
        "C4, step 1",
        "E4, step 3",
        "G4, step 5",
        "E4, step 7",
        "C4, step 9",
        "G4, step 32",
        "Kick, step 1",
        "Closed hi-hat, step 3",
        "Snare, step 5",
        "Kick, step 9",
    ]:
        cell(page, label).click()
        assert cell(page, label).get_attribute("aria-pressed") == "true", label
    # drag along the C5 row from step 11 to step 16: one note, six steps long
    cell(page, "C5, step 11").scroll_into_view_if_needed()
    start = cell(page, "C5, step 11").bounding_box()
    end = cell(page, "C5, step 16").bounding_box()
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=8)
    page.mouse.up()
    for step in range(11, 17):
        assert cell(page, f"C5, step {step}").get_attribute("aria-pressed") == "true"
    assert cell(page, "C5, step 17").get_attribute("aria-pressed") == "false"
    # clicking a note again removes it
    cell(page, "E4, step 7").click()
    assert cell(page, "E4, step 7").get_attribute("aria-pressed") == "false"

    # the Score the page will send (pure logic, read in the page)
    score = page.evaluate("() => window.TuneForge.buildScore()")
    assert score["tempo_bpm"] == tempo
    melody, drums = score["tracks"]
    assert melody["instrument"] == 73 and melody["drums"] is False
    assert [(n["pitch"], n["start_beats"], n["duration_beats"]) for n in melody["notes"]] == [
        (60, 0.0, 0.5),
        (64, 1.0, 0.5),
        (67, 2.0, 0.5),
        (60, 4.0, 0.5),
        (72, 5.0, 3.0),
        (67, 15.5, 0.5),
    ]
    assert drums["drums"] is True
    assert sorted((n["pitch"], n["start_beats"]) for n in drums["notes"]) == [
        (36, 0.0),
        (36, 4.0),
        (38, 2.0),
        (42, 1.0),
    ]
    screenshot(page, "01-composed")

    watch_progress(page)
    page.click("#render")
    page.wait_for_url("**/?job=*", timeout=15_000)
    job_id = page.url.split("job=")[1]
    assert page.locator("#job-id").text_content() == job_id
    page.wait_for_function(
        "() => window.__progress.length > 0 && Number(document.getElementById('job-progress').value) > 0",
        timeout=RENDER_TIMEOUT_MS,
    )
    screenshot(page, "02-rendering")
    wait_until_done(page)

    values = page.evaluate("() => window.__progress")
    statuses = page.evaluate("() => window.__statuses")
    assert values[-1] == 100, values
    assert any(0 < v < 100 for v in values), f"no intermediate progress seen: {values} {statuses}"
    assert values == sorted(values), f"the progress bar went backwards: {values}"
    # the status text never steps back a stage (the event stream replays the job from its start),
    # and says nothing meant for operators (which replica, host:pid)
    order = ["Queued", "Converting notes to MIDI", "Rendering audio", "Analysing mood", "Done"]
    stages = [next((i for i, w in enumerate(order) if text.startswith(w)), -1) for text in statuses]
    assert [i for i in stages if i >= 0] == sorted(i for i in stages if i >= 0), statuses
    assert not any(re.search(r"\(\S+:\d+\)", text) for text in statuses), statuses
    assert any(later > earlier for earlier, later in itertools.pairwise(values)), values
    assert page.locator("#job-progress").get_attribute("value") == "100"
    assert_audio_playable(page)
    downloads = {name: page.get_attribute(f"#dl-{name}", "href") for name in ("wav", "flac", "ogg", "midi")}
    assert downloads["wav"].endswith("format=wav") and downloads["midi"].endswith("/midi"), downloads
    midi = page.request.get(downloads["midi"])
    assert midi.ok and midi.body()[:4] == b"MThd"
    assert_mood_shown(page, "#job-mood", timeline=True)
    assert not page.locator("#job-silent").is_visible()  # every note in the flute's keys
    page.locator("#job").scroll_into_view_if_needed()
    screenshot(page, "03-done-with-mood")

    # the job's own URL reopens it: status, audio, links and mood
    page.goto(f"/?job={job_id}")
    wait_until_done(page)
    assert page.locator("#job-id").text_content() == job_id
    assert_audio_playable(page)
    assert_mood_shown(page, "#job-mood")
    # and it is listed among the recent jobs
    page.locator(f'#jobs-list a[data-job="{job_id}"]').wait_for()
    screenshot(page, "04-reopened-by-url")


def test_notes_an_instrument_cannot_play_are_named_after_the_render(
    browser_page: Any, screenshot: Any
) -> None:
    page = browser_page
    page.goto("/")
    page.fill("#tempo", str(random.randint(80, 150)))  # a fresh render, not a cached one
    page.locator("#tempo").dispatch_event("change")
    page.select_option("#instrument", "43")  # contrabass: FluidR3_GM sounds it up to A3 only
    for label in ["C3, step 1", "C4, step 3", "E4, step 5", "A3, step 7"]:
        cell(page, label).click()
    page.click("#render")
    wait_until_done(page)
    warning = page.locator("#job-silent")
    warning.wait_for()
    assert warning.locator("li").all_text_contents() == [
        "2 notes of contrabass (C4 to E4) make no sound: "
        "FluidR3_GM's contrabass sounds only up to A3 (MIDI 57)"
    ]
    assert_audio_playable(page)
    warning.scroll_into_view_if_needed()
    screenshot(page, "05-silent-notes-named")


def test_recent_jobs_and_hash_link_reopen_a_job(
    new_page: Any, live_stack: Any, screenshot: Any, tmp_path: Path
) -> None:
    # a job made by another client (straight to the API)
    score = {
        "tempo_bpm": random.randint(161, 220),
        "tracks": [
            {
                "instrument": "marimba",
                "notes": [
                    {"pitch": "A3", "start_beats": 0, "duration_beats": 1},
                    {"pitch": "C4", "start_beats": 1, "duration_beats": 1},
                    {"pitch": "E4", "start_beats": 2, "duration_beats": 2},
                ],
            }
        ],
        "options": {"format": "ogg", "analyze_mood": True},
    }
    status, job = http_json(live_stack.base_url, "POST", "/jobs", score)
    assert status in (200, 201, 202), job
    page = new_page()
    page.goto("/")
    link = page.locator(f'#jobs-list a[data-job="{job["id"]}"]')
    link.wait_for()
    link.click()
    page.wait_for_url(f"**/?job={job['id']}")
    wait_until_done(page)
    assert_audio_playable(page)
    assert "rendered" in (page.get_attribute("#dl-ogg", "class") or "")
    assert_mood_shown(page, "#job-mood")
    screenshot(page, "05-reopened-from-recent-jobs")

    # a format other than the rendered one is made on demand and saved as a file
    with page.expect_download(timeout=30_000) as download_info:
        page.click("#dl-flac")
    download = download_info.value
    assert download.suggested_filename.endswith(".flac")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    assert saved.read_bytes()[:4] == b"fLaC"
    assert not page.locator("#job-error").is_visible()
    assert "Downloaded" in page.locator("#dl-status").text_content()

    # `#job=<id>` works as well as `?job=<id>`
    other = new_page()
    other.goto(f"/#job={job['id']}")
    wait_until_done(other)
    assert other.locator("#job-id").text_content() == job["id"]
    # whoever opens a job's link sees the job, not the empty grid above it
    top = other.evaluate("() => document.getElementById('job').getBoundingClientRect().top")
    assert abs(top) < 50, top


def test_upload_audio_file_gets_a_mood(browser_page: Any, screenshot: Any, tmp_path: Path) -> None:
    page = browser_page
    page.goto("/")
    page.set_input_files("#mood-file", str(sine_wav(tmp_path / "arpeggio.wav")))
    page.click("#upload-submit")
    label = assert_mood_shown(page, "#upload-mood")
    assert label in page.locator("#upload-status").text_content()
    assert not page.locator("#upload-error").is_visible()
    page.locator("#upload").scroll_into_view_if_needed()
    screenshot(page, "06-upload-mood")


def test_the_silence_after_the_music_is_shown_as_silence(browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    page.goto("/")
    page.set_input_files("#mood-file", str(sine_wav(tmp_path / "then-rest.wav", then_silence_seconds=12.0)))
    with page.expect_response(lambda r: r.url.endswith("/mood") and r.request.method == "POST") as info:
        page.click("#upload-submit")
    assert_mood_shown(page, "#upload-mood", timeline=True)
    # 18 s: windows from 0, 5, 10 and 15 s; the last two have no sound of their own, and are
    # shown as one silent stretch (neighbouring windows with the same mood are one part)
    timeline = info.value.json()["timeline"]
    assert [w["confidence"] == 0 for w in timeline] == [False, False, True, True], timeline
    segments = page.locator("#upload-mood .timeline .seg")
    assert segments.count() == len(mood_runs(timeline))
    rest = page.locator("#upload-mood .timeline .seg.m-none")
    assert rest.count() == 1
    assert rest.get_attribute("title").startswith("10.0–18.0 s: silence"), rest.get_attribute("title")
    assert "silence" not in segments.nth(0).get_attribute("title")


def test_server_errors_are_shown_in_words(
    browser_page: Any, live_stack: Any, screenshot: Any, tmp_path: Path
) -> None:
    page = browser_page
    page.goto("/")
    # an empty grid is caught on the page, with words
    page.click("#render")
    assert "empty" in page.locator("#compose-error").text_content()

    # a Score the server rejects: the page shows the server's own `detail`
    cell(page, "C4, step 1").click()

    # a tempo out of range, typed and Render clicked at once (which is what ends the edit): refused
    # on the page, nothing sent (it used to put the old tempo back and render with that)
    posted: list[str] = []
    page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)
    page.fill("#tempo", "1000")
    page.click("#render")
    assert "Tempo must be a number from 20 to 400" in page.locator("#compose-error").text_content()
    assert page.input_value("#tempo") == "1000" and not posted and "?job=" not in page.url
    page.fill("#tempo", "120")
    page.locator("#tempo").dispatch_event("change")
    bad_tempo = 1000

    def too_fast(route: Any) -> None:
        body = json.loads(route.request.post_data)
        body["tempo_bpm"] = bad_tempo
        route.continue_(post_data=json.dumps(body))

    page.route("**/jobs", too_fast)
    page.click("#render")
    error = page.locator("#compose-error")
    error.wait_for()
    expected_status, expected = http_json(
        live_stack.base_url,
        "POST",
        "/jobs",
        {**page.evaluate("() => window.TuneForge.buildScore()"), "tempo_bpm": bad_tempo},
    )
    assert 400 <= expected_status < 500, expected
    text = error.text_content()
    assert expected["detail"] in text, (text, expected)
    assert str(expected_status) in text
    assert "?job=" not in page.url
    screenshot(page, "07-server-error")
    page.unroute("**/jobs")

    # a job that does not exist: the 404's detail, not a blank page
    missing = "0" * 32
    status, body = http_json(live_stack.base_url, "GET", f"/jobs/{missing}")
    assert status == 404, body
    page.goto(f"/?job={missing}")
    job_error = page.locator("#job-error")
    job_error.wait_for()
    assert body["detail"] in job_error.text_content()

    # an upload that is not audio
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"this is not audio at all " * 20)
    page.set_input_files("#mood-file", str(junk))
    page.click("#upload-submit")
    upload_error = page.locator("#upload-error")
    upload_error.wait_for(timeout=20_000)
    assert len(upload_error.text_content().strip()) > 10
    screenshot(page, "08-upload-error")


def test_grid_works_from_the_keyboard(browser_page: Any, screenshot: Any) -> None:
    page = browser_page
    page.goto("/")
    # Tab from the control before the grid lands on exactly one grid cell (roving tabindex)
    assert page.locator('#grid button.cell[tabindex="0"]').count() == 1
    page.focus("#controls summary")
    page.keyboard.press("Tab")
    focused = page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    assert focused == "C4, step 1"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "C#4, step 3"
    page.keyboard.press("Space")
    assert cell(page, "C#4, step 3").get_attribute("aria-pressed") == "true"
    # Shift+Right lengthens the note
    page.keyboard.press("Shift+ArrowRight")
    assert cell(page, "C#4, step 4").get_attribute("aria-pressed") == "true"
    assert page.evaluate("() => window.TuneForge.buildScore().tracks[0].notes") == [
        {"pitch": 61, "start_beats": 1.0, "duration_beats": 1.0, "velocity": 100}
    ]
    # Enter toggles it off again; the drum rows are reachable too
    page.keyboard.press("Enter")
    assert cell(page, "C#4, step 3").get_attribute("aria-pressed") == "false"
    page.keyboard.press("Control+End")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Kick, step 32"
    page.keyboard.press("Space")
    assert cell(page, "Kick, step 32").get_attribute("aria-pressed") == "true"
    # one tab stop for the whole grid: Tab leaves it for the next control
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.id") == "preview"
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Kick, step 32"
    screenshot(page, "09-keyboard")


def test_step_count_preview_and_phone_width(new_page: Any, screenshot: Any) -> None:
    page = new_page(viewport=PHONE, has_touch=True, is_mobile=True)
    page.goto("/")
    page.select_option("#steps", "64")
    assert page.locator("#grid button.cell").count() == (25 + 6) * 64
    page.select_option("#steps", "16")
    assert page.locator("#grid button.cell").count() == (25 + 6) * 16
    page.click("#example")
    assert page.locator('#grid button.cell[aria-pressed="true"]').count() > 10
    # nothing wider than the phone; the grid scrolls inside its own box
    widths = page.evaluate(
        """() => ({doc: document.documentElement.scrollWidth, view: window.innerWidth,
                   grid: document.getElementById('grid-scroll').clientWidth})"""
    )
    assert widths["doc"] <= widths["view"], widths
    # a long file name in a status line wraps instead of widening the page
    page.evaluate(
        """() => { document.getElementById('upload-status').textContent =
                   'Mood of games_openttd_baseset_openmsx_city_blues_redfarn_extended_mix.mid: tense'; }"""
    )
    assert page.evaluate("() => document.documentElement.scrollWidth") <= widths["view"]
    assert page.locator("#render").is_visible()
    assert (
        page.locator("#render").bounding_box()["x"] + page.locator("#render").bounding_box()["width"] <= 375
    )
    # preview plays in the browser: the button turns into Stop and a playhead moves
    page.click("#preview")
    assert page.get_attribute("#preview", "aria-pressed") == "true"
    page.wait_for_function("() => document.querySelector('#grid .cell.playhead') !== null", timeout=10_000)
    screenshot(page, "10-phone-preview", full_page=False)
    page.click("#preview")
    assert page.get_attribute("#preview", "aria-pressed") == "false"
    screenshot(page, "11-phone-full")


@pytest.mark.parametrize("width", [375, 768, 1280, 1920])
def test_grid_labels_and_selects_show_their_whole_text(new_page: Any, screenshot: Any, width: int) -> None:
    page = new_page(viewport={"width": width, "height": 900})
    page.goto("/")
    page.wait_for_function("() => document.getElementById('instrument').options.length > 1")
    page.click(".more-options summary")  # the render options' selects too
    # A row label does not wrap and hides what overflows: its text must fit its box.
    clipped_labels = page.evaluate(
        """() => [...document.querySelectorAll('#grid .row-label')]
             .filter((label) => label.scrollWidth > label.clientWidth)
             .map((label) => [label.textContent, label.scrollWidth, label.clientWidth])"""
    )
    assert not clipped_labels, clipped_labels
    assert page.locator("#grid .drum-row .row-label").count() == 6
    # A select's text is cut when the select is narrower than the browser's own width for it (its
    # longest option with the padding and the arrow): measure that width on a copy of width auto.
    narrow_selects = page.evaluate(
        """() => [...document.querySelectorAll('#controls select')].map((select) => {
             const copy = select.cloneNode(true);
             copy.removeAttribute('id');
             Object.assign(copy.style, {position: 'absolute', visibility: 'hidden', width: 'auto',
                                        minWidth: '0', maxWidth: 'none'});
             document.body.append(copy);
             const needed = copy.getBoundingClientRect().width;
             copy.remove();
             return [select.id, select.getBoundingClientRect().width, needed];
           }).filter(([, width, needed]) => width + 0.5 < needed)"""
    )
    assert not narrow_selects, narrow_selects
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    screenshot(page, f"18-controls-and-labels-{width}")


# --- acceptance sweep: long timelines, favicon, MIDI uploads, silence --------------------------


def midi_file(tempo_bpm: int, notes: list[tuple[int, float, float]], program: int = 0) -> bytes:
    """A type-0 Standard MIDI File (480 ticks per beat): (pitch, start_beats, duration_beats) notes."""

    def vlq(value: int) -> bytes:
        out = [value & 0x7F]
        value >>= 7
        while value:
            out.append(0x80 | (value & 0x7F))
            value >>= 7
        return bytes(reversed(out))

    tpq = 480
    events: list[tuple[int, int, bytes]] = []  # (tick, order: offs before ons, bytes)
    for pitch, start, duration in notes:
        events.append((round(start * tpq), 1, bytes([0x90, pitch, 96])))
        events.append((round((start + duration) * tpq), 0, bytes([0x80, pitch, 0])))
    events.sort()
    track = bytearray(b"\x00\xff\x51\x03" + (60_000_000 // tempo_bpm).to_bytes(3, "big"))
    track += b"\x00" + bytes([0xC0, program])
    now = 0
    for tick, _, data in events:
        track += vlq(tick - now) + data
        now = tick
    track += b"\x00\xff\x2f\x00"
    return (
        b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
    )


def mood_runs(timeline: list[dict[str, Any]]) -> list[tuple[str, float, float, int]]:
    """Neighbouring windows with the same label (or all silent) as (kind, start, end, windows)."""
    runs: list[tuple[str, float, float, int]] = []
    for window in timeline:
        kind = "none" if window["confidence"] == 0 else window["label"]
        if runs and runs[-1][0] == kind:
            last = runs[-1]
            runs[-1] = (kind, last[1], window["end_seconds"], last[3] + 1)
        else:
            runs.append((kind, window["start_seconds"], window["end_seconds"], 1))
    return runs


def synthetic_mood(windows: int, seed: int = 7) -> dict[str, Any]:
    """A Mood as the API shapes it, with `windows` 5-s windows in runs of one label (and rests)."""
    rng = random.Random(seed)
    sides = {"happy": (0.4, 0.3), "tense": (-0.4, 0.3), "sad": (-0.4, -0.3), "calm": (0.4, -0.3)}
    quadrants = {"happy": "Q1", "tense": "Q2", "sad": "Q3", "calm": "Q4"}
    features = {
        "tempo_bpm": 112.0,
        "key": "A",
        "mode": "minor",
        "key_confidence": 0.61,
        "loudness_db": -18.5,
        "dynamic_range_db": 14.2,
        "brightness_hz": 1450.0,
        "onset_rate_per_s": 2.4,
        "note_density_per_s": None,
        "tempo_source": "audio",
    }
    timeline: list[dict[str, Any]] = []
    kind = "calm"
    while len(timeline) < windows:
        kind = rng.choice([k for k in ("happy", "tense", "sad", "calm", "none") if k != kind])
        for _ in range(rng.choice([1, 1, 2, 3, 4, 6, 10, 20, 40])):
            if len(timeline) == windows:
                break
            start = 5.0 * len(timeline)
            if kind == "none":
                window = {
                    "label": "calm",
                    "quadrant": "Q4",
                    "valence": 0.0,
                    "arousal": 0.0,
                    "confidence": 0.0,
                    "probabilities": dict.fromkeys(sides, 0.25),
                }
            else:
                v, a = sides[kind]
                window = {
                    "label": kind,
                    "quadrant": quadrants[kind],
                    "valence": v + rng.uniform(-0.2, 0.2),
                    "arousal": a + rng.uniform(-0.2, 0.2),
                    "confidence": 0.55,
                    "probabilities": {k: (0.7 if k == kind else 0.1) for k in sides},
                }
            timeline.append(
                {"start_seconds": start, "end_seconds": start + 5.0, "features": features, **window}
            )
    return {
        "label": "calm",
        "quadrant": "Q4",
        "valence": 0.21,
        "arousal": -0.12,
        "confidence": 0.48,
        "probabilities": {"happy": 0.2, "tense": 0.12, "sad": 0.2, "calm": 0.48},
        "features": features,
        "duration_seconds": 5.0 * windows,
        "timeline": timeline,
        "sample_rate_hz": 44100,
        "channels": 2,
        "model": "synthetic",
        "analysis_seconds": 12.0,
    }


def middle_pixel_row(page: Any, locator: Any) -> list[list[int]]:
    """One row of pixels through the middle of an element as drawn (RGB triples, left to right),
    decoded in the page from a screenshot of it."""
    locator.scroll_into_view_if_needed()
    png = locator.screenshot()
    return page.evaluate(
        """async (b64) => {
          const img = new Image();
          img.src = 'data:image/png;base64,' + b64;
          await img.decode();
          const canvas = document.createElement('canvas');
          canvas.width = img.width; canvas.height = img.height;
          const ctx = canvas.getContext('2d');
          ctx.drawImage(img, 0, 0);
          const data = ctx.getImageData(0, Math.floor(img.height / 2), img.width, 1).data;
          const row = [];
          for (let i = 0; i < data.length; i += 4) row.push([data[i], data[i + 1], data[i + 2]]);
          return row;
        }""",
        base64.b64encode(png).decode(),
    )


def strip_pixels(page: Any, container: str) -> dict[str, Any]:
    """The mood-over-time strip as drawn: its box, the colour of each mood's parts, and one row of
    pixels through its middle (RGB triples, left to right), decoded in the page from a screenshot."""
    bar = page.locator(f"{container} .timeline-bar")
    row = middle_pixel_row(page, bar)
    box = bar.bounding_box()
    colours = page.evaluate(
        """(container) => {
          const rgb = (text) => (text.match(/\\d+/g) || []).slice(0, 3).map(Number);
          const out = {};
          for (const kind of ['happy', 'tense', 'sad', 'calm']) {
            const seg = document.querySelector(`${container} .timeline-bar .seg.m-${kind}`);
            if (seg) out[kind] = rgb(getComputedStyle(seg).backgroundColor);
          }
          const bar = document.querySelector(`${container} .timeline-bar`);
          out.none = rgb(getComputedStyle(bar).backgroundColor);
          return out;
        }""",
        container,
    )
    return {"box": box, "row": row, "colours": colours}


def close_to(pixel: list[int], colour: list[int], tolerance: int = 4) -> bool:
    return all(abs(p - c) <= tolerance for p, c in zip(pixel, colour, strict=True))


def test_a_long_timeline_is_readable(browser_page: Any, screenshot: Any) -> None:
    # A 59-minute piece: 708 five-second windows, as the sweep's upload had, in the upload panel.
    page = browser_page
    page.goto("/")
    mood = synthetic_mood(708)
    runs = mood_runs(mood["timeline"])
    assert len(runs) > 60 and any(n == 1 for *_, n in runs), "the data should have many runs, some 1 window"
    page.evaluate("(mood) => window.TuneForge.renderMood(document.getElementById('upload-mood'), mood)", mood)

    # neighbouring windows with one label are one part of the strip, titled with its span and label
    segments = page.locator("#upload-mood .timeline-bar .seg")
    assert segments.count() == len(runs)
    titles = segments.evaluate_all("(nodes) => nodes.map((n) => n.getAttribute('title'))")
    assert titles[0].startswith("0:00–"), titles[0]
    assert "59:00" in titles[-1], titles[-1]
    for title, (kind, *_rest) in zip(titles, runs, strict=True):
        assert ("silence" if kind == "none" else kind) in title, (title, kind)
    long_run = next(i for i, run in enumerate(runs) if run[3] >= 10 and run[0] != "none")
    assert f"{runs[long_run][3]} parts" in titles[long_run], titles[long_run]

    # the strip is drawn: every part inside the bar, the parts filling it, each long run in its colour
    boxes = segments.evaluate_all("(nodes) => nodes.map((n) => n.getBoundingClientRect().toJSON())")
    strip = strip_pixels(page, "#upload-mood")
    bar = strip["box"]
    assert boxes[-1]["right"] == pytest.approx(bar["x"] + bar["width"], abs=1.5), (boxes[-1], bar)
    assert sum(b["width"] for b in boxes) == pytest.approx(bar["width"], abs=1.5)
    total = mood["duration_seconds"]
    row, colours = strip["row"], strip["colours"]
    checked = 0
    for kind, start, end, count in runs:
        if count < 10:
            continue
        x = int((start + end) / 2 / total * len(row))
        assert close_to(row[x], colours[kind]), f"{kind} {start}–{end} s drawn {row[x]}, not {colours[kind]}"
        checked += 1
    assert checked >= 5
    sounding = sum((end - start) for kind, start, end, _ in runs if kind != "none") / total
    coloured = sum(1 for pixel in row if any(close_to(pixel, colours[k]) for k in MOODS if k in colours))
    assert coloured / len(row) >= 0.9 * sounding, (coloured, len(row), sounding)

    # the list of parts: collapsed, limited at first, and all of it one button away
    details = page.locator("#upload-mood .timeline-details")
    assert "708" in details.locator("summary").text_content()
    details.locator("summary").click()
    items = details.locator(".timeline-list li")
    shown = items.count()
    assert 0 < shown < len(runs)
    more = details.locator("button.show-all")
    assert more.is_visible() and str(len(runs)) in more.text_content()
    page.locator("#upload-mood .timeline").evaluate(
        "(node) => { node.scrollIntoView({block: 'start'}); window.scrollBy(0, -60); }"
    )
    screenshot(page, "12-long-timeline", full_page=False)
    more.click()
    assert items.count() == len(runs)
    assert not more.is_visible()
    # keyboard users land on the first newly shown stretch
    assert page.evaluate("() => document.activeElement.closest('.timeline-list li') !== null")
    focused = page.evaluate(
        "() => [...document.querySelectorAll('#upload-mood .timeline-list li')]"
        ".indexOf(document.activeElement)"
    )
    assert focused == shown, (focused, shown)
    assert "59:00" in items.last.text_content()


def test_a_long_upload_gets_a_readable_timeline(browser_page: Any, screenshot: Any, tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    # 12 minutes of a quiet tone at 8 kHz mono (11 MB): 60 s of chords, 30 s of silence, 8 times
    rate = 8000
    amplitude = 0.05 + random.random() * 0.02  # a fresh file each run, not a cached mood
    t = np.arange(60 * rate) / rate
    chords = [
        (261.63, 329.63, 392.0),
        (220.0, 261.63, 329.63),
        (174.61, 220.0, 261.63),
        (196.0, 246.94, 293.66),
    ]
    which = (t // 0.5).astype(int) % len(chords)
    music = np.zeros_like(t)
    for index, freqs in enumerate(chords):
        mask = which == index
        music[mask] = sum(np.sin(2 * np.pi * f * t[mask]) for f in freqs)
    music *= np.exp(-3 * (t % 0.5)) * amplitude / 3
    cycle = np.concatenate([music, np.zeros(30 * rate)])
    samples = (np.tile(cycle, 8) * 32767).astype("<i2")
    path = tmp_path / "long-quiet.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())

    page = browser_page
    page.goto("/")
    page.set_input_files("#mood-file", str(path))
    is_mood = lambda r: r.url.endswith("/mood") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(is_mood, timeout=120_000) as info:
        page.click("#upload-submit")
    assert info.value.ok, info.value.text()[:300]
    mood = info.value.json()
    assert len(mood["timeline"]) >= 144  # 5-s windows from 0 s (the decoder may add a few samples)
    assert_mood_shown(page, "#upload-mood", timeline=True)
    runs = mood_runs(mood["timeline"])
    segments = page.locator("#upload-mood .timeline-bar .seg")
    assert segments.count() == len(runs) < len(mood["timeline"]) / 4
    # each 30-s silence is one part, titled as silence
    rests = page.locator("#upload-mood .timeline-bar .seg.m-none")
    assert rests.count() == sum(1 for run in runs if run[0] == "none") == 8
    assert all("silence" in t for t in rests.evaluate_all("(n) => n.map((s) => s.title)"))
    boxes = segments.evaluate_all("(nodes) => nodes.map((n) => n.getBoundingClientRect().toJSON())")
    bar = page.locator("#upload-mood .timeline-bar").bounding_box()
    assert boxes[-1]["right"] == pytest.approx(bar["x"] + bar["width"], abs=1.5)
    assert "12:00" in page.locator("#upload-mood .timeline-axis").text_content()
    page.locator("#upload-mood .timeline").evaluate("(node) => node.scrollIntoView({block: 'center'})")
    screenshot(page, "13-long-upload", full_page=False)


def test_no_console_errors_or_missing_files_on_load(browser_page: Any, screenshot: Any) -> None:
    page = browser_page
    errors: list[str] = []
    missing: list[tuple[int, str]] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("response", lambda r: missing.append((r.status, r.url)) if r.status >= 400 else None)
    page.goto("/")
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)  # a browser fetches the icon after the load
    assert not missing, missing
    assert not errors, errors
    # Headless Chromium asks for no icon, a desktop browser does: the page's icon (its <link>, else
    # /favicon.ico) must be there without a trip to the server, and be an image.
    icon = page.evaluate(
        """async () => {
          const link = document.querySelector('link[rel~="icon"]');
          const href = link ? link.href : new URL('/favicon.ico', location.href).href;
          const img = new Image();
          img.src = href;
          try { await img.decode(); } catch { return {href, width: 0}; }
          return {href, width: img.naturalWidth};
        }"""
    )
    if not icon["href"].startswith("data:"):
        response = page.request.get(icon["href"])
        assert response.ok, (response.status, icon["href"])
    assert icon["width"] > 0, icon
    screenshot(page, "14-clean-load", full_page=False)


def test_midi_upload_gets_its_mood_and_renders_as_a_job(
    browser_page: Any, screenshot: Any, tmp_path: Path
) -> None:
    page = browser_page
    page.goto("/")
    label = page.locator("label[for='mood-file']").text_content()
    assert "MIDI" in label, label
    accept = page.get_attribute("#mood-file", "accept").split(",")
    assert {".mid", ".midi", ".rmi", ".wav", ".flac", ".ogg", ".mp3"} <= set(accept), accept

    # a 16-beat phrase (8 s or so): long enough for a timeline; a fresh tempo so it is new work
    tempo = random.randint(100, 140)
    phrase = [60, 64, 67, 72, 67, 64, 65, 69, 72, 77, 72, 69, 67, 71, 74, 79]
    notes: list[tuple[int, float, float]] = [(pitch, beat, 0.9) for beat, pitch in enumerate(phrase)]
    notes += [(48, beat, 3.9) for beat in range(0, 16, 4)]
    path = tmp_path / "phrase.mid"
    path.write_bytes(midi_file(tempo, notes, program=0))
    page.set_input_files("#mood-file", str(path))
    page.click("#upload-submit")
    assert_mood_shown(page, "#upload-mood", timeline=True)
    assert not page.locator("#upload-error").is_visible()
    # analysed with its MIDI: the note density is known
    features = dict(
        zip(
            page.locator("#upload-mood .features dt").all_text_contents(),
            page.locator("#upload-mood .features dd").all_text_contents(),
            strict=True,
        )
    )
    assert "Note density" in features and "notes/s" in features["Note density"], features
    page.locator("#upload").scroll_into_view_if_needed()
    screenshot(page, "15-midi-upload-mood")

    # and it can be rendered as a job: followed, playable, downloadable
    render = page.locator("#upload-render")
    assert render.is_visible()
    render.click()
    page.wait_for_url("**/?job=*", timeout=15_000)
    wait_until_done(page)
    assert_audio_playable(page)
    midi = page.request.get(page.get_attribute("#dl-midi", "href"))
    assert midi.ok and midi.body()[:4] == b"MThd"
    assert_mood_shown(page, "#job-mood")
    page.locator("#job").scroll_into_view_if_needed()
    screenshot(page, "16-midi-rendered-as-job")


def test_silence_has_no_tempo_or_key(browser_page: Any, screenshot: Any, tmp_path: Path) -> None:
    page = browser_page
    page.goto("/")

    def upload(name: str, samples: bytes) -> tuple[dict[str, Any], dict[str, str]]:
        path = tmp_path / name
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(22050)
            out.writeframes(samples)
        page.set_input_files("#mood-file", str(path))
        with page.expect_response(lambda r: r.url.endswith("/mood") and r.request.method == "POST") as info:
            page.click("#upload-submit")
        mood = info.value.json()
        page.locator("#upload-mood .mood-label").wait_for()
        shown = dict(
            zip(
                page.locator("#upload-mood .features dt").all_text_contents(),
                page.locator("#upload-mood .features dd").all_text_contents(),
                strict=True,
            )
        )
        return mood, shown

    # digital silence, a little over 8 s (a fresh length each run)
    frames = int(22050 * (8 + random.random()))
    mood, shown = upload("silence.wav", bytes(2 * frames))
    assert mood["confidence"] == 0 and mood["valence"] == 0 and mood["arousal"] == 0, mood
    assert mood["features"]["loudness_db"] <= -120, mood["features"]
    assert shown["Tempo"] == "—" and shown["Key"] == "—", shown
    assert "silent" in shown["Loudness"] and "−120" in shown["Loudness"], shown
    assert "bpm" not in " ".join(shown.values())
    assert page.locator("#upload-mood .no-mood").is_visible()
    assert "silent" in page.locator("#upload-status").text_content()
    page.locator("#upload").scroll_into_view_if_needed()
    screenshot(page, "17-silence-no-mood")

    # near silence: a hiss 80 dB down has no mood either, but its level is its own
    rng = random.Random()
    hiss = b"".join(struct.pack("<h", rng.randint(-4, 4)) for _ in range(22050 * 8))
    mood, shown = upload("hiss.wav", hiss)
    assert mood["confidence"] == 0 and set(mood["probabilities"].values()) == {0.25}, mood
    assert -120 < mood["features"]["loudness_db"] < -60, mood["features"]
    assert shown["Tempo"] == "—" and shown["Key"] == "—", shown
    assert "dB" in shown["Loudness"] and "−120" not in shown["Loudness"], shown

    # a held tone sounds, in A, with no pulse: its tempo is no number of bpm
    held = b"".join(
        struct.pack("<h", round(8000 * math.sin(2 * math.pi * 440 * i / 22050))) for i in range(22050 * 6)
    )
    mood, shown = upload("held.wav", held)
    assert mood["features"]["tempo_bpm"] == 0 and mood["confidence"] > 0, mood
    assert shown["Tempo"] == "no steady pulse" and shown["Key"].startswith("A "), shown


# --- a failed job; durations as the player shows them ------------------------------------------


def assert_failed_view(page: Any, words: str) -> None:
    """The job view of a failed job: the bar full, drawn in the error colour, saying Failed."""
    assert page.locator("#job-view").get_attribute("data-status") == "failed"
    assert page.locator("#job-status").text_content() == words
    assert page.locator("#job-percent").text_content() == "Failed"
    bar = page.locator("#job-progress")
    assert bar.evaluate("(b) => [b.value, b.max]") == [100, 100]
    assert bar.get_attribute("aria-valuetext") == words
    danger = page.evaluate(
        """() => { const probe = document.createElement('span');
                   probe.style.color = 'var(--danger)';
                   document.body.append(probe);
                   const rgb = getComputedStyle(probe).color.match(/\\d+/g).slice(0, 3).map(Number);
                   probe.remove();
                   return rgb; }"""
    )
    row = middle_pixel_row(page, bar)
    # every pixel between the rounded ends, from left to right, is the error colour: the whole width
    inner = row[len(row) // 25 : len(row) - len(row) // 25]
    off = [(i, pixel) for i, pixel in enumerate(inner) if not close_to(pixel, danger, tolerance=6)]
    assert not off, f"{len(off)} of {len(inner)} pixels are not {danger}: {off[:5]}"
    assert page.locator("#job-percent").evaluate("(n) => getComputedStyle(n).color") == (
        f"rgb({danger[0]}, {danger[1]}, {danger[2]})"
    )


def test_a_failed_job_fills_the_bar_in_red_and_says_where_it_failed(
    new_page: Any, mood_elsewhere_stack: Any, screenshot: Any
) -> None:
    # A real failure: this stack's mood actor reads another blob store than the pipeline's, so the
    # job converts and renders, then fails in the mood stage after its retries (about 15 s).
    stack = mood_elsewhere_stack
    page = new_page(stack=stack)
    page.goto("/")
    for label in ("C4, step 1", "E4, step 5", "G4, step 9"):
        cell(page, label).click()
    page.click("#render")
    page.wait_for_url("**/?job=*", timeout=15_000)
    job_id = page.url.split("job=")[1]
    # rendered, and waiting on the mood stage: the bar part-way
    page.wait_for_function(
        "() => document.getElementById('job-view').dataset.stage === 'analyzing'", timeout=RENDER_TIMEOUT_MS
    )
    partway = page.locator("#job-progress").evaluate("(b) => b.value")
    assert 0 < partway < 100, partway
    page.wait_for_function(
        "() => document.getElementById('job-view').dataset.status === 'failed'", timeout=RENDER_TIMEOUT_MS
    )
    # the event names the stage: the bar is full and red, not stuck where the mood stage began
    assert_failed_view(page, "Failed while analysing mood")
    error = page.locator("#job-error")
    assert error.is_visible() and "TUNEFORGE_BLOB_URL" in error.text_content(), error.text_content()
    # the recent-jobs list, loaded as the failure arrived, says failed (its record may lag the event)
    badge = page.locator(f'#jobs-list li:has(a[data-job="{job_id}"]) .badge').first
    badge.wait_for()
    page.wait_for_function(
        """(id) => { const link = document.querySelector(`#jobs-list a[data-job="${id}"]`);
                     const badge = link && link.parentElement.querySelector('.badge');
                     return badge && badge.textContent === 'failed'; }""",
        arg=job_id,
        timeout=5_000,
    )
    assert badge.get_attribute("class").split() == ["badge", "s-failed"]
    page.locator("#job").scroll_into_view_if_needed()
    screenshot(page, "19-failed-live")

    # What the API returns for the job names no stage ("failed"); its timings show it got to the mood.
    status, view = http_json(stack.base_url, "GET", f"/jobs/{job_id}")
    assert status == 200 and view["status"] == "failed" and view["stage"] == "failed", view
    assert {"converting", "rendering", "analyzing"} <= set(view["timings"]), view["timings"]

    # reopened from the recent-jobs list on another page: the same, the stage read from the timings
    other = new_page(stack=stack)
    other.goto("/")
    link = other.locator(f'#jobs-list a[data-job="{job_id}"]')
    link.wait_for()
    assert "failed" in link.get_attribute("aria-label")
    link.click()
    other.wait_for_url(f"**/?job={job_id}")
    other.wait_for_function("() => document.getElementById('job-view').dataset.status === 'failed'")
    assert_failed_view(other, "Failed while analysing mood")
    stages = {
        li.get_attribute("data-stage"): set((li.get_attribute("class") or "").split())
        for li in other.locator("#stages li").all()
    }
    assert {"queued", "converting", "rendering"} == {s for s, c in stages.items() if "past" in c}, stages
    assert "failed" in stages["analyzing"] and "failed" not in stages["done"], stages
    other.locator("#job").scroll_into_view_if_needed()
    screenshot(other, "20-failed-reopened")


def floored(seconds: float, scale: float | None = None) -> str:
    """A time as the page must write it: floored like the audio player, never rounded up; tenths
    of a second under a minute, m:ss from a minute (h:mm:ss from an hour)."""
    if (seconds if scale is None else scale) >= 60:
        hours, rest = divmod(math.floor(seconds + 1e-9), 3600)
        minutes, secs = divmod(rest, 60)
        return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
    return f"{math.floor(seconds * 10 + 1e-9) / 10:.1f} s"


def rounded(seconds: float) -> str:
    """The same time rounded to the nearest, as the page used to write it."""
    if seconds >= 60:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}:{secs:02}"
    return f"{seconds:.1f} s"


def test_durations_are_floored_like_the_audio_player(
    browser_page: Any, live_stack: Any, screenshot: Any
) -> None:
    page = browser_page
    page.goto("/")
    # (tempo, steps, step length in beats, C4 on these steps, the screenshot's name): FluidR3 renders
    # the first in 10.68 s ("10.6 s", not "10.7 s") and the second in 70.87 s ("1:10", not "1:11").
    pieces = [
        (101, 32, 0.5, [1, 9, 17, 25, 32], "21-durations-short"),
        (55, 64, 1.0, [1, 33, 64], "22-durations-long"),
    ]
    for tempo, steps, step_beats, on, name in pieces:
        page.click("#clear")
        page.select_option("#steps", str(steps))
        page.select_option("#step-length", str(step_beats).removesuffix(".0"))
        page.fill("#tempo", str(tempo))
        page.locator("#tempo").dispatch_event("change")
        for step in on:
            cell(page, f"C4, step {step}").click()
        # the grid's own length, as composed
        beats = steps * step_beats
        grid_seconds = beats * 60 / tempo
        expected_count = f"{len(on)} notes · {beats:g} beats · {floored(grid_seconds)}"
        assert page.locator("#note-count").text_content() == expected_count

        before = page.url
        page.click("#render")
        page.wait_for_url(lambda url, before=before: "?job=" in url and url != before, timeout=15_000)
        job_id = page.url.split("job=")[1]
        wait_until_done(page)
        assert_mood_shown(page, "#job-mood", timeline=True)
        status, job = http_json(live_stack.base_url, "GET", f"/jobs/{job_id}")
        assert status == 200, job
        seconds = job["result"]["duration_seconds"]
        mood = job["result"]["mood"]
        total = mood["duration_seconds"]
        shown = floored(seconds)
        # the piece was chosen for this: rounding its length would give another text
        assert rounded(seconds) != shown, f"{seconds} s no longer rounds up: choose another tempo"

        # the player's own length, floored, is what the page says
        player = page.evaluate("() => document.getElementById('job-audio').duration")
        assert floored(player, seconds) == shown, (player, seconds)
        # the result's summary
        meta = page.locator("#job-meta").text_content()
        assert meta.startswith(f"{shown} · WAV · "), meta
        # the recent-jobs list (loaded again once the job is done)
        page.wait_for_function(
            """([id, text]) => { const link = document.querySelector(`#jobs-list a[data-job="${id}"]`);
                                 return link && link.parentElement.textContent.includes(text); }""",
            arg=[job_id, f"{shown} · "],
            timeout=10_000,
        )
        # the mood: its length, the timeline's axis, and its last stretch (strip and list)
        numbers = page.locator("#job-mood .mood-numbers").text_content()
        assert f"· {floored(total)} analysed" in numbers, numbers
        assert page.locator("#job-mood .timeline-axis span").last.text_content() == floored(total)
        _, start, end, _ = mood_runs(mood["timeline"])[-1]
        span = (
            f"{floored(start, total)}–{floored(end, total)}"
            if total >= 60
            else f"{floored(start).removesuffix(' s')}–{floored(end)}"
        )
        last_title = page.locator("#job-mood .timeline-bar .seg").last.get_attribute("title")
        assert last_title.startswith(f"{span}: "), (last_title, span)
        assert page.locator("#job-mood .timeline-list li").last.text_content().startswith(f"{span}: ")
        page.locator("#job").scroll_into_view_if_needed()
        screenshot(page, name)
