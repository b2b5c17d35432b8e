// The ralmspec page: asks the server's own API (POST /v1/completions streamed with
// "retrieval": {"events": true}, GET /health, /metrics, /v1/passages/{doc}) and draws what
// comes back. No framework, no build step; embedded in the server binary.
"use strict";

const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function getJson(path) {
  const res = await fetch(path, { headers: headers() });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error((body && body.error && body.error.message) || res.statusText);
  return body;
}

function setStatus(text) {
  $("status").textContent = text;
}

// --- the request ------------------------------------------------------------------------

/// The retrieval settings from the form (`engine` overrides the form's engine).
function retrieval(engine) {
  const r = { retriever: $("retriever").value || undefined, engine, events: true };
  if (engine === "spec") {
    const stride = $("stride").value.trim();
    r.stride = /^\d+$/.test(stride) ? Number(stride) : stride;
    r.prefetch = Number($("prefetch").value);
    r.async = $("async").checked;
  }
  return r;
}

/// Streams one completion; calls `on.text(text, sources)` per chunk and `on.trace(event)` per
/// speculation event. Resolves with the finish reason.
async function stream(question, engine, on) {
  const body = {
    model: modelName,
    prompt: question,
    max_tokens: Number($("max-tokens").value),
    stream: true,
    retrieval: retrieval(engine),
  };
  const res = await fetch("/v1/completions", {
    method: "POST",
    headers: headers(),
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const e = await res.json().catch(() => null);
    throw new Error((e && e.error && e.error.message) || res.statusText);
  }
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = null;
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (!data || data === "[DONE]") continue;
      const json = JSON.parse(data);
      if (json.error) throw new Error(json.error.message);
      if (name === "ralmspec.trace") {
        on.trace(json);
      } else if (json.choices && json.choices.length) {
        const choice = json.choices[0];
        if (choice.text) on.text(choice.text, json.sources || []);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  }
  return finish;
}

// --- the answer and its sources ----------------------------------------------------------

/// A colour per document, stable across the page.
function docColor(doc) {
  const hue = (doc * 137.508) % 360;
  return `hsl(${hue.toFixed(0)} 70% 85%)`;
}

const passages = new Map();

async function showPassage(doc) {
  const retriever = $("retriever").value;
  const key = retriever + "/" + doc;
  try {
    if (!passages.has(key)) {
      const q = retriever ? "?retriever=" + encodeURIComponent(retriever) : "";
      passages.set(key, await getJson("/v1/passages/" + doc + q));
    }
    const p = passages.get(key);
    $("passage-title").textContent = p.title || "(untitled)";
    $("passage-id").textContent = `document ${p.doc} · id ${p.id}`;
    $("passage-text").textContent = p.text;
    $("passage").hidden = false;
  } catch (e) {
    setStatus("passage: " + e.message);
  }
}

/// Appends `text` to `target`, marked with its source (the chunk's first source).
function appendSpan(target, text, sources) {
  const span = document.createElement("span");
  span.textContent = text;
  const source = sources[0];
  if (source) {
    span.className = "source";
    span.tabIndex = 0;
    span.dataset.doc = source.doc;
    span.title = `${source.title} (document ${source.doc}, id ${source.id})`;
    span.style.background = docColor(source.doc);
    span.addEventListener("click", () => showPassage(source.doc));
    span.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        showPassage(source.doc);
      }
    });
  }
  target.appendChild(span);
}

// --- the timeline --------------------------------------------------------------------------

/// The rounds of one request, drawn as they arrive.
class Timeline {
  constructor(element) {
    this.element = element;
    this.element.replaceChildren();
    this.rounds = new Map();
    this.steps = [];
    this.end = 1;
    this.pending = false;
  }

  round(n) {
    if (!this.rounds.has(n)) {
      this.rounds.set(n, { n, steps: [], retrievals: [], verdict: null });
    }
    return this.rounds.get(n);
  }

