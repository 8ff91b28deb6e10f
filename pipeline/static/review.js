// Match review page. Every id and file name is user data: text goes in with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { query: null, shown: 5, busy: false };

function reviewer() { return $("reviewer").value.trim() || "reviewer"; }

function say(text, error = false) {
  $("message").textContent = text;
  $("message").className = error ? "error" : "";
}

async function call(method, url, body) {
  const opts = { method, headers: { "Content-Type": "application/json" } };
  if (body !== undefined) opts.body = JSON.stringify(body);
  const resp = await fetch(url, opts);
  const data = resp.headers.get("Content-Type", "").includes("json") ? await resp.json() : {};
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}

function imgUrl(kind, name, extra = "") {
  return `/img/${kind}/${encodeURIComponent(name)}${extra}`;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function show(q) {
  state.query = q;
  state.shown = 5;
  if (!q || q.done) {
    $("current-image").textContent = "Queue done";
    $("query-info").textContent = "every photo here has an answer; Apply to enroll them";
    for (const id of ["query-photo", "query-crop"]) $(id).removeAttribute("src");
    $("query-box").hidden = true;
    $("candidates").replaceChildren();
    $("decision").textContent = "";
    return;
  }
  $("current-image").textContent = q.image;
  $("query-info").textContent = `predicted species ${q.predicted_species || "?"} · best score ` +
    `${q.best_score.toFixed(3)} · detection ${q.detection_score < 0 ? "none (whole photo)" : q.detection_score.toFixed(2)}`;
  $("new-species").value = q.predicted_species;
  $("query-photo").src = imgUrl("query", q.image);
  $("query-crop").src = imgUrl("query", q.image, "?crop=1");
  placeBox(q.box);
  $("decision").textContent = q.decision ?
    `answered: ${q.decision.decision} ${q.decision.individual_id} by ${q.decision.reviewer}` : "";
  renderCandidates();
}

function placeBox(box) {
  const b = $("query-box"), img = $("query-photo");
  const parts = (box || "").split(" ").map(Number);
  if (parts.length !== 4 || parts.some(Number.isNaN)) { b.hidden = true; return; }
  const draw = () => {
    const [y0, x0, y1, x1] = parts, w = img.clientWidth, h = img.clientHeight;
    Object.assign(b.style, { left: `${x0 * w}px`, top: `${y0 * h}px`, width: `${(x1 - x0) * w}px`,
      height: `${(y1 - y0) * h}px` });
    b.hidden = false;
  };
  if (img.complete && img.naturalWidth) draw(); else img.onload = draw;
}

function renderCandidates() {
  const box = $("candidates");
  box.replaceChildren();
  for (const c of state.query.candidates.slice(0, state.shown)) {
    const card = el("div", undefined, "cand");
    if (c.species !== state.query.predicted_species) card.classList.add("other-species");
    card.dataset.rank = c.rank;
    const head = el("div");
    head.append(el("span", String(c.rank), "key"), " ", el("span", c.individual_id, "cand-id"));
    const img = el("img");
    img.alt = c.individual_id;
    if (c.catalog_image) img.src = imgUrl("catalog", c.catalog_image, "?crop=1");
    img.addEventListener("click", () => zoom(imgUrl("catalog", c.catalog_image, "?zoom=1")));
    card.append(head, img, el("div", `${c.species} · score ${c.score.toFixed(3)}`),
      el("div", c.catalog_image || "", "file"));
    box.append(card);
  }
}

async function act(fn) {
  if (state.busy) return;
  state.busy = true;
  document.body.dataset.state = "busy";
  try { await fn(); } catch (e) { say(e.message, true); }
  state.busy = false;
  document.body.dataset.state = "ready";
  refreshSide();
}

async function next() {
  const sp = encodeURIComponent($("species").value);
  show(await call("GET", `/api/next?reviewer=${encodeURIComponent(reviewer())}&species=${sp}`));
}

async function decide(decision, rank) {
  const q = state.query;
  if (!q || q.done) return;
  const species = decision === "new" ? $("new-species").value : "";
  const d = await call("POST", "/api/decide", { image: q.image, reviewer: reviewer(), decision, rank, species });
  say(`${d.image}: ${d.decision} ${d.individual_id}`);
  await next();
}

async function skip() {
  if (!state.query || state.query.done) return;
  await call("POST", "/api/skip", { image: state.query.image, reviewer: reviewer() });
  say(`${state.query.image}: skipped`);
  await next();
}

async function undo() {
  const r = await call("POST", "/api/undo", { reviewer: reviewer() });
  if (!r.image) { say("nothing of yours to undo"); return; }
  show(await call("GET", `/api/query?image=${encodeURIComponent(r.image)}`));
  say(`${r.image}: answer taken back`);
}

async function apply() {
  say("applying: enrolling the confirmed photos...");
  const r = await call("POST", "/api/apply", {});
  say(`applied: ${r.enrolled} photo(s) enrolled, ${r.relabelled} catalog row(s) relabelled by merges` +
    (r.failed ? `, ${r.failed} unreadable` : ""));
}

async function merge() {
  const r = await call("POST", "/api/merge", { source: $("merge-source").value.trim(),
    target: $("merge-target").value.trim(), reviewer: reviewer() });
  say(`${r.source} will be filed as ${r.target} (${r.species}) at Apply`);
}

function zoom(src) {
  if (!src) return;
  $("zoom-img").src = src;
  $("zoom").hidden = false;
}

async function refreshSide() {
  const st = await call("GET", "/api/stats");
  $("stats").textContent = `${st.decided}/${st.queries} answered · ${st.unapplied} to apply · ${st.merges} merge(s)`;
  const sel = $("species");
  if (sel.options.length === 1) for (const s of st.species) { const o = el("option", s); o.value = s; sel.append(o); }
  const ns = $("new-species");
  if (!ns.options.length) {
    for (const s of st.all_species) { const o = el("option", s); o.value = s; ns.append(o); }
    if (state.query && !state.query.done) ns.value = state.query.predicted_species;
  }
  const rows = await call("GET", `/api/queue?status=${$("status").value}&species=${encodeURIComponent(sel.value)}`);
  $("queue").replaceChildren(...rows.map((r) => {
    const li = el("li", `${r.image} ${r.decision ? `→ ${r.individual_id || r.decision}` : r.best_score.toFixed(2)}`);
    if (r.decision) li.classList.add("decided");
    if (state.query && r.image === state.query.image) li.classList.add("current");
    li.addEventListener("click", () => act(async () => show(await call("GET",
      `/api/query?image=${encodeURIComponent(r.image)}`))));
    return li;
  }));
}

function onKey(ev) {
  if (["INPUT", "SELECT", "TEXTAREA"].includes(ev.target.tagName) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (!$("zoom").hidden) { $("zoom").hidden = true; return; }
  const k = ev.key.toLowerCase();
  if (k >= "1" && k <= "9") {
    const rank = Number(k);
    if (state.query && !state.query.done && rank <= Math.min(state.shown, state.query.candidates.length)) {
      act(() => decide("accept", rank));
    }
  } else if (k === "n") act(() => decide("new"));
  else if (k === "x") act(() => decide("unidentifiable"));
  else if (k === "s") act(skip);
  else if (k === "u") act(undo);
  else if (k === "m" && state.query && !state.query.done) { state.shown += 5; renderCandidates(); }
  else if (k === "z") zoom($("query-photo").src ? $("query-photo").src + "?zoom=1" : "");
  else return;
  ev.preventDefault();
}

document.addEventListener("DOMContentLoaded", () => {
  const params = new URLSearchParams(location.search);
  $("reviewer").value = params.get("reviewer") || localStorage.getItem("reviewer") || "reviewer";
  $("reviewer").addEventListener("change", () => localStorage.setItem("reviewer", reviewer()));
  $("species").addEventListener("change", () => { $("species").blur(); act(next); });
  $("new-species").addEventListener("change", () => $("new-species").blur());  // keys work again
  $("status").addEventListener("change", refreshSide);
  $("apply").addEventListener("click", () => act(apply));
  $("merge").addEventListener("click", () => act(merge));
  $("zoom").addEventListener("click", () => { $("zoom").hidden = true; });
  $("query-photo").addEventListener("click", () => zoom($("query-photo").src + "?zoom=1"));
  $("query-crop").addEventListener("click", () => zoom($("query-crop").src.replace("crop=1", "crop=1&zoom=1")));
  document.addEventListener("keydown", onKey);
  act(next);
});
