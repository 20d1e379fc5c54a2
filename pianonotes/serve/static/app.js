// pianonotes serve: the page. No framework, no network beyond this server.
"use strict";

const params = new URLSearchParams(location.search);
const TOKEN = params.get("token");
const Q = TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "";
const NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];
const MIN_PITCH = 21, MAX_PITCH = 108, ROLL_SECONDS = 8;
const $ = (id) => document.getElementById(id);
const pitchName = (p) => NAMES[p % 12] + (Math.floor(p / 12) - 1);
const isBlack = (p) => [1, 3, 6, 8, 10].includes(p % 12);

function api(path) { return path + Q; }

async function getJSON(path, opts) {
  const r = await fetch(api(path), opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = { error: `${r.status} ${r.statusText}` }; }
  if (!r.ok) throw new Error(data && data.error ? data.error : `${r.status} ${r.statusText}`);
  return data;
}

// ---------------------------------------------------------------------------------------- keyboard
const keys = new Map();
function buildKeyboard() {
  const kb = $("keyboard");
  const whites = [];
  for (let p = MIN_PITCH; p <= MAX_PITCH; p++) if (!isBlack(p)) whites.push(p);
  const w = 100 / whites.length;
  let wi = 0;
  for (let p = MIN_PITCH; p <= MAX_PITCH; p++) {
    const el = document.createElement("div");
    el.className = "key " + (isBlack(p) ? "black" : "white");
    el.dataset.pitch = p;
    el.title = pitchName(p);
    if (isBlack(p)) {
      el.style.left = `calc(${wi * w}% - ${w * 0.3}%)`;
      el.style.width = `${w * 0.6}%`;
    } else {
      el.style.left = `${wi * w}%`;
      el.style.width = `${w}%`;
      wi++;
    }
    kb.appendChild(el);
    keys.set(p, el);
  }
}

function showKeys(active, probs) {
  const on = new Map(active.map(([p, , c]) => [p, c]));
  for (const [p, el] of keys) {
    const c = on.get(p);
    el.classList.toggle("on", c !== undefined);
    el.classList.toggle("prob", c === undefined && probs && probs[p - MIN_PITCH] >= 30);
    el.style.opacity = c !== undefined ? String(0.45 + 0.55 * Math.min(1, c)) : "";
  }
  const names = active.slice().sort((a, b) => a[0] - b[0]).map(([p, , c]) => `${pitchName(p)} ${Math.round(c * 100)}%`);
  $("sounding").textContent = names.join("  ");
  $("sounding").dataset.pitches = active.map((a) => a[0]).sort((a, b) => a - b).join(",");
}

// -------------------------------------------------------------------------------------- piano roll
function drawRoll(canvas, notes, active, now, span) {
  const ctx = canvas.getContext("2d");
  const W = canvas.width = canvas.clientWidth * devicePixelRatio;
  const H = canvas.height = (canvas.clientHeight || 160) * devicePixelRatio;
  ctx.clearRect(0, 0, W, H);
  const t0 = span ? 0 : Math.max(0, now - ROLL_SECONDS);
  const t1 = span ? Math.max(span, 1) : t0 + ROLL_SECONDS;
  let lo = 36, hi = 96;
  for (const n of notes) { lo = Math.min(lo, n[2] - 2); hi = Math.max(hi, n[2] + 2); }
  for (const a of active) { lo = Math.min(lo, a[0] - 2); hi = Math.max(hi, a[0] + 2); }
  const x = (t) => (t - t0) / (t1 - t0) * W;
  const rowH = H / (hi - lo + 1);
  const y = (p) => (hi - p) * rowH;
  ctx.fillStyle = "#f0f0f0";
  for (let p = lo; p <= hi; p++) if (isBlack(p)) ctx.fillRect(0, y(p), W, rowH);
  ctx.fillStyle = "#2b6cb0";
  for (const n of notes) {
    if (n[1] < t0 || n[0] > t1) continue;
    ctx.globalAlpha = 0.4 + 0.6 * Math.min(1, (n[3] || 80) / 127);
    ctx.fillRect(x(n[0]), y(n[2]), Math.max(2, x(n[1]) - x(n[0])), Math.max(2, rowH - 1));
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#e53e3e";
  for (const [p, onset] of active) ctx.fillRect(x(onset), y(p), Math.max(2, x(now) - x(onset)), Math.max(2, rowH - 1));
}

// ------------------------------------------------------------------------------------------ record
const MINE = new Set(JSON.parse(sessionStorage.getItem("pianonotes-takes") || "[]"));
function remember(id) { MINE.add(id); sessionStorage.setItem("pianonotes-takes", JSON.stringify([...MINE])); }

const live = { ws: null, ctx: null, stream: null, node: null, ready: false, rate: 48000, sent: 0,
               captures: [], notes: [], active: [], elapsed: 0, latencies: [], take: null, stopping: false };
window.pnStats = live;

function captureTime(seconds) {
  // when the sample at `seconds` (client clock) was captured: from the blocks sent
  const s = seconds * live.rate;
  for (const [end, t] of live.captures) if (s < end) return t - (end - s) / live.rate * 1000;
  return null;
}

function median(xs) { const s = xs.slice().sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : null; }
function p95(xs) { const s = xs.slice().sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] : null; }

