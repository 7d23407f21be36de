/* TuneForge page: step sequencer, browser preview, render jobs with live progress, mood views.
 * Plain JavaScript, no dependencies, no build step. */
"use strict";

(() => {
  // ---------------------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------------------

  /** The 128 General MIDI programs; index = program number (0-based). Replaced by GET /instruments. */
  const GM_FALLBACK = [
    "acoustic_grand_piano", "bright_acoustic_piano", "electric_grand_piano", "honky_tonk_piano",
    "electric_piano_1", "electric_piano_2", "harpsichord", "clavinet",
    "celesta", "glockenspiel", "music_box", "vibraphone",
    "marimba", "xylophone", "tubular_bells", "dulcimer",
    "drawbar_organ", "percussive_organ", "rock_organ", "church_organ",
    "reed_organ", "accordion", "harmonica", "tango_accordion",
    "acoustic_guitar_nylon", "acoustic_guitar_steel", "electric_guitar_jazz", "electric_guitar_clean",
    "electric_guitar_muted", "overdriven_guitar", "distortion_guitar", "guitar_harmonics",
    "acoustic_bass", "electric_bass_finger", "electric_bass_pick", "fretless_bass",
    "slap_bass_1", "slap_bass_2", "synth_bass_1", "synth_bass_2",
    "violin", "viola", "cello", "contrabass",
    "tremolo_strings", "pizzicato_strings", "orchestral_harp", "timpani",
    "string_ensemble_1", "string_ensemble_2", "synth_strings_1", "synth_strings_2",
    "choir_aahs", "voice_oohs", "synth_voice", "orchestra_hit",
    "trumpet", "trombone", "tuba", "muted_trumpet",
    "french_horn", "brass_section", "synth_brass_1", "synth_brass_2",
    "soprano_sax", "alto_sax", "tenor_sax", "baritone_sax",
    "oboe", "english_horn", "bassoon", "clarinet",
    "piccolo", "flute", "recorder", "pan_flute",
    "blown_bottle", "shakuhachi", "whistle", "ocarina",
    "lead_1_square", "lead_2_sawtooth", "lead_3_calliope", "lead_4_chiff",
    "lead_5_charang", "lead_6_voice", "lead_7_fifths", "lead_8_bass_lead",
    "pad_1_new_age", "pad_2_warm", "pad_3_polysynth", "pad_4_choir",
    "pad_5_bowed", "pad_6_metallic", "pad_7_halo", "pad_8_sweep",
    "fx_1_rain", "fx_2_soundtrack", "fx_3_crystal", "fx_4_atmosphere",
    "fx_5_brightness", "fx_6_goblins", "fx_7_echoes", "fx_8_sci_fi",
    "sitar", "banjo", "shamisen", "koto",
    "kalimba", "bagpipe", "fiddle", "shanai",
    "tinkle_bell", "agogo", "steel_drums", "woodblock",
    "taiko_drum", "melodic_tom", "synth_drum", "reverse_cymbal",
    "guitar_fret_noise", "breath_noise", "seashore", "bird_tweet",
    "telephone_ring", "helicopter", "applause", "gunshot",
  ];
  const GM_FAMILIES = [
    "Piano", "Chromatic percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass",
    "Reed", "Pipe", "Synth lead", "Synth pad", "Synth effects", "Ethnic", "Percussive", "Sound effects",
  ];
  const NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
  const LOWEST_PITCH = 48; // C3
  const HIGHEST_PITCH = 72; // C5
  /** General MIDI percussion keys shown as drum rows (top to bottom). */
  const DRUM_ROWS = [
    { key: 49, name: "Crash cymbal" },
    { key: 46, name: "Open hi-hat" },
    { key: 42, name: "Closed hi-hat" },
    { key: 39, name: "Hand clap" },
    { key: 38, name: "Snare" },
    { key: 36, name: "Kick" },
  ];
  const MOODS = ["happy", "tense", "sad", "calm"];
  const STAGES = ["queued", "converting", "rendering", "analyzing", "done"];
  /** The stages a worker does, in order: where a job can fail. */
  const WORK_STAGES = ["converting", "rendering", "analyzing"];
  const STAGE_WORDS = {
    queued: "Queued",
    converting: "Converting notes to MIDI",
    rendering: "Rendering audio",
    analyzing: "Analysing mood",
    done: "Done",
    failed: "Failed",
  };
  const STORAGE_KEY = "tuneforge.composition.v1";
  const MELODIC_VELOCITY = 100;
  const DRUM_VELOCITY = 110;

  // ---------------------------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function pitchName(midi) {
    return NOTE_NAMES[midi % 12] + String(Math.floor(midi / 12) - 1);
  }

  function titleCase(programName) {
    return programName
      .split("_")
      .map((word) => (word.length <= 2 && /\d/.test(word) ? word : word.charAt(0).toUpperCase() + word.slice(1)))
      .join(" ")
      .replace(/\bFx\b/g, "FX")
      .replace(/\bSci Fi\b/, "Sci-fi")
      .replace(/\bHonky Tonk\b/, "Honky-tonk");
  }

  function clamp(value, low, high) {
    return Math.min(high, Math.max(low, value));
  }

  function isNum(value) {
    return typeof value === "number" && Number.isFinite(value);
  }

  // A timeline window with no sound of its own: the API gives it even odds and confidence 0.
  function isRest(segment) {
    return isNum(segment.confidence) && segment.confidence === 0;
  }

  // Audio with no sound at all (silence, or a hiss far below the music's level): the API gives it
  // even odds, valence and arousal 0 and confidence 0, and its tempo and key mean nothing.
  function isNoMood(mood) {
    if (!mood || mood.confidence !== 0 || mood.valence !== 0 || mood.arousal !== 0) return false;
    const odds = mood.probabilities && typeof mood.probabilities === "object" ? Object.values(mood.probabilities) : [];
    return odds.length > 0 && odds.every((p) => isNum(p) && Math.abs(p - 0.25) < 1e-3);
  }

  function fmt(value, digits = 2) {
    return isNum(value) ? value.toFixed(digits) : "–";
  }

  function signed(value, digits = 2) {
    if (!isNum(value)) return "–";
    return (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(digits);
  }

  /** A number with a typographic minus sign (−18.5, not -18.5). */
  function minus(value, digits = 1) {
    return fmt(value, digits).replace(/^-/, "−");
  }

  // Times in a piece are shown as an audio player shows them: floored, never rounded up (a player
  // says 3:12 until 3:13 has been reached). The billionth of a second allowed for is floating
  // point's: a time computed as 2.9999999999999996 is 3 s, far below anything a person hears.
  const TIME_EPSILON = 1e-9;

  /** A time as m:ss, or h:mm:ss from an hour up; floored to the second. */
  function clock(seconds) {
    const whole = Math.max(0, Math.floor(seconds + TIME_EPSILON));
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = String(whole % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  /** Seconds floored to the tenth, as text: 14.96 → "14.9". */
  function tenths(seconds) {
    return (Math.max(0, Math.floor(seconds * 10 + TIME_EPSILON)) / 10).toFixed(1);
  }

  /** A music duration or a time in a piece, the one way the page writes them: tenths of a second
   * under a minute ("14.9 s" for 14.96 s), m:ss from a minute ("3:12" for 192.7 s), h:mm:ss from an
   * hour; always floored, like the audio player. `scale` (the piece's length) picks the form, so
   * every time of one piece reads alike. */
  function musicTime(seconds, scale = seconds) {
    if (!isNum(seconds)) return "–";
    return isNum(scale) && scale >= 60 ? clock(seconds) : `${tenths(seconds)} s`;
  }

  /** A stretch of a piece: in seconds for short pieces, as clock times for a minute or more. */
  function timeSpan(start, end, total) {
    if (!isNum(start) || !isNum(end)) return "–";
    if (isNum(total) && total >= 60) return `${clock(start)}–${clock(end)}`;
    return `${tenths(start)}–${tenths(end)} s`;
  }

  /** Milliseconds since the epoch from unix seconds, unix milliseconds or an ISO 8601 string. */
  function toMillis(value) {
    if (isNum(value)) return value > 1e11 ? value : value * 1000;
    if (typeof value === "string" && value) {
      const parsed = Date.parse(value);
      return Number.isNaN(parsed) ? null : parsed;
    }
    return null;
  }

  function showMessage(node, text) {
    if (!node) return;
    if (text) {
      node.textContent = text;
      node.hidden = false;
    } else {
      node.textContent = "";
      node.hidden = true;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, status, body) {
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  /** The words a person should read for an error reply (Litestar: {"status_code", "detail", "extra"}). */
  function errorText(body, status, fallback) {
    let text = "";
    if (body && typeof body === "object") {
      const detail = body.detail ?? body.message ?? (body.error && body.error.message);
      if (typeof detail === "string") text = detail;
      else if (detail !== undefined) text = JSON.stringify(detail);
      const extra = body.extra;
      if (Array.isArray(extra) && extra.length) {
        const parts = extra
          .map((item) => {
            if (item && typeof item === "object") {
              const where = item.key ? `${item.key}: ` : "";
              return item.message ? where + item.message : JSON.stringify(item);
            }
            return String(item);
          })
          .filter(Boolean);
        if (parts.length && !parts.every((part) => text.includes(part))) text += ` (${parts.join("; ")})`;
      } else if (extra && typeof extra === "object" && Object.keys(extra).length) {
        const message = extra.message || extra.error;
        if (typeof message === "string" && !text.includes(message)) text += ` (${message})`;
      }
    } else if (typeof body === "string" && body.trim() && body.length < 400) {
      text = body.trim();
    }
    if (!text) text = fallback || `the server answered ${status}`;
    return text;
  }

  /** A reply's body: parsed JSON when it is JSON, else its text (null when empty). */
  async function readBody(response) {
    const raw = await response.text();
    if (!raw) return null;
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, {
        ...options,
        headers: { accept: "application/json", ...(options.headers || {}) },
      });
    } catch (error) {
      throw new ApiError(`Could not reach the TuneForge server (${error.message || error}).`, 0, null);
    }
    const body = await readBody(response);
    if (!response.ok) {
      const text = errorText(body, response.status, response.statusText);
      throw new ApiError(`${text}`, response.status, body);
    }
    return body;
  }

  function describeError(error, action) {
    if (error instanceof ApiError) {
      if (error.status === 0) return error.message;
      return `${action} failed (${error.status}): ${error.message}`;
    }
    return `${action} failed: ${error && error.message ? error.message : error}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Composition state
  // ---------------------------------------------------------------------------------------------

  /** Grid rows, top to bottom: melodic pitches (highest first), then drums. */
  const rows = [];
  for (let pitch = HIGHEST_PITCH; pitch >= LOWEST_PITCH; pitch -= 1) {
    rows.push({ kind: "note", pitch, label: pitchName(pitch), black: NOTE_NAMES[pitch % 12].includes("#") });
  }
  for (const drum of DRUM_ROWS) rows.push({ kind: "drum", pitch: drum.key, label: drum.name, black: false });
  const FIRST_DRUM_ROW = rows.findIndex((row) => row.kind === "drum");

  const state = {
    steps: 32,
    stepBeats: 0.5,
    tempo: 120,
    program: 0,
    newLength: 1,
    /** notes[row] = Map(startStep -> lengthSteps); drums always have length 1. */
    notes: rows.map(() => new Map()),
    focus: { row: rows.findIndex((row) => row.pitch === 60), step: 0 },
  };

  function noteAt(rowIndex, step) {
    for (const [start, length] of state.notes[rowIndex]) {
      if (step >= start && step < start + length) return { start, length };
    }
    return null;
  }

  function removeOverlapping(rowIndex, start, length) {
    const map = state.notes[rowIndex];
    for (const [otherStart, otherLength] of [...map]) {
      if (otherStart < start + length && start < otherStart + otherLength) {
        if (otherStart < start) map.set(otherStart, start - otherStart); // keep the part before
        else map.delete(otherStart);
      }
    }
  }

  function addNote(rowIndex, start, length) {
    const isDrum = rows[rowIndex].kind === "drum";
    const len = isDrum ? 1 : clamp(length, 1, state.steps - start);
    removeOverlapping(rowIndex, start, len);
    state.notes[rowIndex].set(start, len);
  }

  function noteCount() {
    return state.notes.reduce((total, map) => total + map.size, 0);
  }

  /** The Score the API takes (without options). Steps are `stepBeats` long; one grid = one pass. */
  function buildScore() {
    const melodic = [];
    const drums = [];
    rows.forEach((row, rowIndex) => {
      for (const [start, length] of state.notes[rowIndex]) {
        const note = {
          pitch: row.pitch,
          start_beats: start * state.stepBeats,
          duration_beats: (row.kind === "drum" ? 1 : length) * state.stepBeats,
          velocity: row.kind === "drum" ? DRUM_VELOCITY : MELODIC_VELOCITY,
        };
        (row.kind === "drum" ? drums : melodic).push(note);
      }
    });
    const byTime = (a, b) => a.start_beats - b.start_beats || a.pitch - b.pitch;
    melodic.sort(byTime);
    drums.sort(byTime);
    const tracks = [];
    if (melodic.length) tracks.push({ name: "melody", instrument: state.program, drums: false, notes: melodic });
    if (drums.length) tracks.push({ name: "drums", instrument: 0, drums: true, notes: drums });
    return { tempo_bpm: state.tempo, time_signature: [4, 4], tracks };
  }

  function renderOptions() {
    return {
      format: $("format").value,
      sample_rate_hz: Number($("sample-rate").value),
      soundfont: $("soundfont").value,
      analyze_mood: true,
    };
  }

  function saveComposition() {
    try {
      const data = {
        steps: state.steps,
        stepBeats: state.stepBeats,
        tempo: state.tempo,
        program: state.program,
        notes: rows.map((row, index) => [row.kind, row.pitch, [...state.notes[index]]]),
      };
      localStorage.setItem(STORAGE_KEY, JSON.stringify(data));
    } catch {
      /* storage may be unavailable (private mode); the page works without it */
    }
  }

  function loadComposition() {
    try {
      const data = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
      if (!data) return;
      if ([16, 24, 32, 48, 64].includes(data.steps)) state.steps = data.steps;
      if ([0.25, 0.5, 1].includes(data.stepBeats)) state.stepBeats = data.stepBeats;
      if (isNum(data.tempo)) state.tempo = clamp(Math.round(data.tempo), 20, 400);
      if (Number.isInteger(data.program)) state.program = clamp(data.program, 0, 127);
      for (const [kind, pitch, entries] of data.notes || []) {
        const index = rows.findIndex((row) => row.kind === kind && row.pitch === pitch);
        if (index < 0 || !Array.isArray(entries)) continue;
        for (const [start, length] of entries) {
          if (Number.isInteger(start) && start >= 0 && start < state.steps && Number.isInteger(length)) {
            addNote(index, start, length);
          }
        }
      }
    } catch {
      /* ignore a damaged saved composition */
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Grid
  // ---------------------------------------------------------------------------------------------

  const grid = $("grid");
  /** cells[row][step] = button */
  let cells = [];

  function stepsPerBeat() {
    return Math.max(1, Math.round(1 / state.stepBeats));
  }

  function buildGrid() {
    grid.replaceChildren();
    grid.style.setProperty("--steps", String(state.steps));
    cells = [];
    const perBeat = stepsPerBeat();
    const perBar = perBeat * 4;

    const header = el("div", { class: "grid-row grid-header", "aria-hidden": "true" }, el("span", { class: "row-label" }, ""));
    for (let step = 0; step < state.steps; step += 1) {
      const onBeat = step % perBeat === 0;
      header.append(
        el("span", { class: `step-num${step % perBar === 0 ? " bar" : ""}` }, onBeat ? String(step / perBeat + 1) : "·"),
      );
    }
    grid.append(header);

    rows.forEach((row, rowIndex) => {
      const rowClasses = ["grid-row", row.kind === "drum" ? "drum-row" : "note-row"];
      if (row.black) rowClasses.push("black-key");
      if (row.kind === "note" && row.pitch % 12 === 0) rowClasses.push("octave");
      if (rowIndex === FIRST_DRUM_ROW) rowClasses.push("first-drum");
      const rowNode = el("div", { class: rowClasses.join(" "), role: "group", "aria-label": row.label });
      rowNode.append(el("span", { class: "row-label", "aria-hidden": "true" }, row.label));
      const rowCells = [];
      for (let step = 0; step < state.steps; step += 1) {
        const classes = ["cell"];
        if (step % perBeat === 0) classes.push("beat");
        if (step % perBar === 0) classes.push("bar");
        const button = el("button", {
          type: "button",
          class: classes.join(" "),
          "aria-label": `${row.label}, step ${step + 1}`,
          "aria-pressed": "false",
          tabindex: "-1",
          "data-row": rowIndex,
          "data-step": step,
        });
        rowCells.push(button);
        rowNode.append(button);
      }
      cells.push(rowCells);
      grid.append(rowNode);
    });
    state.focus.row = clamp(state.focus.row, 0, rows.length - 1);
    state.focus.step = clamp(state.focus.step, 0, state.steps - 1);
    cells[state.focus.row][state.focus.step].tabIndex = 0;
    refreshAllCells();
  }

  function refreshRow(rowIndex) {
    const rowCells = cells[rowIndex];
    if (!rowCells) return;
    const row = rows[rowIndex];
    for (let step = 0; step < state.steps; step += 1) {
      const note = noteAt(rowIndex, step);
      const button = rowCells[step];
      const on = Boolean(note);
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.classList.toggle("on", on);
      button.classList.toggle("start", on && note.start === step);
      button.classList.toggle("cont", on && note.start !== step);
      button.classList.toggle("end", on && note.start + note.length - 1 === step);
      if (on && row.kind === "note") {
        const last = note.start + note.length;
        button.title =
          note.length > 1
            ? `${row.label}, steps ${note.start + 1}–${last} (${note.length} steps)`
            : `${row.label}, step ${note.start + 1}`;
      } else {
        button.removeAttribute("title");
      }
    }
  }

  function refreshAllCells() {
    rows.forEach((_, index) => refreshRow(index));
    updateNoteCount();
  }

  function updateNoteCount() {
    const count = noteCount();
    const beats = state.steps * state.stepBeats;
    const seconds = (beats * 60) / state.tempo;
    $("note-count").textContent =
      count === 0
        ? "No notes yet"
        : `${count} note${count === 1 ? "" : "s"} · ${beats} beats · ${musicTime(seconds)}`;
  }

  function changed(rowIndex) {
    if (rowIndex === undefined) refreshAllCells();
    else {
      refreshRow(rowIndex);
      updateNoteCount();
    }
    saveComposition();
    showMessage($("compose-error"), "");
  }

  function toggleCell(rowIndex, step) {
    const existing = noteAt(rowIndex, step);
    if (existing) state.notes[rowIndex].delete(existing.start);
    else {
      addNote(rowIndex, step, state.newLength);
      auditionRow(rowIndex);
    }
    changed(rowIndex);
  }

  function setFocus(rowIndex, step, move = true) {
    rowIndex = clamp(rowIndex, 0, rows.length - 1);
    step = clamp(step, 0, state.steps - 1);
    const previous = cells[state.focus.row] && cells[state.focus.row][state.focus.step];
    if (previous) previous.tabIndex = -1;
    state.focus = { row: rowIndex, step };
    const next = cells[rowIndex][step];
    next.tabIndex = 0;
    if (move) next.focus();
  }

  function cellFromEvent(event) {
    const target = event.target instanceof Element ? event.target.closest("button.cell") : null;
    if (!target || !grid.contains(target)) return null;
    return { row: Number(target.dataset.row), step: Number(target.dataset.step), node: target };
  }

  // Pointer: a click toggles; dragging along a row (mouse or pen) draws a note that long.
  let drag = null;
  let suppressClick = false;

  grid.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "touch" || event.button !== 0) return;
    const cell = cellFromEvent(event);
    if (!cell) return;
    drag = { row: cell.row, from: cell.step, to: cell.step, moved: false };
    setFocus(cell.row, cell.step, false);
  });

  function paintDragPreview() {
    for (const node of grid.querySelectorAll(".cell.drag")) node.classList.remove("drag");
    if (!drag || !drag.moved) return;
    const low = Math.min(drag.from, drag.to);
    const high = Math.max(drag.from, drag.to);
    for (let step = low; step <= high; step += 1) cells[drag.row][step].classList.add("drag");
  }

  document.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const under = document.elementFromPoint(event.clientX, event.clientY);
    const target = under && under.closest ? under.closest("button.cell") : null;
    if (!target || Number(target.dataset.row) !== drag.row) return;
    const step = Number(target.dataset.step);
    if (step !== drag.to) {
      drag.to = step;
      drag.moved = drag.to !== drag.from;
      paintDragPreview();
    }
  });

  document.addEventListener("pointerup", () => {
    if (!drag) return;
    const finished = drag;
    drag = null;
    paintDragPreview();
    if (!finished.moved) return; // a plain click: the click handler toggles
    suppressClick = true;
    setTimeout(() => {
      suppressClick = false;
    }, 0);
    const low = Math.min(finished.from, finished.to);
    const high = Math.max(finished.from, finished.to);
    if (rows[finished.row].kind === "drum") {
      for (let step = low; step <= high; step += 1) addNote(finished.row, step, 1);
    } else {
      addNote(finished.row, low, high - low + 1);
    }
    auditionRow(finished.row);
    changed(finished.row);
    setFocus(finished.row, low, false);
  });

  grid.addEventListener("click", (event) => {
    const cell = cellFromEvent(event);
    if (!cell) return;
    if (suppressClick) {
      suppressClick = false;
      return;
    }
    setFocus(cell.row, cell.step, false);
    toggleCell(cell.row, cell.step); // also reached by Space / Enter on the focused button
  });

  grid.addEventListener("focusin", (event) => {
    const cell = cellFromEvent(event);
    if (cell && (cell.row !== state.focus.row || cell.step !== state.focus.step)) setFocus(cell.row, cell.step, false);
  });

  grid.addEventListener("keydown", (event) => {
    const cell = cellFromEvent(event);
    if (!cell) return;
    const { row, step } = cell;
    const perBar = stepsPerBeat() * 4;
    let handled = true;
    if (event.shiftKey && (event.key === "ArrowRight" || event.key === "ArrowLeft")) {
      const note = noteAt(row, step);
      if (note && rows[row].kind === "note") {
        const longer = event.key === "ArrowRight";
        const length = clamp(note.length + (longer ? 1 : -1), 1, state.steps - note.start);
        addNote(row, note.start, length);
        changed(row);
        setFocus(row, note.start + length - 1);
      } else {
        setFocus(row, step + (event.key === "ArrowRight" ? 1 : -1));
      }
    } else if (event.key === "ArrowRight") setFocus(row, step + 1);
    else if (event.key === "ArrowLeft") setFocus(row, step - 1);
    else if (event.key === "ArrowUp") setFocus(row - 1, step);
    else if (event.key === "ArrowDown") setFocus(row + 1, step);
    else if (event.key === "Home") setFocus(event.ctrlKey ? 0 : row, 0);
    else if (event.key === "End") setFocus(event.ctrlKey ? rows.length - 1 : row, state.steps - 1);
    else if (event.key === "PageDown") setFocus(row, step + perBar);
    else if (event.key === "PageUp") setFocus(row, step - perBar);
    else if (event.key === "Delete" || event.key === "Backspace") {
      const note = noteAt(row, step);
      if (note) {
        state.notes[row].delete(note.start);
        changed(row);
      }
    } else handled = false; // Space and Enter fall through to the button's own click
    if (handled) event.preventDefault();
  });

  // ---------------------------------------------------------------------------------------------
  // Controls
  // ---------------------------------------------------------------------------------------------

  function fillInstruments(names) {
    const select = $("instrument");
    select.replaceChildren();
    for (let family = 0; family < 16; family += 1) {
      const group = el("optgroup", { label: GM_FAMILIES[family] });
      for (let program = family * 8; program < family * 8 + 8 && program < names.length; program += 1) {
        group.append(el("option", { value: program }, `${titleCase(names[program])} (${program})`));
      }
      select.append(group);
    }
    select.value = String(state.program);
  }

  async function loadInstruments() {
    try {
      const body = await api("/instruments");
      const names = body && Array.isArray(body.programs) ? body.programs : null;
      if (names && names.length === 128 && names.every((name) => typeof name === "string")) fillInstruments(names);
    } catch {
      /* the built-in list is already shown */
    }
  }

  function syncControls() {
    $("tempo").value = String(state.tempo);
    $("steps").value = String(state.steps);
    $("step-length").value = String(state.stepBeats);
    $("note-length").value = String(state.newLength);
    $("instrument").value = String(state.program);
  }

  $("instrument").addEventListener("change", (event) => {
    state.program = clamp(Number(event.target.value) || 0, 0, 127);
    saveComposition();
  });

  $("tempo").addEventListener("change", (event) => {
    const value = Number(event.target.value);
    if (!isNum(value) || value < 20 || value > 400) {
      // The field keeps what was typed: put back silently, the next Render would use the old tempo
      // (clicking Render is what ends the edit), and render() refuses the field as it stands.
      showMessage($("compose-error"), "Tempo must be a number from 20 to 400 bpm.");
      event.target.setAttribute("aria-invalid", "true");
      return;
    }
    event.target.removeAttribute("aria-invalid");
    state.tempo = value;
    changed();
  });

  $("steps").addEventListener("change", (event) => {
    const steps = clamp(Number(event.target.value) || 32, 16, 64);
    state.steps = steps;
    state.notes.forEach((map) => {
      for (const [start, length] of [...map]) {
        if (start >= steps) map.delete(start);
        else if (start + length > steps) map.set(start, steps - start);
      }
    });
    stopPreview();
    buildGrid();
    changed();
  });

  $("step-length").addEventListener("change", (event) => {
    const value = Number(event.target.value);
    state.stepBeats = [0.25, 0.5, 1].includes(value) ? value : 0.5;
    stopPreview();
    buildGrid();
    changed();
  });

  $("note-length").addEventListener("change", (event) => {
    state.newLength = clamp(Number(event.target.value) || 1, 1, 64);
  });

  $("controls").addEventListener("submit", (event) => event.preventDefault());

  $("clear").addEventListener("click", () => {
    stopPreview();
    state.notes.forEach((map) => map.clear());
    changed();
  });

  /** A short phrase in C major with a beat, laid out for whatever step length is chosen. */
  function loadExample() {
    stopPreview();
    state.notes.forEach((map) => map.clear());
    const perBeat = stepsPerBeat();
    const rowOf = (name) => rows.findIndex((row) => row.label === name);
    // [note, start beat, length beats]
    const melody = [
      ["C4", 0, 1], ["E4", 1, 1], ["G4", 2, 1], ["C5", 3, 1],
      ["B4", 4, 0.5], ["G4", 4.5, 0.5], ["A4", 5, 1], ["G4", 6, 2],
      ["E4", 8, 1], ["F4", 9, 1], ["D4", 10, 1], ["G4", 11, 1],
      ["C4", 12, 4],
      ["C3", 0, 4], ["A3", 4, 4], ["F3", 8, 4], ["G3", 12, 4],
    ];
    const lastBeat = state.steps * state.stepBeats;
    for (const [name, beat, beats] of melody) {
      if (beat >= lastBeat) continue;
      const start = Math.round(beat * perBeat);
      const length = Math.max(1, Math.round(beats * perBeat));
      if (start < state.steps) addNote(rowOf(name), start, length);
    }
    for (let beat = 0; beat < lastBeat; beat += 1) {
      const step = beat * perBeat;
      if (beat % 2 === 0) addNote(rowOf("Kick"), step, 1);
      else addNote(rowOf("Snare"), step, 1);
      addNote(rowOf("Closed hi-hat"), step, 1);
    }
    changed();
  }
  $("example").addEventListener("click", loadExample);

  // ---------------------------------------------------------------------------------------------
  // Preview (Web Audio)
  // ---------------------------------------------------------------------------------------------

  let audioContext = null;
  let noiseBuffer = null;
  const preview = { playing: false, voices: [], master: null, raf: 0, startAt: 0, secondsPerStep: 0, column: -1 };

  function context() {
    if (!audioContext) {
      const Ctor = window.AudioContext || window.webkitAudioContext;
      if (!Ctor) throw new Error("this browser has no Web Audio");
      audioContext = new Ctor();
      noiseBuffer = audioContext.createBuffer(1, audioContext.sampleRate, audioContext.sampleRate);
      const data = noiseBuffer.getChannelData(0);
      for (let i = 0; i < data.length; i += 1) data[i] = Math.random() * 2 - 1;
    }
    if (audioContext.state === "suspended") audioContext.resume();
    return audioContext;
  }

  /** A rough browser voice per General MIDI family: waveform, envelope, filter. */
  function voiceFor(program) {
    const family = Math.floor(program / 8);
    const voices = {
      0: { type: "triangle", attack: 0.005, decay: 0.6, sustain: 0.25, cutoff: 4000 },
      1: { type: "sine", attack: 0.002, decay: 0.4, sustain: 0.05, cutoff: 8000 },
      2: { type: "square", attack: 0.01, decay: 0.05, sustain: 0.8, cutoff: 2500 },
      3: { type: "triangle", attack: 0.003, decay: 0.3, sustain: 0.15, cutoff: 3500 },
      4: { type: "sawtooth", attack: 0.005, decay: 0.25, sustain: 0.5, cutoff: 900 },
      5: { type: "sawtooth", attack: 0.08, decay: 0.2, sustain: 0.8, cutoff: 2200 },
      6: { type: "sawtooth", attack: 0.12, decay: 0.2, sustain: 0.8, cutoff: 1800 },
      7: { type: "sawtooth", attack: 0.03, decay: 0.1, sustain: 0.8, cutoff: 3000 },
      8: { type: "square", attack: 0.03, decay: 0.1, sustain: 0.7, cutoff: 2000 },
      9: { type: "sine", attack: 0.04, decay: 0.1, sustain: 0.8, cutoff: 6000 },
      10: { type: "square", attack: 0.005, decay: 0.1, sustain: 0.7, cutoff: 5000 },
      11: { type: "sawtooth", attack: 0.25, decay: 0.3, sustain: 0.7, cutoff: 1400 },
      12: { type: "triangle", attack: 0.1, decay: 0.3, sustain: 0.6, cutoff: 3000 },
      13: { type: "triangle", attack: 0.003, decay: 0.35, sustain: 0.2, cutoff: 4000 },
      14: { type: "sine", attack: 0.002, decay: 0.25, sustain: 0.05, cutoff: 5000 },
      15: { type: "sawtooth", attack: 0.05, decay: 0.3, sustain: 0.5, cutoff: 2000 },
    };
    return voices[family] || voices[0];
  }

  function track(node, stopAt) {
    preview.voices.push(node);
    if (typeof node.stop === "function" && stopAt !== undefined) node.stop(stopAt);
  }

  function playTone(ctx, destination, pitch, when, seconds, velocity) {
    const voice = voiceFor(state.program);
    const osc = ctx.createOscillator();
    osc.type = voice.type;
    osc.frequency.value = 440 * 2 ** ((pitch - 69) / 12);
    const filter = ctx.createBiquadFilter();
    filter.type = "lowpass";
    filter.frequency.value = voice.cutoff;
    const gain = ctx.createGain();
    const peak = 0.22 * (velocity / 127);
    const release = 0.08;
    gain.gain.setValueAtTime(0.0001, when);
    gain.gain.exponentialRampToValueAtTime(peak, when + voice.attack);
    gain.gain.setTargetAtTime(Math.max(peak * voice.sustain, 0.0001), when + voice.attack, voice.decay / 3);
    gain.gain.setTargetAtTime(0.0001, when + seconds, release / 3);
    osc.connect(filter).connect(gain).connect(destination);
    osc.start(when);
    track(osc, when + seconds + release * 4);
  }

  function playDrum(ctx, destination, key, when) {
    const gain = ctx.createGain();
    gain.connect(destination);
    if (key === 36 || key === 35) {
      // kick: a falling sine
      const osc = ctx.createOscillator();
      osc.frequency.setValueAtTime(150, when);
      osc.frequency.exponentialRampToValueAtTime(42, when + 0.12);
      gain.gain.setValueAtTime(0.9, when);
      gain.gain.exponentialRampToValueAtTime(0.001, when + 0.35);
      osc.connect(gain);
      osc.start(when);
      track(osc, when + 0.4);
      return;
    }
    const noise = ctx.createBufferSource();
    noise.buffer = noiseBuffer;
    const filter = ctx.createBiquadFilter();
    let length = 0.05;
    let level = 0.3;
    if (key === 38 || key === 40 || key === 39) {
      filter.type = "bandpass";
      filter.frequency.value = key === 39 ? 1500 : 1800;
      filter.Q.value = 0.7;
      length = key === 39 ? 0.12 : 0.18;
      level = 0.6;
      // the snare's body
      const body = ctx.createOscillator();
      body.type = "triangle";
      body.frequency.value = 190;
      const bodyGain = ctx.createGain();
      bodyGain.gain.setValueAtTime(key === 39 ? 0.0001 : 0.4, when);
      bodyGain.gain.exponentialRampToValueAtTime(0.001, when + 0.1);
      body.connect(bodyGain).connect(destination);
      body.start(when);
      track(body, when + 0.12);
    } else {
      filter.type = "highpass";
      filter.frequency.value = 7000;
      length = key === 46 ? 0.3 : key === 49 ? 0.9 : 0.05;
      level = key === 49 ? 0.3 : 0.25;
    }
    gain.gain.setValueAtTime(level, when);
    gain.gain.exponentialRampToValueAtTime(0.001, when + length);
    noise.connect(filter).connect(gain);
    noise.start(when);
    track(noise, when + length + 0.02);
  }

  function outputChain(ctx) {
    const master = ctx.createGain();
    master.gain.value = 0.8;
    const compressor = ctx.createDynamicsCompressor();
    master.connect(compressor).connect(ctx.destination);
    return master;
  }

  /** A quick taste of a row when a note is added. */
  function auditionRow(rowIndex) {
    if (!audioContext || preview.playing) return; // only once the person has used Preview
    try {
      const ctx = context();
      const out = outputChain(ctx);
      const row = rows[rowIndex];
      const when = ctx.currentTime + 0.01;
      if (row.kind === "drum") playDrum(ctx, out, row.pitch, when);
      else playTone(ctx, out, row.pitch, when, 0.18, 90);
    } catch {
      /* audition is optional */
    }
  }

  function setPlayhead(column) {
    if (column === preview.column) return;
    if (preview.column >= 0) for (const rowCells of cells) rowCells[preview.column]?.classList.remove("playhead");
    preview.column = column;
    if (column >= 0) for (const rowCells of cells) rowCells[column]?.classList.add("playhead");
  }

  function stopPreview() {
    if (!preview.playing) return;
    preview.playing = false;
    cancelAnimationFrame(preview.raf);
    if (preview.master && audioContext) {
      const now = audioContext.currentTime;
      preview.master.gain.setTargetAtTime(0, now, 0.02);
      for (const node of preview.voices) {
        try {
          node.stop(now + 0.1);
        } catch {
          /* already stopped */
        }
      }
    }
    preview.voices = [];
    setPlayhead(-1);
    const button = $("preview");
    button.textContent = "▶ Preview";
    button.setAttribute("aria-pressed", "false");
    document.body.dataset.previewing = "false";
  }

  function startPreview() {
    showMessage($("compose-error"), "");
    if (noteCount() === 0) {
      showMessage($("compose-error"), "The grid is empty: add at least one note to preview.");
      return;
    }
    let ctx;
    try {
      ctx = context();
    } catch (error) {
      showMessage($("compose-error"), `Preview is not available: ${error.message}`);
      return;
    }
    const master = outputChain(ctx);
    preview.master = master;
    preview.voices = [];
    const secondsPerStep = (60 / state.tempo) * state.stepBeats;
    const startAt = ctx.currentTime + 0.08;
    rows.forEach((row, rowIndex) => {
      for (const [start, length] of state.notes[rowIndex]) {
        const when = startAt + start * secondsPerStep;
        if (row.kind === "drum") playDrum(ctx, master, row.pitch, when);
        else playTone(ctx, master, row.pitch, when, length * secondsPerStep * 0.95, MELODIC_VELOCITY);
      }
    });
    preview.playing = true;
    preview.startAt = startAt;
    preview.secondsPerStep = secondsPerStep;
    const button = $("preview");
    button.textContent = "■ Stop";
    button.setAttribute("aria-pressed", "true");
    document.body.dataset.previewing = "true";
    const total = state.steps * secondsPerStep;
    const tick = () => {
      if (!preview.playing) return;
      const elapsed = ctx.currentTime - startAt;
      if (elapsed >= total + 0.3) {
        stopPreview();
        return;
      }
      setPlayhead(elapsed < 0 ? -1 : Math.min(state.steps - 1, Math.floor(elapsed / secondsPerStep)));
      preview.raf = requestAnimationFrame(tick);
    };
    preview.raf = requestAnimationFrame(tick);
  }

  $("preview").addEventListener("click", () => (preview.playing ? stopPreview() : startPreview()));

  // ---------------------------------------------------------------------------------------------
  // Mood view
  // ---------------------------------------------------------------------------------------------

  /** The level the API reports for digital silence (its floor for `loudness_db`). */
  const SILENCE_FLOOR_DB = -120;
  /** Features that mean nothing for audio with no sound: shown as a dash. */
  const NO_SOUND_FEATURES = new Set(["tempo_bpm", "key", "mode", "key_confidence", "brightness_hz", "tempo_source"]);
  const NO_VALUE = "—";
  /** The list under the mood-over-time strip shows this many stretches until asked for all. */
  const TIMELINE_LIST_LIMIT = 40;

  const FEATURE_NAMES = {
    tempo_bpm: ["Tempo", (v) => (v > 0 ? `${fmt(v, 0)} bpm` : "no steady pulse")],
    key: ["Key", (v) => String(v)],
    mode: ["Mode", (v) => String(v)],
    loudness_db: ["Loudness", (v) => (v <= SILENCE_FLOOR_DB ? `silent (below −${-SILENCE_FLOOR_DB} dB)` : `${minus(v)} dB`)],
    brightness_hz: ["Brightness", (v) => `${fmt(v, 0)} Hz`],
    note_density_per_s: ["Note density", (v) => `${fmt(v, 1)} notes/s`],
    onset_rate_per_s: ["Onset rate", (v) => `${fmt(v, 2)} /s`],
    dynamic_range_db: ["Dynamic range", (v) => `${minus(v)} dB`],
    key_confidence: ["Key confidence", (v) => `${Math.round(v * 100)}%`],
    tempo_source: ["Tempo from", (v) => String(v)],
  };

  function featureLabel(key) {
    return key
      .replace(/_db$/, " (dB)")
      .replace(/_hz$/, " (Hz)")
      .replace(/_per_s$/, " per second")
      .replace(/_/g, " ")
      .replace(/^./, (c) => c.toUpperCase());
  }

  /** [name, text] rows for the features; `noSound`: the audio has none, so no tempo, key… */
  function featureRows(features, noSound = false) {
    const items = [];
    if (!features || typeof features !== "object") return items;
    const f = features;
    // Key and mode read best together.
    // No sound, or a key confidence of 0 (the API's "no key heard"): no key to show.
    const noKey = noSound || f.key_confidence === 0;
    if (noKey && (f.key !== undefined || f.mode !== undefined)) items.push(["Key", NO_VALUE]);
    else if (f.key !== undefined && f.key !== null) {
      items.push(["Key", f.mode ? `${f.key} ${f.mode}` : String(f.key)]);
    } else if (f.mode) items.push(["Mode", String(f.mode)]);
    for (const [key, value] of Object.entries(f)) {
      if (key === "key" || key === "mode") continue;
      if (noSound && NO_SOUND_FEATURES.has(key)) {
        items.push([FEATURE_NAMES[key] ? FEATURE_NAMES[key][0] : featureLabel(key), NO_VALUE]);
        continue;
      }
      if (value === null || value === undefined) {
        if (FEATURE_NAMES[key]) items.push([FEATURE_NAMES[key][0], "n/a"]);
        continue;
      }
      if (typeof value === "object") continue;
      if (FEATURE_NAMES[key]) items.push([FEATURE_NAMES[key][0], FEATURE_NAMES[key][1](value)]);
      else {
        items.push([featureLabel(key), isNum(value) ? String(Math.round(value * 100) / 100) : String(value)]);
      }
    }
    // Tempo first, as the issue lists them: tempo, key, mode, loudness.
    const order = ["Tempo", "Key", "Mode", "Loudness"];
    items.sort((a, b) => {
      const ia = order.indexOf(a[0]);
      const ib = order.indexOf(b[0]);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    return items;
  }

  /** The valence–arousal plane: x = valence -1..1, y = arousal -1..1, quadrants labelled. */
  function moodChart(mood) {
    const size = 220;
    const pad = 18;
    const inner = size - pad * 2;
    const x = (v) => pad + ((clamp(v, -1, 1) + 1) / 2) * inner;
    const y = (a) => pad + ((1 - clamp(a, -1, 1)) / 2) * inner;
    const valence = isNum(mood.valence) ? mood.valence : 0;
    const arousal = isNum(mood.arousal) ? mood.arousal : 0;
    const chart = svg("svg", {
      viewBox: `0 0 ${size} ${size}`,
      class: "va-chart",
      role: "img",
      "aria-label": `Valence ${signed(valence)}, arousal ${signed(arousal)}: ${mood.label || "unknown"}`,
    });
    const mid = pad + inner / 2;
    const quads = [
      ["tense", pad, pad, "q-tense"],
      ["happy", mid, pad, "q-happy"],
      ["sad", pad, mid, "q-sad"],
      ["calm", mid, mid, "q-calm"],
    ];
    for (const [, qx, qy, cls] of quads) {
      chart.append(svg("rect", { x: qx, y: qy, width: inner / 2, height: inner / 2, class: `quad ${cls}` }));
    }
    chart.append(svg("line", { x1: pad, y1: mid, x2: size - pad, y2: mid, class: "axis" }));
    chart.append(svg("line", { x1: mid, y1: pad, x2: mid, y2: size - pad, class: "axis" }));
    chart.append(svg("text", { x: size - pad - 2, y: mid + 11, class: "axis-label", "text-anchor": "end" }, "valence →"));
    chart.append(svg("text", { x: mid + 4, y: pad - 6, class: "axis-label" }, "↑ arousal"));
    chart.append(svg("text", { x: pad, y: size - 4, class: "axis-label" }, "−1"));
    chart.append(svg("text", { x: size - pad, y: size - 4, class: "axis-label", "text-anchor": "end" }, "+1"));

    const timeline = Array.isArray(mood.timeline)
      ? mood.timeline.filter((s) => isNum(s.valence) && isNum(s.arousal) && !isRest(s))
      : [];
    // A long piece has hundreds of windows: small dots, and no trail scribbled between them.
    const dense = timeline.length > 60;
    if (timeline.length > 1 && !dense) {
      const points = timeline.map((s) => `${x(s.valence).toFixed(1)},${y(s.arousal).toFixed(1)}`).join(" ");
      chart.append(svg("polyline", { points, class: "trail" }));
    }
    timeline.forEach((segment, index) => {
      chart.append(
        svg(
          "circle",
          { cx: x(segment.valence), cy: y(segment.arousal), r: dense ? 1.5 : 3, class: `trail-dot m-${segment.label || "none"}` },
          svg("title", {}, `${timeSpan(segment.start_seconds, segment.end_seconds, mood.duration_seconds)}: ${segment.label || ""}`),
        ),
      );
      if (index === 0) chart.lastChild.classList.add("first");
    });
    chart.append(
      svg(
        "circle",
        { cx: x(valence), cy: y(arousal), r: 7, class: `point m-${mood.label || "none"}`, "data-valence": valence, "data-arousal": arousal },
        svg("title", {}, `Overall: valence ${signed(valence)}, arousal ${signed(arousal)}`),
      ),
    );
    // The quadrant names last, haloed, so a point near one (arousal +.95 sits on "happy") never hides it.
    for (const [name, qx, qy] of quads) {
      const ty = qy === pad ? qy + 16 : qy + inner / 2 - 8;
      chart.append(svg("text", { x: qx + inner / 4, y: ty, class: "quad-label", "text-anchor": "middle" }, name));
    }
    return chart;
  }

  /** Neighbouring windows with the same label (or all silent) joined into stretches. */
  function moodStretches(segments, total) {
    const stretches = [];
    segments.forEach((segment, index) => {
      const start = isNum(segment.start_seconds) ? segment.start_seconds : (index * total) / segments.length;
      const end = isNum(segment.end_seconds) ? segment.end_seconds : ((index + 1) * total) / segments.length;
      const rest = isRest(segment);
      const kind = rest ? "none" : segment.label || "none";
      const last = stretches[stretches.length - 1];
      if (last && last.kind === kind && last.rest === rest) {
        last.end = end;
        last.windows.push(segment);
      } else {
        stretches.push({ kind, rest, start, end, windows: [segment] });
      }
    });
    return stretches;
  }

  /** What a stretch was: "silence (no mood)", "calm (valence +0.40, arousal −0.31)", "sad (7 parts; …)". */
  function stretchWords(stretch) {
    const count = stretch.windows.length;
    if (stretch.rest) return ["silence", count > 1 ? ` (no mood, ${count} parts)` : " (no mood)"];
    const label = stretch.windows[0].label || "?";
    if (count === 1) {
      const only = stretch.windows[0];
      return [label, ` (valence ${signed(only.valence)}, arousal ${signed(only.arousal)})`];
    }
    const mean = (key) => {
      const values = stretch.windows.map((w) => w[key]).filter(isNum);
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    };
    return [label, ` (${count} parts; average valence ${signed(mean("valence"))}, arousal ${signed(mean("arousal"))})`];
  }

  function moodTimeline(mood) {
    const segments = Array.isArray(mood.timeline) ? mood.timeline : [];
    if (!segments.length) {
      return el("p", { class: "muted no-timeline" }, "No mood timeline: the audio is too short to split into parts.");
    }
    const total =
      (isNum(mood.duration_seconds) && mood.duration_seconds > 0 ? mood.duration_seconds : null) ||
      Math.max(...segments.map((s) => (isNum(s.end_seconds) ? s.end_seconds : 0))) ||
      segments.length;
    const stretches = moodStretches(segments, total);

    // The strip: one part per stretch, however many windows the piece has. Parts too narrow for a
    // separator go without one, so a long piece is colour, not a row of borders.
    const bar = el("div", { class: "timeline-bar", "aria-hidden": "true" });
    for (const stretch of stretches) {
      const width = Math.max(0, ((stretch.end - stretch.start) / total) * 100);
      const [word, detail] = stretchWords(stretch);
      bar.append(
        el(
          "span",
          {
            class: `seg m-${stretch.kind}${width < 1.5 ? " thin" : ""}`,
            style: `width:${width.toFixed(3)}%`,
            title: `${timeSpan(stretch.start, stretch.end, total)}: ${word}${detail}`,
          },
          width > 12 ? word : "",
        ),
      );
    }

    // The same as a list, for reading and for screen readers: a long piece shows its first
    // stretches, and the rest on request.
    const list = el("ol", { class: "timeline-list" });
    const item = (stretch) => {
      const [word, detail] = stretchWords(stretch);
      return el("li", { tabindex: "-1" }, `${timeSpan(stretch.start, stretch.end, total)}: `, el("strong", {}, word), detail);
    };
    list.append(...stretches.slice(0, TIMELINE_LIST_LIMIT).map(item));
    let more = null;
    if (stretches.length > TIMELINE_LIST_LIMIT) {
      more = el("button", { type: "button", class: "ghost small show-all" }, `Show all ${stretches.length} stretches`);
      more.addEventListener("click", () => {
        const rest = stretches.slice(list.children.length).map(item);
        list.append(...rest);
        more.hidden = true;
        if (rest.length) rest[0].focus();
      });
    }
    const joined = stretches.length < segments.length;
    const plural = (count, word, many = `${word}s`) => `${count} ${count === 1 ? word : many}`;
    const summary = `Mood over time as a list (${plural(segments.length, "part")}${joined ? ` in ${plural(stretches.length, "stretch", "stretches")}` : ""})`;
    const axis = el(
      "div",
      { class: "timeline-axis", "aria-hidden": "true" },
      el("span", {}, total >= 60 ? "0:00" : "0 s"),
      el("span", {}, musicTime(total)),
    );
    return el(
      "div",
      { class: "timeline" },
      bar,
      axis,
      el("details", { class: "timeline-details" }, el("summary", {}, summary), list, more),
    );
  }

  function renderMood(container, mood) {
    container.replaceChildren();
    if (!mood || typeof mood !== "object") {
      container.append(el("p", { class: "muted" }, "No mood for this audio."));
      return;
    }
    const label = MOODS.includes(mood.label) ? mood.label : String(mood.label || "unknown");
    const head = el(
      "div",
      { class: "mood-head" },
      el("span", { class: "mood-caption" }, "Mood"),
      el("strong", { class: `mood-label m-${label}`, "data-mood": label }, label),
      mood.quadrant ? el("span", { class: "muted" }, mood.quadrant) : null,
      isNum(mood.confidence) ? el("span", { class: "muted" }, `${Math.round(mood.confidence * 100)}% confident`) : null,
    );
    const numbers = el(
      "p",
      { class: "mood-numbers" },
      `Valence ${signed(mood.valence)} · Arousal ${signed(mood.arousal)}`,
      isNum(mood.duration_seconds)
        ? ` · ${musicTime(mood.duration_seconds)} analysed`
        : "",
    );

    const probs = el("ul", { class: "probs", "aria-label": "Probability of each mood" });
    const probabilities = mood.probabilities && typeof mood.probabilities === "object" ? mood.probabilities : {};
    const names = [...MOODS.filter((m) => m in probabilities), ...Object.keys(probabilities).filter((m) => !MOODS.includes(m))];
    for (const name of names) {
      const p = Number(probabilities[name]) || 0;
      probs.append(
        el(
          "li",
          {},
          el("span", { class: "prob-name" }, name),
          el("span", { class: "prob-bar" }, el("span", { class: `prob-fill m-${name}`, style: `width:${(clamp(p, 0, 1) * 100).toFixed(1)}%` })),
          el("span", { class: "prob-value" }, `${Math.round(p * 100)}%`),
        ),
      );
    }

    const noSound = isNoMood(mood);
    const features = el("dl", { class: "features" });
    for (const [name, value] of featureRows(mood.features, noSound)) features.append(el("div", {}, el("dt", {}, name), el("dd", {}, value)));

    const parts = [
      head,
      noSound
        ? el(
            "p",
            { class: "muted no-mood" },
            "No sound to read a mood from: silence gets even odds, valence and arousal 0 (so it sits at calm) and 0% confidence.",
          )
        : null,
      el(
        "div",
        { class: "mood-body" },
        el("figure", { class: "chart-figure" }, moodChart(mood), el("figcaption", { class: "muted" }, "Valence (x) and arousal (y); dots trace the mood over time.")),
        el("div", { class: "mood-facts" }, numbers, names.length ? probs : null, el("h3", {}, "Features"), features),
      ),
      el("h3", {}, "Mood over time"),
      moodTimeline(mood),
      mood.model || isNum(mood.analysis_seconds)
        ? el(
            "p",
            { class: "muted small model-line" },
            [mood.model ? `Model ${mood.model}` : "", isNum(mood.analysis_seconds) ? `analysed in ${mood.analysis_seconds.toFixed(2)} s` : ""]
              .filter(Boolean)
              .join(" · "),
          )
        : null,
    ];
    container.append(...parts.filter(Boolean));
  }

  // ---------------------------------------------------------------------------------------------
  // Jobs: render, progress, result
  // ---------------------------------------------------------------------------------------------

  const job = { id: null, source: null, token: 0, pollTimer: 0, lastPercent: 0, lastStageIndex: -1, analyze: true };
  /** Jobs this page saw end (id → "done" or "failed"). The recent-jobs list is read from the job
   * records, which the API writes a moment after the final event has reached the page: the list
   * must not call a job the page has just shown failed "running". */
  const seenFinished = new Map();

  function jobPath(id, suffix = "") {
    return `/jobs/${encodeURIComponent(id)}${suffix}`;
  }

  function shareUrl(id) {
    return `${location.origin}/?job=${encodeURIComponent(id)}`;
  }

  function closeStream() {
    if (job.source) {
      job.source.close();
      job.source = null;
    }
    clearTimeout(job.pollTimer);
    job.pollTimer = 0;
  }

  function setStages(stage, failed = false) {
    const index = STAGES.indexOf(stage);
    for (const item of $("stages").children) {
      const i = STAGES.indexOf(item.dataset.stage);
      item.classList.toggle("past", index >= 0 && i < index);
      item.classList.toggle("current", i === index);
      item.classList.toggle("failed", failed && i === index);
      if (i === index) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
  }

  /** Where each stage sits on the overall bar: events carry the percent within their stage. */
  function stageSpan(stage) {
    const withMood = job.analyze !== false;
    const spans = {
      queued: [0, 2],
      converting: [2, 10],
      rendering: withMood ? [10, 70] : [10, 100],
      analyzing: [70, 100],
      done: [100, 100],
    };
    return spans[stage] || null;
  }

  function overallPercent(stage, percent) {
    const span = stageSpan(stage);
    const within = clamp(isNum(percent) ? percent : 0, 0, 100);
    if (!span) return within;
    return span[0] + ((span[1] - span[0]) * within) / 100;
  }

  function setProgress(stage, percent, detail) {
    // The event stream replays a job from its first event: a stage before the one already shown is
    // old news (the text and the stage pills would step back to "Queued").
    const stageIndex = STAGES.indexOf(stage);
    if (stageIndex >= 0 && stageIndex < job.lastStageIndex) return;
    if (stageIndex >= 0) job.lastStageIndex = stageIndex;
    // The bar shows the whole job and never moves backwards; the text shows the current stage.
    const value = stage === "done" ? 100 : Math.max(job.lastPercent, Math.round(overallPercent(stage, percent) * 10) / 10);
    const stagePercent = Math.round(clamp(isNum(percent) ? percent : 0, 0, 100));
    const words = STAGE_WORDS[stage] || String(stage || "Working");
    const bar = $("job-progress");
    bar.value = value;
    bar.setAttribute("aria-valuetext", `${words}, ${Math.round(value)}% of the job`);
    $("job-percent").textContent = `${Math.round(value)}%`;
    job.lastPercent = value;
    setStages(stage);
    $("job-status").textContent =
      stage === "done" ? "Done" : `${words}… ${stagePercent}%${detail ? ` (${detail})` : ""}`;
    $("job-view").dataset.stage = stage || "";
  }

  function resetJobView(id) {
    $("job-empty").hidden = true;
    $("job-view").hidden = false;
    $("job-id").textContent = id;
    const link = $("job-link");
    link.href = `/?job=${encodeURIComponent(id)}`;
    job.lastPercent = 0;
    job.lastStageIndex = -1;
    job.analyze = true;
    $("job-progress").value = 0;
    $("job-percent").textContent = "0%";
    $("job-status").textContent = "Loading the job…";
    $("job-view").dataset.stage = "";
    $("job-view").dataset.status = "";
    showMessage($("job-error"), "");
    $("job-result").hidden = true;
    const audio = $("job-audio");
    audio.pause();
    audio.removeAttribute("src");
    audio.load();
    $("job-mood").replaceChildren();
    $("job-meta").textContent = "";
    $("dl-status").textContent = "";
    setStages("queued");
  }

  async function openJob(id, { push = false, initial = null, reveal = false } = {}) {
    closeStream();
    job.id = id;
    const token = ++job.token;
    if (push) history.pushState({ job: id }, "", `/?job=${encodeURIComponent(id)}`);
    document.title = `Job ${id.slice(0, 8)} · TuneForge`;
    resetJobView(id);
    let current = initial;
    if (!current || !current.status || !("percent" in current)) {
      try {
        current = await api(jobPath(id));
      } catch (error) {
        if (token !== job.token) return;
        failView(describeError(error, `Loading job ${id}`));
        return;
      }
    }
    if (token !== job.token) return;
    applyJob(current, token);
    if (reveal) $("job").scrollIntoView({ block: "start" });
  }

  function applyJob(current, token) {
    if (token !== job.token) return;
    if (current.options && typeof current.options.analyze_mood === "boolean") job.analyze = current.options.analyze_mood;
    if (current.status === "done") {
      showDone(current, token);
    } else if (current.status === "failed") {
      showFailed(current, token);
    } else {
      setProgress(current.stage || current.status || "queued", current.percent || 0, "");
      startStream(current, token);
    }
  }

  function startStream(current, token) {
    const url = (current.links && current.links.events) || jobPath(current.id || job.id, "/events");
    if (!window.EventSource) {
      pollJob(token);
      return;
    }
    const source = new EventSource(url);
    job.source = source;
    const handle = (type, event) => {
      if (token !== job.token) return;
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      const kind = type === "message" ? data.event : type;
      if (kind === "progress") {
        setProgress(data.stage, data.percent, data.detail);
      } else if (kind === "done") {
        closeStream();
        setProgress("done", 100, "");
        // Fetch the whole job (links, timings); fall back to the event's result.
        api(jobPath(job.id))
          .then((full) => showDone(full && full.result ? full : { ...full, status: "done", result: data.result }, token))
          .catch(() => showDone({ id: job.id, status: "done", result: data.result, links: current.links }, token));
      } else if (kind === "failed") {
        closeStream();
        showFailed(data, token);
      }
    };
    for (const type of ["progress", "done", "failed", "message"]) {
      source.addEventListener(type, (event) => handle(type, event));
    }
    let errors = 0;
    source.addEventListener("open", () => {
      errors = 0;
    });
    source.onerror = () => {
      if (token !== job.token || job.source !== source) return;
      errors += 1;
      // EventSource reconnects by itself (resuming from the last event id); if the server refused
      // the stream, or it keeps breaking, ask the job itself instead.
      if (source.readyState === EventSource.CLOSED || errors >= 3) {
        closeStream();
        pollJob(token);
      }
    };
  }

  async function pollJob(token, attempt = 0) {
    if (token !== job.token) return;
    let current;
    try {
      current = await api(jobPath(job.id));
    } catch (error) {
      if (token !== job.token) return;
      failView(describeError(error, "Following the job"));
      return;
    }
    if (token !== job.token) return;
    if (current.status === "done") showDone(current, token);
    else if (current.status === "failed") showFailed(current, token);
    else {
      setProgress(current.stage || current.status, current.percent || 0, "");
      job.pollTimer = setTimeout(() => pollJob(token, attempt + 1), Math.min(2000, 400 + attempt * 100));
    }
  }

  function failView(message) {
    $("job-view").dataset.status = "failed";
    $("job-status").textContent = "Failed";
    setStages("failed", true);
    showMessage($("job-error"), message);
  }

  /** The stage a failed job stopped in, or null when nothing tells. The `failed` event names it; a
   * job read back (GET /jobs/{id}) has the stage "failed", but its timings time every stage it
   * entered (up to its end), so the last of them is where it stopped: rendered, then failed while
   * analysing mood. A job refused before any stage began work on it has none. */
  function failedStage(failure) {
    const stage = failure && failure.stage;
    if (WORK_STAGES.includes(stage)) return stage;
    const timings = failure && failure.timings && typeof failure.timings === "object" ? failure.timings : null;
    if (!timings) return null;
    return [...WORK_STAGES].reverse().find((name) => isNum(timings[name])) || null;
  }

  /** A failed job: `failure` is the `failed` event or the job as GET /jobs/{id} returns it. */
  function showFailed(failure, token) {
    if (token !== job.token) return;
    const error = failure && failure.error;
    const message = error && error.message ? error.message : "the job failed without a message";
    const code = error && error.code ? ` (${error.code})` : "";
    const stage = failedStage(failure);
    const words = stage ? `Failed while ${STAGE_WORDS[stage].toLowerCase()}` : "Failed";
    setStages(stage || "failed", true);
    $("job-view").dataset.status = "failed";
    // The job is over: the bar fills, in the error colour, and says so, rather than stopping where
    // the last progress event left it (60 % read as a job still half-way).
    const bar = $("job-progress");
    bar.value = 100;
    bar.setAttribute("aria-valuetext", words);
    job.lastPercent = 100;
    $("job-percent").textContent = "Failed";
    $("job-status").textContent = words;
    showMessage($("job-error"), `The render failed${code}: ${message}`);
    seenFinished.set(failure.id || job.id, "failed");
    loadJobs();
    // The final event replayed from the job's record (a reconnect after the end) names no stage:
    // the record's timings may.
    if (!stage && !failure.timings) {
      api(jobPath(job.id))
        .then((full) => {
          if (full && full.status === "failed" && failedStage(full)) showFailed(full, token);
        })
        .catch(() => {
          /* the words stay "Failed" */
        });
    }
  }

  async function showDone(current, token) {
    if (token !== job.token) return;
    const result = current.result || {};
    const links = current.links || {};
    const audioUrl = links.audio || jobPath(current.id || job.id, "/audio");
    const midiUrl = links.midi || jobPath(current.id || job.id, "/midi");
    setProgress("done", 100, "");
    setStages("done");
    $("job-view").dataset.status = "done";
    seenFinished.set(current.id || job.id, "done");
    const started = toMillis(current.started_at);
    const finished = toMillis(current.finished_at);
    const took = isNum(started) && isNum(finished) ? (finished - started) / 1000 : null;
    const cached = current.from_cache ? " (from the cache)" : "";
    $("job-status").textContent = isNum(took) && took >= 0 ? `Done: rendered in ${took.toFixed(1)} s${cached}` : `Done${cached}`;
    $("job-result").hidden = false;
    const audio = $("job-audio");
    if (audio.getAttribute("src") !== audioUrl) {
      audio.src = audioUrl;
      audio.load();
    }
    const shortId = String(current.id || job.id).slice(0, 8);
    for (const format of ["wav", "flac", "ogg"]) {
      const link = $(`dl-${format}`);
      link.href = `${audioUrl}${audioUrl.includes("?") ? "&" : "?"}format=${format}`;
      link.setAttribute("download", `tuneforge-${shortId}.${format}`);
      link.classList.toggle("rendered", result.format === format);
    }
    $("dl-midi").href = midiUrl;
    $("dl-midi").setAttribute("download", `tuneforge-${shortId}.mid`);

    const meta = [];
    if (isNum(result.duration_seconds)) meta.push(musicTime(result.duration_seconds));
    if (result.format) meta.push(String(result.format).toUpperCase());
    if (isNum(result.sample_rate_hz)) meta.push(`${result.sample_rate_hz} Hz`);
    if (result.audio && isNum(result.audio.size_bytes)) meta.push(`${(result.audio.size_bytes / 1024).toFixed(0)} KB`);
    const timings = current.timings && typeof current.timings === "object" ? current.timings : null;
    if (timings) {
      const parts = Object.entries(timings)
        .filter(([, seconds]) => isNum(seconds))
        .map(([stage, seconds]) => `${stage} ${seconds.toFixed(2)} s`);
      if (parts.length) meta.push(parts.join(", "));
    }
    $("job-meta").textContent = meta.join(" · ");
    // Notes the SoundFont has no sound for (outside an instrument's keys) are silent in the audio.
    const silent = Array.isArray(result.silent_notes) ? result.silent_notes : [];
    const warning = $("job-silent");
    warning.replaceChildren(...silent.map((part) => el("li", {}, String(part.message))));
    warning.hidden = silent.length === 0;

    let mood = result.mood;
    if (!mood) {
      try {
        mood = await api(links.mood || jobPath(current.id || job.id, "/mood"));
      } catch (error) {
        if (token !== job.token) return;
        const box = $("job-mood");
        box.replaceChildren(el("p", { class: "muted" }, `No mood for this job: ${error.message}`));
        loadJobs();
        return;
      }
    }
    if (token !== job.token) return;
    renderMood($("job-mood"), mood);
    loadJobs();
  }

  function closeJob() {
    closeStream();
    job.id = null;
    job.token += 1;
    $("job-view").hidden = true;
    $("job-empty").hidden = false;
    document.title = "TuneForge: notes to audio, with its mood";
  }

  async function render() {
    showMessage($("compose-error"), "");
    const tempoInput = $("tempo");
    const tempo = Number(tempoInput.value);
    if (!isNum(tempo) || tempo < 20 || tempo > 400) {
      showMessage($("compose-error"), "Tempo must be a number from 20 to 400 bpm.");
      tempoInput.focus();
      return;
    }
    state.tempo = tempo;
    const score = buildScore();
    if (!score.tracks.length) {
      showMessage($("compose-error"), "The grid is empty: add at least one note (click a cell) before rendering.");
      return;
    }
    const button = $("render");
    button.disabled = true;
    button.textContent = "Sending…";
    try {
      const body = { ...score, options: renderOptions() };
      const reply = await api("/jobs", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!reply || !reply.id) throw new Error("the server did not return a job id");
      await openJob(reply.id, { push: true, initial: null });
      loadJobs();
      $("job").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showMessage($("compose-error"), describeError(error, "Rendering"));
    } finally {
      button.disabled = false;
      button.textContent = "Render audio";
    }
  }

  $("render").addEventListener("click", render);

  $("copy-link").addEventListener("click", async () => {
    if (!job.id) return;
    const url = shareUrl(job.id);
    const button = $("copy-link");
    try {
      await navigator.clipboard.writeText(url);
      button.textContent = "Copied";
    } catch {
      // No clipboard permission: select the link text so it can be copied by hand.
      window.prompt("Copy this link:", url);
    }
    setTimeout(() => {
      button.textContent = "Copy link";
    }, 1500);
  });

  // The player could not load the audio: say why, in the server's words when it gave some.
  $("job-audio").addEventListener("error", async () => {
    const audio = $("job-audio");
    const src = audio.getAttribute("src");
    if (!src || job.id === null || $("job-view").dataset.status !== "done") return;
    const token = job.token;
    let message = "the browser could not play this audio";
    try {
      const response = await fetch(src, { headers: { accept: "application/json" } });
      if (!response.ok) {
        const body = await readBody(response);
        message = `${errorText(body, response.status, response.statusText)} (${response.status})`;
      }
    } catch (error) {
      message = `could not reach the server (${error.message || error})`;
    }
    if (token === job.token) showMessage($("job-error"), `The audio could not be loaded: ${message}.`);
  });

  // Downloads: fetch first, so that a format made on demand can take its time and a refusal is
  // shown in words instead of saving an error page as a sound file.
  for (const format of ["wav", "flac", "ogg", "midi"]) {
    const link = $(`dl-${format}`);
    link.addEventListener("click", async (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0 || !link.href) return;
      event.preventDefault();
      if (link.getAttribute("aria-busy") === "true") return;
      const name = link.getAttribute("download") || `tuneforge.${format}`;
      const label = link.textContent;
      const token = job.token;
      link.setAttribute("aria-busy", "true");
      link.textContent = `${label}…`;
      $("dl-status").textContent = `Preparing ${format.toUpperCase()}…`;
      try {
        const response = await fetch(link.href);
        if (!response.ok) {
          const body = await readBody(response);
          throw new ApiError(errorText(body, response.status, response.statusText), response.status, body);
        }
        const blob = await response.blob();
        const url = URL.createObjectURL(blob);
        const anchor = el("a", { href: url, download: name, hidden: true });
        document.body.append(anchor);
        anchor.click();
        anchor.remove();
        setTimeout(() => URL.revokeObjectURL(url), 30_000);
        if (token === job.token) $("dl-status").textContent = `Downloaded ${name}`;
      } catch (error) {
        if (token === job.token) {
          $("dl-status").textContent = "";
          showMessage($("job-error"), describeError(error, `Downloading ${format.toUpperCase()}`));
        }
      } finally {
        link.removeAttribute("aria-busy");
        link.textContent = label;
      }
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Recent jobs
  // ---------------------------------------------------------------------------------------------

  let jobsLoading = null;
  let jobsAgain = false;
  /** Reloads of the list while its records lag behind what the page saw (a few, then it stops). */
  const jobsCatchUp = { timer: 0, tries: 0 };

  function timeAgo(value) {
    const when = toMillis(value);
    if (!isNum(when)) return "";
    const seconds = Math.round((Date.now() - when) / 1000);
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return new Date(when).toLocaleDateString();
  }

  async function loadJobs() {
    if (jobsLoading) {
      jobsAgain = true; // the list in flight may predate what changed: load once more after it
      return jobsLoading;
    }
    jobsLoading = (async () => {
      const list = $("jobs-list");
      try {
        const body = await api("/jobs?limit=20");
        showMessage($("jobs-error"), "");
        const jobs = body && Array.isArray(body.jobs) ? body.jobs : [];
        list.replaceChildren();
        if (!jobs.length) {
          list.append(el("li", { class: "muted empty" }, "No jobs yet."));
          return;
        }
        let behind = false;
        for (const item of jobs) {
          if (!item || !item.id) continue;
          const seen = seenFinished.get(item.id);
          const unfinished = item.status === "queued" || item.status === "running";
          const status = seen && unfinished ? seen : item.status;
          if (status !== item.status) behind = true;
          const mood = item.result && item.result.mood && item.result.mood.label;
          const duration = item.result && isNum(item.result.duration_seconds) ? musicTime(item.result.duration_seconds) : "";
          const link = el(
            "a",
            { href: `/?job=${encodeURIComponent(item.id)}`, class: "job-open", "data-job": item.id, "aria-label": `Open job ${item.id.slice(0, 8)}, ${status}` },
            el("code", {}, item.id.slice(0, 8)),
          );
          list.append(
            el(
              "li",
              { class: item.id === job.id ? "current" : "" },
              link,
              el("span", { class: `badge s-${status}` }, status),
              mood ? el("span", { class: `badge mood-badge m-${mood}` }, mood) : null,
              el("span", { class: "muted small" }, [duration, timeAgo(item.created_at)].filter(Boolean).join(" · ")),
            ),
          );
        }
        // Load the list again shortly, for the records' own words (a done job's length and mood).
        clearTimeout(jobsCatchUp.timer);
        if (behind && jobsCatchUp.tries < 5) {
          jobsCatchUp.tries += 1;
          jobsCatchUp.timer = setTimeout(loadJobs, 1000);
        } else if (!behind) jobsCatchUp.tries = 0;
      } catch (error) {
        showMessage($("jobs-error"), describeError(error, "Loading recent jobs"));
      }
    })();
    try {
      await jobsLoading;
    } finally {
      jobsLoading = null;
    }
    if (jobsAgain) {
      jobsAgain = false;
      await loadJobs();
    }
  }

  $("jobs-list").addEventListener("click", (event) => {
    const link = event.target instanceof Element ? event.target.closest("a.job-open") : null;
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    openJob(link.dataset.job, { push: true });
    $("job").scrollIntoView({ behavior: "smooth", block: "start" });
  });
  $("refresh-jobs").addEventListener("click", loadJobs);

  // ---------------------------------------------------------------------------------------------
  // Upload an audio (or MIDI) file for its mood
  // ---------------------------------------------------------------------------------------------

  /** The MIDI file last analysed, offered for rendering as a job (null when the upload was audio). */
  let uploadedMidi = null;

  /** A Standard MIDI File (or an RIFF .rmi wrapping one), told by its first bytes, else by its name. */
  async function isMidiFile(file) {
    try {
      const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
      const text = String.fromCharCode(...head);
      if (text.startsWith("MThd") || (text.startsWith("RIFF") && text.slice(8, 12) === "RMID")) return true;
    } catch {
      /* unreadable here: let the name decide, and the server have the last word */
    }
    return /\.(midi?|rmi)$/i.test(file.name) || /midi/i.test(file.type);
  }

  $("upload-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("mood-file");
    const file = input.files && input.files[0];
    showMessage($("upload-error"), "");
    $("upload-mood").replaceChildren();
    $("upload-midi").hidden = true;
    uploadedMidi = null;
    if (!file) {
      showMessage($("upload-error"), "Choose an audio or MIDI file first.");
      input.focus();
      return;
    }
    const button = $("upload-submit");
    button.disabled = true;
    const midi = await isMidiFile(file);
    $("upload-status").textContent = midi ? `Rendering and analysing ${file.name}…` : `Analysing ${file.name}…`;
    try {
      const form = new FormData();
      form.append("file", file, file.name);
      const mood = await api("/mood", { method: "POST", body: form });
      $("upload-status").textContent = isNoMood(mood)
        ? `${file.name} is silent (or nearly): it has no mood`
        : `Mood of ${file.name}: ${mood && mood.label ? mood.label : "unknown"}`;
      renderMood($("upload-mood"), mood);
      if (midi) {
        uploadedMidi = file;
        $("upload-midi").hidden = false;
      }
    } catch (error) {
      $("upload-status").textContent = "";
      showMessage($("upload-error"), describeError(error, `Analysing ${file.name}`));
    } finally {
      button.disabled = false;
    }
  });

  // Another file chosen: the offer to render the analysed MIDI file would now read as this one's.
  $("mood-file").addEventListener("change", () => {
    $("upload-midi").hidden = true;
    uploadedMidi = null;
  });

  // An uploaded MIDI file rendered as a job, like the grid: followed live, then played and downloaded.
  $("upload-render").addEventListener("click", async () => {
    const file = uploadedMidi;
    if (!file) return;
    const button = $("upload-render");
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "Sending…";
    showMessage($("upload-error"), "");
    try {
      const options = renderOptions();
      const query = new URLSearchParams(Object.entries(options).map(([key, value]) => [key, String(value)]));
      const reply = await api(`/jobs?${query}`, { method: "POST", headers: { "content-type": "audio/midi" }, body: file });
      if (!reply || !reply.id) throw new Error("the server did not return a job id");
      await openJob(reply.id, { push: true, initial: null });
      loadJobs();
      $("job").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (error) {
      showMessage($("upload-error"), describeError(error, `Rendering ${file.name}`));
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  });

  // ---------------------------------------------------------------------------------------------
  // URL: /?job=<id> or #job=<id>
  // ---------------------------------------------------------------------------------------------

  function jobFromUrl() {
    const query = new URLSearchParams(location.search).get("job");
    if (query) return query;
    const hash = new URLSearchParams(location.hash.replace(/^#/, "")).get("job");
    return hash || null;
  }

  /** Open the job the URL names; `reveal`: scroll to it (someone who opened a job's link came for
   * the job, not for the empty grid above it). */
  function followUrl({ reveal = false } = {}) {
    const id = jobFromUrl();
    if (id) {
      if (id !== job.id) openJob(id, { reveal });
    } else if (job.id) closeJob();
  }

  window.addEventListener("popstate", () => followUrl());
  window.addEventListener("hashchange", () => followUrl());

  // ---------------------------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------------------------

  loadComposition();
  fillInstruments(GM_FALLBACK);
  syncControls();
  buildGrid();
  loadInstruments();
  loadJobs();
  followUrl({ reveal: true });

  // For tests and the curious: pure functions and state, read-only use intended.
  window.TuneForge = Object.freeze({ buildScore, pitchName, errorText, rows, state, openJob, renderMood });
})();
