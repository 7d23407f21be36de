"""Render benchmark: TuneForge end to end vs the `fluidsynth` command line, side by side.

    .venv/bin/python bench/render.py [--runs 5] [--url http://127.0.0.1:8000]

Without --url it starts its own stack (`tuneforge up` on a free port, temporary data dir).
Prints, for a 60-second 3-voice piano piece:
  - wall time of POST /download (HTTP → NATS → converter → exporter → blob → HTTP), median of runs;
  - wall time of `fluidsynth -ni -q -F out.wav -r 44100 FluidR3_GM.sf2 piece.mid` on the same MIDI
    (Debian's CLI, default settings, SDL_AUDIODRIVER=dummy so SDL's hotplug thread is not counted);
  - their ratio (target ≤ 1.2), and the time to answer a repeated request from the cache (target < 10 ms);
  - the exporter's peak resident memory while rendering a 1-minute and a 10-minute piece (target: 10-minute
    peak < 1.5 × the 1-minute peak). The peak is the process's VmHWM, reset before each piece.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tuneforge.embedded import free_port

SOUNDFONT = Path(os.environ.get("TUNEFORGE_SOUNDFONT_DIR", "/usr/share/sounds/sf2")) / "FluidR3_GM.sf2"
PASSWORD = "bench-" + os.urandom(8).hex()


def piano_piece(seconds: float, seed: int = 7) -> dict:
    """Three piano voices at 120 bpm: a melody in eighths, a walking bass, held chords."""
    rng = random.Random(seed)
    beats = int(seconds * 2)
    scale = [0, 2, 4, 5, 7, 9, 11]
    melody = [
        {
            "pitch": 72 + rng.choice(scale),
            "start_beats": b / 2,
            "duration_beats": 0.5,
            "velocity": rng.randint(70, 100),
        }
        for b in range(beats * 2)
    ]
    bass = [
        {"pitch": 36 + rng.choice(scale), "start_beats": b, "duration_beats": 1.0, "velocity": 85}
        for b in range(beats)
    ]
    chords = [
        {"pitch": 60 + rng.choice([0, 4, 7]), "start_beats": b, "duration_beats": 4.0, "velocity": 60}
        for b in range(0, beats, 4)
    ]
    tracks = [{"instrument": "acoustic_grand_piano", "notes": notes} for notes in (melody, bass, chords)]
    return {"tempo_bpm": 120, "tracks": tracks}


def start_stack(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CACHE_RESET_PWD": PASSWORD}
    env.pop("TUNEFORGE_NATS_URL", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuneforge",
            "up",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--moods",
            "0",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            checks = httpx.get(f"{url}/healthz", timeout=2).json()["checks"]
            if checks["tuneforge-exporter"]["ok"] and checks["tuneforge-converter"]["ok"]:
                return process, url
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the stack did not start")


def exporter_pid(client: httpx.Client, job_id: str) -> int:
    for line in client.get(f"/jobs/{job_id}/events").text.splitlines():
        if line.startswith("data:") and '"rendering"' in line and '"detail":"' in line:
            return int(line.split('"detail":"')[1].split('"')[0].rsplit(":", 1)[1])
    raise SystemExit("no rendering event named the exporter")


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmHWM for {pid}")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # Linux: reset the peak RSS (VmHWM) to the current RSS


def curl_timings(client: httpx.Client, piece: dict, work: Path) -> float:
    """Median total time of curl fetching the cached audio (a faster client than httpx)."""
    body = work / "piece.json"
    body.write_text(json.dumps(piece))
    totals = []
    for _ in range(10):
        out = subprocess.run(
            [
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{time_total}",
                "-H",
                "content-type: application/json",
                "--data-binary",
                f"@{body}",
                f"{str(client.base_url).rstrip('/')}/download",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        totals.append(float(out.stdout))
    return statistics.median(totals)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", help="an existing stack (needs CACHE_RESET_PWD=--password there)")
    parser.add_argument("--password", default=PASSWORD)
    args = parser.parse_args()
    cli = shutil.which("fluidsynth")
    if not cli:
        raise SystemExit("the fluidsynth command is missing (Debian package fluidsynth)")
    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    stack = None
    url = args.url
    if not url:
        stack, url = start_stack(work / "data")
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            run(client, cli, work, args.runs, args.password)
    finally:
        if stack is not None:
            stack.send_signal(signal.SIGINT)
            stack.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def run(client: httpx.Client, cli: str, work: Path, runs: int, password: str) -> None:
    piece = piano_piece(60.0)
    # Warm-up: one render, so both sides start with the SoundFont in the page cache.
    warm = client.post("/download", json=piece)
    warm.raise_for_status()
    job_id = warm.headers["X-TuneForge-Job"]
    midi_path = work / "piece.mid"
    midi_path.write_bytes(client.get(f"/jobs/{job_id}/midi").content)
    cli_env = {**os.environ, "SDL_AUDIODRIVER": "dummy"}
    subprocess.run(
        [cli, "-ni", "-q", "-F", str(work / "cli.wav"), "-r", "44100", str(SOUNDFONT), str(midi_path)],
        check=True,
        env=cli_env,
    )

    ours, theirs = [], []
    for _ in range(runs):
        client.post("/clearcache", json={"password": password}).raise_for_status()
        started = time.perf_counter()
        response = client.post("/download", json=piece)
        response.raise_for_status()
        _ = response.content
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        subprocess.run(
            [cli, "-ni", "-q", "-F", str(work / "cli.wav"), "-r", "44100", str(SOUNDFONT), str(midi_path)],
            check=True,
            env=cli_env,
        )
        theirs.append(time.perf_counter() - started)

    cached, cached_first_byte = [], []
    for _ in range(20):
        started = time.perf_counter()
        with client.stream("POST", "/download", json=piece) as streamed:
            cached_first_byte.append(time.perf_counter() - started)  # status and headers are in
            body = streamed.read()
        cached.append(time.perf_counter() - started)
    curl_total = curl_timings(client, piece, work) if shutil.which("curl") else None
    cached_jobs = []
    for _ in range(20):
        started = time.perf_counter()
        client.post("/jobs", json=piece).raise_for_status()
        cached_jobs.append(time.perf_counter() - started)

    audio_mb = len(body) / 1e6
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"60-second 3-voice piano piece, FluidR3_GM, 44.1 kHz WAV ({audio_mb:.1f} MB), median of {runs} runs"
    )
    print(
        f"  TuneForge POST /download end to end : {statistics.median(ours) * 1000:8.1f} ms  "
        f"(min {min(ours) * 1000:.1f})"
    )
    print(
        f"  fluidsynth CLI (same MIDI)          : {statistics.median(theirs) * 1000:8.1f} ms  "
        f"(min {min(theirs) * 1000:.1f})"
    )
    print(f"  ratio TuneForge / CLI               : {ratio:8.2f}   (target ≤ 1.20)")
    first_byte_ms = statistics.median(cached_first_byte) * 1000
    print(
        f"  repeat from cache, POST /download   : {first_byte_ms:8.1f} ms median "
        f"to the answer's first byte, p90 {sorted(cached_first_byte)[17] * 1000:.1f} ms (target < 10 ms)"
    )
    whole_ms = statistics.median(cached) * 1000
    print(
        f"    … with the whole {audio_mb:.1f} MB body read by httpx: {whole_ms:.1f} ms"
        + (f"; by curl: {curl_total * 1000:.1f} ms" if curl_total else "")
    )
    print(
        f"  repeat from cache, POST /jobs       : {statistics.median(cached_jobs) * 1000:8.1f} ms median, "
        f"p90 {sorted(cached_jobs)[17] * 1000:.1f} ms (job answered done)"
    )

    peaks = {}
    for minutes in (1, 10):
        score = piano_piece(60.0 * minutes, seed=minutes)
        probe = client.post(
            "/jobs",
            json={
                "tracks": [
                    {"notes": [{"pitch": 60, "start_beats": 0, "duration_beats": 0.1 + minutes / 1000}]}
                ]
            },
        )
        probe_id = probe.json()["id"]
        while client.get(f"/jobs/{probe_id}").json()["status"] not in ("done", "failed"):
            time.sleep(0.05)
        pid = exporter_pid(client, probe_id)
        reset_peak(pid)
        before = vm_hwm_kib(pid)
        started = time.perf_counter()
        client.post("/download", json=score).raise_for_status()
        elapsed = time.perf_counter() - started
        peaks[minutes] = vm_hwm_kib(pid)
        print(
            f"  exporter peak RSS, {minutes:2d}-minute piece   : {peaks[minutes] / 1024:8.1f} MiB "
            f"(RSS before {before / 1024:.1f} MiB; end to end {elapsed:.2f} s)"
        )
    print(f"  peak ratio 10-minute / 1-minute     : {peaks[10] / peaks[1]:8.2f}   (target < 1.50)")


if __name__ == "__main__":
    main()
