"""The TuneForge page in headless Chromium against a real running stack (`live_stack`).

Each test drives the page the way a person would (clicks, drags, keys, file picker) and keeps a
screenshot of each state in test-artifacts/screenshots/.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import random
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
    assert any(later > earlier for earlier, later in itertools.pairwise(values)), values
    assert page.locator("#job-progress").get_attribute("value") == "100"
    assert_audio_playable(page)
    downloads = {name: page.get_attribute(f"#dl-{name}", "href") for name in ("wav", "flac", "ogg", "midi")}
    assert downloads["wav"].endswith("format=wav") and downloads["midi"].endswith("/midi"), downloads
    midi = page.request.get(downloads["midi"])
    assert midi.ok and midi.body()[:4] == b"MThd"
    assert_mood_shown(page, "#job-mood", timeline=True)
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
    page.click("#upload-submit")
    assert_mood_shown(page, "#upload-mood", timeline=True)
    # 18 s: windows from 0, 5, 10 and 15 s; the last two have no sound of their own
    segments = page.locator("#upload-mood .timeline .seg")
    assert segments.count() == 4
    assert page.locator("#upload-mood .timeline .seg.m-none").count() == 2
    assert "silence" in segments.nth(3).get_attribute("title")
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