  add(event) {
    const round = this.round(event.round);
    if (event.type === "step") {
      const step = { ...event, state: event.guess ? "guess" : "retrieved" };
      round.steps.push(step);
      this.steps.push(step);
      this.end = Math.max(this.end, event.at_ms + event.lm_ms);
    } else if (event.type === "retrieval") {
      round.retrievals.push(event);
      this.end = Math.max(this.end, event.at_ms + event.took_ms);
    } else if (event.type === "verdict") {
      round.verdict = event;
      const guesses = round.steps.filter((s) => s.guess);
      guesses.forEach((s, i) => {
        if (i < event.matched) s.state = "accepted";
      });
      if (event.rollback_to !== null && event.rollback_to !== undefined) {
        for (const s of this.steps) {
          if (s.start >= event.rollback_to && s.state !== "retrieved") s.state = "rolled-back";
        }
      }
    }
    this.schedule();
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const rows = [];
    const sorted = [...this.rounds.values()].sort((a, b) => a.n - b.n);
    for (const round of sorted) rows.push(this.row(round));
    this.element.replaceChildren(...rows);
  }

  row(round) {
    const row = document.createElement("div");
    row.className = "round";
    row.setAttribute("role", "listitem");
    const guesses = round.steps.filter((s) => s.guess).length;
    const kind = guesses ? `speculate` : `retrieve`;
    const label = document.createElement("div");
    label.className = "label";
    label.textContent = `#${round.n} ${kind}`;
    const track = document.createElement("div");
    track.className = "track";
    const place = (el, at, took) => {
      el.style.left = ((100 * at) / this.end).toFixed(3) + "%";
      el.style.width = Math.max((100 * took) / this.end, 0.4).toFixed(3) + "%";
    };
    for (const s of round.steps) {
      const el = document.createElement("span");
      el.className = "step " + s.state;
      el.title =
        `${s.guess ? "guess" : "retrieved"}: ${s.title} (document ${s.doc})\n` +
        `tokens ${s.start}–${s.end} · LM ${s.lm_ms.toFixed(1)} ms · ${s.state}`;
      place(el, s.at_ms, s.lm_ms);
      track.appendChild(el);
    }
    for (const r of round.retrievals) {
      const el = document.createElement("span");
      el.className = "retrieval" + (r.overlapped ? " overlapped" : "");
      el.title =
        `retriever: ${r.queries} ${r.queries === 1 ? "query" : "queries"} in one call, ` +
        `${r.took_ms.toFixed(1)} ms${r.overlapped ? ", beside a speculated stride" : ""}`;
      place(el, r.at_ms, r.took_ms);
      track.appendChild(el);
    }
    const info = document.createElement("div");
    info.className = "info";
    const lm = round.steps.reduce((t, s) => t + s.lm_ms, 0);
    const ret = round.retrievals.reduce((t, r) => t + r.took_ms, 0);
    const parts = [];
    const v = round.verdict;
    if (v) {
      parts.push(`stride ${v.stride}: ${v.matched}/${v.stride} right`);
      if (v.truth !== null && v.truth !== undefined) {
        parts.push(`rollback → ${v.truth_title || "document " + v.truth}`);
        row.classList.add("has-rollback");
      }
    } else if (round.steps.length) {
      parts.push(round.steps[0].title);
    }
    const queries = round.retrievals.reduce((t, r) => t + r.queries, 0);
    parts.push(`LM ${lm.toFixed(0)} ms`);
    if (round.retrievals.length) parts.push(`${queries} q in ${ret.toFixed(0)} ms`);
    info.textContent = parts.join(" · ");
    row.append(label, track, info);
    return row;
  }

  summary() {
    const verdicts = [...this.rounds.values()].map((r) => r.verdict).filter(Boolean);
    const guessed = verdicts.reduce((t, v) => t + v.matched + (v.truth !== null ? 1 : 0), 0);
    const matched = verdicts.reduce((t, v) => t + v.matched, 0);
    const rollbacks = verdicts.filter((v) => v.truth !== null).length;
    const calls = [...this.rounds.values()].reduce((t, r) => t + r.retrievals.length, 0);
    const parts = [`${this.rounds.size} rounds`, `${calls} retriever calls`];
    if (verdicts.length) {
      parts.push(`speculation accuracy ${((100 * matched) / Math.max(guessed, 1)).toFixed(0)}%`);
      parts.push(`${rollbacks} rollback${rollbacks === 1 ? "" : "s"}`);
      parts.push(`strides ${verdicts.map((v) => v.stride).join(", ")}`);
    }
    return parts.join(" · ");
  }
}

