// The ragft playground: the three routes side by side, and the knowledge base behind them.
// Plain ES module, no build step; it talks only to the gateway's own API.

const ROUTES = ["rag", "finetuned", "hybrid"];
const KEY = "ragft-api-key"; // sessionStorage: the key lives as long as the tab
const $ = (selector, root = document) => root.querySelector(selector);
let kbCollection = null; // the collection the knowledge-base tab shows and adds to

// ---- the API ---------------------------------------------------------------------------

function headers(extra = {}) {
  const key = sessionStorage.getItem(KEY);
  return { "Content-Type": "application/json", ...(key ? { Authorization: `Bearer ${key}` } : {}), ...extra };
}

async function failure(response) {
  const body = await response.json().catch(() => ({}));
  const error = new Error(body.error?.message || `HTTP ${response.status} ${response.statusText}`);
  error.status = response.status;
  return error;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) throw await failure(response);
  return response.json();
}

const collectionPath = (name) => `/v1/ragft/collections/${encodeURIComponent(name)}`;

// Server-sent events from a fetch body: one parsed JSON object per `data:` event, until [DONE].
// A stream cut before [DONE] is an error: its answer is not complete.
async function* events(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended before the answer was complete");
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const data = buffer.slice(0, end).split("\n")
        .filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
      buffer = buffer.slice(end + 2);
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

// ---- notices ---------------------------------------------------------------------------

function notice(message, kind = "error") {
  const element = $("#notice");
  element.textContent = message;
  element.className = kind;
  element.hidden = !message;
}

// ---- the three columns -----------------------------------------------------------------

const columns = Object.fromEntries(ROUTES.map((route) => {
  const column = $("#column").content.firstElementChild.cloneNode(true);
  column.dataset.route = route;
  $(".route", column).textContent = route;
  for (const thumb of column.querySelectorAll(".thumb")) {
    thumb.addEventListener("click", () => sendFeedback(column, thumb.dataset.score));
  }
  $(".columns").append(column);
  return [route, column];
}));

function resetColumn(column) {
  column.dataset.state = "waiting";
  column.timing = {};
  delete column.dataset.answerId;
  for (const selector of [".answer", ".served", ".tokens", ".sources", ".legend", ".bar", ".feedback-note"]) {
    $(selector, column).replaceChildren();
  }
  for (const thumb of column.querySelectorAll(".thumb")) thumb.setAttribute("aria-pressed", "false");
  $(".feedback", column).hidden = true;
  $(".error", column).hidden = true;
  $(".grounding", column).hidden = true;
}

// The gateway's grounding verdict on an answer that retrieved (its stream's last event).
function showGrounding(column, grounding) {
  const element = $(".grounding", column);
  const missing = [
    ...grounding.unsupported,
    ...grounding.unknown_citations.map((n) => `[${n}], a source it was not given`),
  ].join(", ");
  element.dataset.verdict = grounding.supported ? "supported" : grounding.abstained ? "abstained" : "marked";
  element.textContent = grounding.supported
    ? "✓ Every fact it states is in the sources."
    : grounding.abstained
      ? `Withheld: not in the sources: ${missing}. The abstention went out instead.`
      : `⚠ Not in the sources: ${missing}.`;
  element.hidden = false;
}

// Thumbs on the answer shown: feedback by its id, kept by the gateway's store (a second click replaces it).
async function sendFeedback(column, score) {
  const note = $(".feedback-note", column);
  try {
    const kept = await api("/v1/feedback", {
      method: "POST", body: JSON.stringify({ id: column.dataset.answerId, score }),
    });
    for (const thumb of column.querySelectorAll(".thumb")) {
      thumb.setAttribute("aria-pressed", String(thumb.dataset.score === score));
    }
    note.textContent = kept.replaced ? "feedback replaced" : "feedback kept";
  } catch (error) {
    note.textContent = error.message;
  }
}

const ms = (value) => (value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${Math.round(value)} ms`);

// retrieve, then waiting for the first token, then the rest of generation: every column on one scale.
function drawTimings() {
  const longest = Math.max(1, ...Object.values(columns).map((c) => c.timing?.total ?? c.timing?.ttft ?? 0));
  for (const column of Object.values(columns)) {
    const { retrieve = 0, ttft, total } = column.timing || {};
    if (ttft === undefined) continue;
    const stages = [
      ["retrieve", retrieve],
      ["first-token", ttft - retrieve],
      ...(total === undefined ? [] : [["generate", total - ttft]]),
    ];
    $(".bar", column).replaceChildren(...stages.map(([stage, value]) => {
      const segment = document.createElement("span");
      segment.className = stage;
      segment.style.width = `${(100 * Math.max(value, 0)) / longest}%`;
      return segment;
    }));
    const parts = [`retrieve ${ms(retrieve)}`, `first token ${ms(ttft)}`];
    if (total !== undefined) parts.push(`generate ${ms(total - ttft)}`, `total ${ms(total)}`);
    $(".legend", column).textContent = parts.join(" · ");
  }
}

function showSources(column, sources) {
  $(".sources", column).replaceChildren(...sources.map((source, i) => {
    const item = document.createElement("li");
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "source";
    toggle.textContent = `[${i + 1}] ${source.title || source.doc_id}`;
    const meta = document.createElement("small");
    meta.textContent = ` ${source.chunk_id} · score ${source.score.toFixed(4)}`;
    const chunk = document.createElement("pre");
    chunk.className = "chunk";
    chunk.textContent = source.text;
    chunk.hidden = true;
    toggle.addEventListener("click", () => { chunk.hidden = !chunk.hidden; });
    item.append(toggle, meta, chunk);
    return item;
  }));
}

function fail(column, message) {
  column.dataset.state = "failed";
  const element = $(".error", column);
  element.textContent = message;
  element.hidden = false;
}

// One event of /v1/compare's stream, tagged with its route.
function show(event) {
  const column = columns[event.route];
  if (!column || column.dataset.state === "failed") return;
  if (event.error) return fail(column, event.error.message);
  if (event.done) {
    if (column.dataset.state === "streaming") {
      column.dataset.state = "done";
      $(".feedback", column).hidden = !column.dataset.answerId;
    }
    return;
  }
  if (event.answered_as) {
    column.dataset.state = "streaming";
    column.dataset.answerId = event.id;
    if (event.answered_as !== event.route) $(".served", column).textContent = `answered as ${event.answered_as}`;
    column.timing = event.timing;
    return drawTimings();
  }
  const chunk = event.chunk || {};
  const ragft = chunk.ragft || {};
  if (ragft.sources) showSources(column, ragft.sources);
  if (ragft.degraded) $(".served", column).textContent += ` degraded: ${ragft.degraded.component}`;
  if (ragft.timing) { column.timing = ragft.timing; drawTimings(); }
  if (ragft.grounding) showGrounding(column, ragft.grounding);
  if (chunk.usage) {
    $(".tokens", column).textContent =
      `${chunk.usage.prompt_tokens} prompt tokens · ${chunk.usage.completion_tokens} completion tokens`;
  }
  for (const item of chunk.choices || []) $(".answer", column).textContent += item.delta?.content || "";
}

// One call answers on the three routes at once; a route that fails fails its own column.
async function ask(event) {
  event.preventDefault();
  const question = $("#question").value.trim();
  if (!question) return;
  const request = {
    routes: ROUTES,
    messages: [{ role: "user", content: question }],
    max_tokens: Number($("#max-tokens").value) || 128,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  };
  const extra = {};
  if ($("#adapter").value) extra["X-Ragft-Adapter"] = $("#adapter").value;
  if ($("#collection").value) extra["X-Ragft-Collection"] = $("#collection").value;
  if ($("#grounding").value) extra["X-Ragft-Grounding"] = $("#grounding").value;
  Object.values(columns).forEach(resetColumn);
  $("#ask").disabled = true;
  notice("");
  try {
    const response = await fetch("/v1/compare", {
      method: "POST", headers: headers(extra), body: JSON.stringify(request),
    });
    if (!response.ok) throw await failure(response);
    for await (const tagged of events(response.body)) show(tagged);
  } catch (error) {
    for (const column of Object.values(columns)) {
      if (column.dataset.state !== "done") fail(column, error.message);
    }
  } finally {
    $("#ask").disabled = false;
  }
}

// ---- pickers and the knowledge base ------------------------------------------------------

function fillPicker(select, values) {
  const chosen = select.value;
  const options = values.map((value) => new Option(value, value));
  select.replaceChildren(new Option("(gateway default)", ""), ...options);
  if (values.includes(chosen)) select.value = chosen;
}

function showCollections(collections) {
  if (!collections.some((c) => c.name === kbCollection)) kbCollection = collections[0]?.name ?? null;
  $("#kb-collections").replaceChildren(...collections.map((collection) => {
    const row = document.createElement("tr");
    row.dataset.name = collection.name;
    row.setAttribute("aria-selected", String(collection.name === kbCollection));
    for (const value of [collection.name, collection.documents, collection.chunks]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    row.addEventListener("click", () => { kbCollection = collection.name; refresh(); });
    return row;
  }));
  for (const selector of ["#kb-collection-name", "#kb-target-name"]) {
    $(selector).textContent = kbCollection ?? "(no collection)";
  }
  $("#add-doc").disabled = kbCollection === null;
}

const LISTED = 1000; // documents shown per collection

async function showDocuments() {
  $("#kb-document").hidden = true;
  if (kbCollection === null) return $("#kb-documents").replaceChildren();
  const listed = await api(`${collectionPath(kbCollection)}/documents?limit=${LISTED}`);
  $("#kb-listed").textContent = listed.total > LISTED ? `the first ${LISTED} of ${listed.total}, by id` : "";
  $("#kb-documents").replaceChildren(...listed.documents.map((doc) => {
    const item = document.createElement("li");
    const open = document.createElement("button");
    open.type = "button";
    open.textContent = doc.title || doc.id;
    const id = document.createElement("small");
    id.textContent = ` ${doc.id}`;
    open.addEventListener("click", () => showDocument(doc.id).catch((error) => notice(error.message)));
    item.append(open, id);
    if (doc.instructions?.length) {
      const flag = document.createElement("small");
      flag.className = "flagged";
      flag.textContent = ` ⚠ ${doc.instructions.length} sentence(s) addressed to the assistant, set aside`;
      item.append(flag);
    }
    return item;
  }));
}

async function showDocument(id) {
  const doc = await api(`${collectionPath(kbCollection)}/documents/${id.split("/").map(encodeURIComponent).join("/")}`);
  const view = $("#kb-document");
  const setAside = (doc.instructions || []).map((sentence) => `── set aside, not evidence: ${sentence}`);
  view.textContent = [...setAside, ...doc.chunks.map((chunk) => `── ${chunk.chunk_id}\n${chunk.text}`)].join("\n\n");
  view.hidden = false;
}

// Pickers and the knowledge base, from /v1/models and the gateway's collection endpoints; each
// fills on its own, so a generation service still starting leaves the knowledge base usable.
async function refresh() {
  const [models, kb] = await Promise.allSettled([api("/v1/models"), api("/v1/ragft/collections")]);
  if (models.status === "fulfilled") {
    // vLLM lists each LoRA adapter with its base model as `parent`.
    fillPicker($("#adapter"), models.value.data.filter((model) => model.parent).map((model) => model.id));
  }
  if (kb.status === "fulfilled") {
    fillPicker($("#collection"), kb.value.collections.map((collection) => collection.name));
    showCollections(kb.value.collections);
  }
  try {
    if (kb.status === "fulfilled") await showDocuments();
    const failed = [models, kb].find((result) => result.status === "rejected");
    if (failed) throw failed.reason;
  } catch (error) {
    const hint = error.status === 401 ? " Enter the API key above." : " Reload the page to try again.";
    notice(`${error.message.replace(/\.$/, "")}.${hint}`);
  }
}

async function addDocument(event) {
  event.preventDefault();
  const doc = { id: $("#doc-id").value.trim(), text: $("#doc-text").value, title: $("#doc-title").value.trim() || null };
  $("#add-doc").disabled = true;
  try {
    const added = await api(`${collectionPath(kbCollection)}/documents`, { method: "POST", body: JSON.stringify(doc) });
    const chunks = `${added.chunks} chunk${added.chunks === 1 ? "" : "s"}`;
    const flagged = added.flagged?.length ? " Text addressed to the assistant was set aside." : "";
    notice(`Added ${doc.id} to ${added.collection} (${chunks}). The next answer can use it.${flagged}`, "ok");
    $("#add-form").reset();
    await refresh();
    $("#collection").value = added.collection; // so the next question searches it
  } catch (error) {
    notice(error.message);
  } finally {
    $("#add-doc").disabled = kbCollection === null;
  }
}

async function readFile() {
  const file = $("#doc-file").files[0];
  if (!file) return;
  $("#doc-text").value = await file.text();
  if (!$("#doc-id").value) $("#doc-id").value = file.name.replace(/\.[^.]+$/, "");
}

function showTab(name) {
  for (const tab of ["ask", "kb"]) {
    $(`#${tab}-panel`).hidden = tab !== name;
    $(`#tab-${tab}`).setAttribute("aria-selected", String(tab === name));
  }
}

$("#api-key").value = sessionStorage.getItem(KEY) || "";
$("#api-key").addEventListener("change", (event) => {
  sessionStorage.setItem(KEY, event.target.value.trim());
  notice("");
  refresh();
});
$("#tab-ask").addEventListener("click", () => showTab("ask"));
$("#tab-kb").addEventListener("click", () => showTab("kb"));
$("#ask-form").addEventListener("submit", ask);
$("#add-form").addEventListener("submit", addDocument);
$("#doc-file").addEventListener("change", () => readFile().catch((error) => notice(error.message)));
refresh();