function setStatus(text, error) {
  $("rec-status").textContent = text;
  $("rec-status").className = error ? "error" : "muted";
}

async function startRecording() {
  $("rec-start").disabled = true;
  setStatus("opening the microphone...");
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: false,
      noiseSuppression: false, autoGainControl: false, channelCount: 1 } });
    live.ctx = new AudioContext({ latencyHint: "interactive" });
    await live.ctx.audioWorklet.addModule("static/worklet.js");
  } catch (e) {
    setStatus("cannot use the microphone: " + e.message, true);
    $("rec-start").disabled = false;
    return;
  }
  Object.assign(live, { ready: false, rate: live.ctx.sampleRate, sent: 0, captures: [], notes: [], active: [],
                        elapsed: 0, latencies: [], take: null, key: null, stopping: false, maxLevel: -120,
                        pending: [], received: 0, retries: 0, reconnects: 0 });
  const src = live.ctx.createMediaStreamSource(live.stream);
  live.node = new AudioWorkletNode(live.ctx, "pianonotes-capture");
  src.connect(live.node);
  live.node.connect(live.ctx.destination); // the worklet writes silence; connecting keeps it pulled
  live.node.port.onmessage = (ev) => {
    if (!live.take || live.stopping) return; // before the server's first "ready": not part of the take
    const start = live.sent;
    live.sent += ev.data.byteLength / 4;
    live.captures.push([live.sent, performance.now()]);
    if (live.captures.length > 3000) live.captures.splice(0, 1000);
    live.pending.push([start, ev.data]); // kept until the server says it has it
    if (live.pending.length > 3000) live.pending.shift(); // a minute at 20 ms: older audio is lost
    if (live.ready && live.ws.readyState === WebSocket.OPEN) live.ws.send(ev.data);
  };
  openSocket(false);
  $("rec-stop").disabled = false;
}