// --- asking --------------------------------------------------------------------------------

let busy = false;

function setBusy(on) {
  busy = on;
  $("ask-button").disabled = on;
  $("race-button").disabled = on;
}

async function ask(event) {
  event.preventDefault();
  if (busy) return;
  setBusy(true);
  const answer = $("answer");
  answer.replaceChildren();
  $("summary").textContent = "";
  $("passage").hidden = true;
  const timeline = new Timeline($("timeline"));
  const started = performance.now();
  setStatus("asking…");
  try {
    const finish = await stream($("question").value, $("engine").value, {
      text: (text, sources) => appendSpan(answer, text, sources),
      trace: (e) => timeline.add(e),
    });
    const seconds = (performance.now() - started) / 1000;
    $("summary").textContent =
      `done in ${seconds.toFixed(2)} s (${finish}) · ` + timeline.summary();
    setStatus("");
  } catch (e) {
    setStatus("error: " + e.message);
  } finally {
    setBusy(false);
  }
}

// --- the race ------------------------------------------------------------------------------

class Lane {
  constructor(element) {
    this.clock = element.querySelector(".clock");
    this.text = element.querySelector(".text");
    this.text.replaceChildren();
    this.clock.textContent = "0.00 s";
    this.element = element;
    element.classList.remove("winner");
    this.answer = "";
    this.sources = [];
    this.started = null;
    this.seconds = null;
  }

  tick() {
    if (this.started !== null && this.seconds === null) {
      this.clock.textContent = ((performance.now() - this.started) / 1000).toFixed(2) + " s";
    }
  }

  async run(question, engine) {
    this.started = performance.now();
    await stream(question, engine, {
      text: (text, sources) => {
        this.answer += text;
        this.sources.push(...sources.map((s) => `${s.doc}:${s.start}-${s.end}`));
        appendSpan(this.text, text, sources);
      },
      trace: () => {},
    });
    this.seconds = (performance.now() - this.started) / 1000;
    this.clock.textContent = this.seconds.toFixed(2) + " s";
  }
}

async function race() {
  if (busy) return;
  setBusy(true);
  $("race-section").hidden = false;
  $("race-result").textContent = "";
  const question = $("question").value;
  const baseline = new Lane($("race-baseline"));
  const spec = new Lane($("race-spec"));
  let ticking = true;
  const tick = () => {
    baseline.tick();
    spec.tick();
    if (ticking) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  setStatus("racing…");
  try {
    if (workers >= 2) {
      $("race-mode").textContent =
        "Both run at once, on two of the server's workers (they share its cores).";
      await Promise.all([baseline.run(question, "baseline"), spec.run(question, "spec")]);
    } else {
      // One worker: concurrent requests would queue, so the clocks would count the wait.
      $("race-mode").textContent =
        "This server has one worker, so they run one after the other, each clock counting " +
        "its own run: RaLMSpec first, so the baseline finds the documents' KV warm " +
        "(the race favours the baseline).";
      await spec.run(question, "spec");
      await baseline.run(question, "baseline");
    }
    const same = baseline.answer === spec.answer && baseline.sources.join() === spec.sources.join();
    const speedup = baseline.seconds / spec.seconds;
    (speedup >= 1 ? spec : baseline).element.classList.add("winner");
    $("race-result").textContent =
      `RaLMSpec ${speedup.toFixed(2)}× the baseline's speed · ` +
      (same ? "✓ identical answers and sources" : "✗ the answers differ");
    $("race-result").className = same ? "identical" : "different";
    setStatus("");
  } catch (e) {
    setStatus("error: " + e.message);
  } finally {
    ticking = false;
    setBusy(false);
  }
}

// --- server panels -------------------------------------------------------------------------

/// Sums of each metric over its label sets, from the Prometheus text format.
function parseMetrics(text) {
  const sums = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$/);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    if (m[2] && m[2].includes('le="')) continue; // histogram buckets
    sums.set(m[1], (sums.get(m[1]) || 0) + value);
  }
  return sums;
}

const PANELS = [
  { id: "tokens", title: "tokens/s", digits: 1 },
  { id: "queue", title: "queue depth", digits: 0 },
  { id: "batch", title: "verification batch", digits: 1 },
  { id: "accuracy", title: "speculation accuracy", digits: 2 },
];
const HISTORY = 60;
const series = new Map(PANELS.map((p) => [p.id, []]));
let previous = null;

function drawPanels() {
  const panels = PANELS.map((p) => {
    const values = series.get(p.id);
    const panel = document.createElement("figure");
    panel.className = "panel";
    panel.id = "panel-" + p.id;
    panel.dataset.peak = Math.max(0, ...values);
    const caption = document.createElement("figcaption");
    const last = values.length ? values[values.length - 1] : null;
    caption.textContent = `${p.title}: ${last === null ? "–" : last.toFixed(p.digits)}`;
    const svgNs = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(svgNs, "svg");
    svg.setAttribute("viewBox", `0 0 ${HISTORY} 20`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("aria-hidden", "true");
    const max = Math.max(...values, 1e-9);
    const points = values.map((v, i) => `${i},${(20 - (18 * v) / max).toFixed(2)}`).join(" ");
    const line = document.createElementNS(svgNs, "polyline");
    line.setAttribute("points", points);
    svg.appendChild(line);
    panel.append(caption, svg);
    return panel;
  });
  $("panels").replaceChildren(...panels);
}

async function pollMetrics() {
  try {
    const res = await fetch("/metrics", { headers: headers() });
    if (!res.ok) throw new Error(res.statusText);
    const now = performance.now();
    const m = parseMetrics(await res.text());
    const get = (name) => m.get(name) || 0;
    const push = (id, v) => {
      const s = series.get(id);
      s.push(v);
      if (s.length > HISTORY) s.shift();
    };
    if (previous) {
      const dt = (now - previous.at) / 1000;
      push("tokens", (get("ralmspec_generated_tokens_total") - previous.tokens) / dt);
      const dn = get("ralmspec_verification_batch_size_count") - previous.batches;
      const ds = get("ralmspec_verification_batch_size_sum") - previous.batchSum;
      push("batch", dn > 0 ? ds / dn : 0);
    }
    push("queue", get("ralmspec_queue_depth"));
    push("accuracy", get("ralmspec_speculation_accuracy"));
    previous = {
      at: now,
      tokens: get("ralmspec_generated_tokens_total"),
      batches: get("ralmspec_verification_batch_size_count"),
      batchSum: get("ralmspec_verification_batch_size_sum"),
    };
    drawPanels();
  } catch (e) {
    // The panels wait for the next poll (a key may be needed first).
  }
}

// --- start ---------------------------------------------------------------------------------

let modelName = "";
let workers = 1;

async function start() {
  $("form").addEventListener("submit", ask);
  $("race-button").addEventListener("click", race);
  $("passage-close").addEventListener("click", () => ($("passage").hidden = true));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") $("passage").hidden = true;
  });
  try {
    const health = await getJson("/health");
    modelName = health.model;
    workers = health.workers || 1;
    $("model").textContent = `${health.model} · ${health.retrievers.join(", ")}`;
    $("retriever").replaceChildren(
      ...health.retrievers.map((r) => {
        const option = document.createElement("option");
        option.value = option.textContent = r;
        return option;
      }),
    );
    document.body.dataset.ready = "true";
  } catch (e) {
    setStatus("the server did not answer /health: " + e.message);
  }
  drawPanels();
  pollMetrics();
  setInterval(pollMetrics, 2000);
}

start();