function openSocket(resume) {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = live.ws = new WebSocket(`${proto}//${location.host}/ws/record${Q}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => ws.send(JSON.stringify(resume ? { type: "resume", take: live.take, key: live.key }
                                                  : { type: "start", sample_rate: live.rate, format: "f32le" }));
  ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
  ws.onclose = () => {
    if (ws !== live.ws) return;
    live.ready = false;
    if (live.stopping || !live.take || live.retries >= 15) {
      if (!live.stopping) setStatus("connection lost; the take so far is saved on the server (see Takes)", true);
      endCapture();
      refreshTakes();
      return;
    }
    live.retries++;
    setStatus(`connection lost; reconnecting (${live.retries})...`, true);
    setTimeout(() => openSocket(true), 1000);
  };
}

function acknowledge(received) {
  live.received = received;
  while (live.pending.length && live.pending[0][0] + live.pending[0][1].byteLength / 4 <= received) live.pending.shift();
}

function endCapture() {
  if (live.node) { live.node.port.onmessage = null; live.node.disconnect(); live.node = null; }
  if (live.stream) { live.stream.getTracks().forEach((t) => t.stop()); live.stream = null; }
  if (live.ctx) { live.ctx.close(); live.ctx = null; }
  live.ready = false;
  $("rec-stop").disabled = true;
  $("rec-start").disabled = false;
}

function stopRecording() {
  live.stopping = true;
  $("rec-stop").disabled = true;
  if (live.node) { live.node.port.onmessage = null; }
  if (live.ws && live.ws.readyState === WebSocket.OPEN && live.ready) {
    setStatus("stopping: building the score...");
    live.ws.send(JSON.stringify({ type: "stop" }));
  } else {
    setStatus("stopped while disconnected; the take so far is saved on the server (see Takes)", true);
    endCapture();
  }
}

function onMessage(m) {
  if (m.type === "ready") {
    live.take = m.take;
    live.key = m.key;
    remember(m.take);
    if (m.resumed) { // send again what the server did not get
      acknowledge(m.received);
      for (const [, buf] of live.pending) live.ws.send(buf);
      live.reconnects++;
      live.retries = 0;
    }
    live.ready = true;
    setStatus(`recording take ${m.take} (${live.rate / 1000} kHz)` + (m.resumed ? ", reconnected" : ""));
  } else if (m.type === "update") {
    acknowledge(m.received);
    live.elapsed = m.elapsed;
    live.active = m.active;
    live.maxLevel = Math.max(live.maxLevel, m.level_db);
    for (const n of m.notes) live.notes.push(n);
    const newStarts = m.starts;
    requestAnimationFrame(() => {
      showKeys(m.active, m.keys);
      const now = performance.now();
      for (const s of newStarts) {
        const t = captureTime(s[0]);
        if (t !== null) live.latencies.push(now - t);
      }
      const med = median(live.latencies.slice(-100));
      $("latency").textContent = med === null ? "--" : `${Math.round(med)} ms`;
      $("latency").dataset.median = med === null ? "" : String(med);
      $("level-db").textContent = `${Math.round(m.level_db)} dB`;
      $("level-bar").style.width = `${Math.max(0, Math.min(100, (m.level_db + 60) / 60 * 100))}%`;
      const mins = Math.floor(m.elapsed / 60), secs = (m.elapsed % 60).toFixed(1).padStart(4, "0");
      $("elapsed").textContent = `${mins}:${secs}`;
      $("n-notes").textContent = String(m.n_notes);
      $("dropped").textContent = String(m.dropped);
      if (m.warning && live.warning !== m.warning) {  // shown once, while the take goes on
        live.warning = m.warning;
        setStatus(`warning: ${m.warning}`, true);
      }
    });
  } else if (m.type === "done") {
    setStatus(`saved take ${m.take.id}: ${m.take.notes} notes` +
      (live.latencies.length ? `; latency median ${Math.round(median(live.latencies))} ms, p95 ${Math.round(p95(live.latencies))} ms` : ""));
    $("latency").dataset.p95 = String(p95(live.latencies));
    showKeys([], null);
    showResult(m.take);
    refreshTakes();
  } else if (m.type === "error") {
    setStatus(m.message, true);
    if (!live.ready) live.retries = 99; // a refused resume: the take is saved, stop trying
  }
}

function animate() {
  if (live.ready) {
    drawRoll($("roll"), live.notes, live.active, live.elapsed, 0);
  }
  requestAnimationFrame(animate);
}

// ------------------------------------------------------------------------------------------ upload
let INFO = null;

function uploadFile(file) {
  const li = document.createElement("li");
  const name = document.createElement("span");
  name.textContent = file.name;
  const bar = document.createElement("progress");
  bar.max = 1; bar.value = 0;
  const msg = document.createElement("span");
  msg.className = "muted";
  msg.textContent = "uploading";
  li.append(name, bar, msg);
  $("uploads").appendChild(li);
  if (INFO && file.size > INFO.max_upload_bytes) {
    msg.className = "error";
    msg.textContent = `${file.name} is ${(file.size / 1e6).toFixed(0)} MB; the upload limit is ${INFO.max_upload_bytes / 1e6} MB`;
    li.classList.add("failed");
    return;
  }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", api("api/upload"));
  xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
  xhr.upload.onload = () => { bar.value = 1; msg.textContent = "transcribing..."; };
  xhr.onload = () => {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (e) { data = { error: `${xhr.status} ${xhr.statusText}` }; }
    if (xhr.status === 200) {
      msg.className = "ok";
      msg.textContent = `${data.notes} notes`;
      remember(data.id);
      showResult(data);
      refreshTakes();
    } else {
      msg.className = "error";
      msg.textContent = data.error || `${xhr.status} ${xhr.statusText}`;
      li.classList.add("failed");
    }
  };
  xhr.onerror = () => { msg.className = "error"; msg.textContent = "upload failed: the server closed the connection"; };
  xhr.send(file);
}

function setupUpload() {
  const drop = $("drop");
  $("files").addEventListener("change", (e) => { for (const f of e.target.files) uploadFile(f); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    for (const f of e.dataTransfer.files) uploadFile(f);
  });
}

// ------------------------------------------------------------------------------------------ result
const LABELS = { mid: "MIDI", musicxml: "MusicXML", pdf: "PDF", svg: "SVG", csv: "CSV", json: "JSON" };

async function showResult(take) {
  if (!take.notes_list) {
    try { take = await getJSON(`api/takes/${take.id}`); } catch (e) { return; }
  }
  $("result").hidden = false;
  $("result").dataset.take = take.id;
  $("result-title").textContent = take.title;
  const errs = Object.entries(take.errors || {}).map(([f, e]) => `${f}: ${e}`);
  $("result-info").textContent = `${take.notes} notes, ${(take.seconds || 0).toFixed(1)} s` +
    (take.interrupted ? " (connection dropped)" : "") + (errs.length ? "; " + errs.join("; ") : "");
  const dl = $("downloads");
  dl.textContent = "";
  for (const f of take.downloads) {
    const a = document.createElement("a");
    a.href = api(`api/takes/${take.id}/download/${f}`);
    a.textContent = LABELS[f] || f;
    a.id = "dl-" + f;
    a.setAttribute("download", "");
    dl.appendChild(a);
  }
  const span = Math.max(1, ...take.notes_list.map((n) => n[1]));
  drawRoll($("result-roll"), take.notes_list, [], span, span);
  const score = $("score");
  score.textContent = "";
  for (let i = 1; i <= take.pages; i++) {
    const img = document.createElement("img");
    img.alt = `score page ${i}`;
    img.src = api(`api/takes/${take.id}/score/${i}`);
    score.appendChild(img);
  }
}

// ------------------------------------------------------------------------------------------- takes
async function refreshTakes() {
  let data;
  try { data = await getJSON("api/takes"); } catch (e) { return; }
  const body = document.querySelector("#takes tbody");
  body.textContent = "";
  for (const t of data.takes) {
    const tr = document.createElement("tr");
    tr.dataset.take = t.id;
    tr.dataset.status = t.status;
    if (MINE.has(t.id)) tr.classList.add("mine");
    const cells = [t.title, t.kind, t.status + (t.interrupted ? " (dropped)" : ""),
                   t.seconds != null ? `${Number(t.seconds).toFixed(1)} s` : "", t.notes != null ? String(t.notes) : ""];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.appendChild(td); }
    const td = document.createElement("td");
    if (t.downloads.length) {
      const b = document.createElement("button"); b.textContent = "open"; b.onclick = () => showResult(t); td.appendChild(b);
    }
    if (t.recoverable) {
      const b = document.createElement("button"); b.textContent = "recover";
      b.onclick = async () => {
        b.disabled = true;
        try { showResult(await getJSON(`api/takes/${t.id}/recover`, { method: "POST" })); } catch (e) { alert(e.message); }
        refreshTakes();
      };
      td.appendChild(b);
    }
    tr.appendChild(td);
    body.appendChild(tr);
  }
}

async function init() {
  buildKeyboard();
  setupUpload();
  $("rec-start").onclick = startRecording;
  $("rec-stop").onclick = stopRecording;
  try {
    const info = INFO = await getJSON("api/info");
    $("model").textContent = `model ${info.model} · ${info.sample_rate / 1000} kHz · look-ahead ${Math.round(info.lookahead_ms)} ms`;
  } catch (e) {
    $("model").textContent = e.message;
    $("model").className = "error";
  }
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    $("rec-start").disabled = true;
    setStatus("recording needs a secure page (https or localhost); uploads still work", true);
  }
  refreshTakes();
  requestAnimationFrame(animate);
}

init();
