// The jobtask dashboard: plain JavaScript, no build step, no third-party code.
// The token lives in sessionStorage only and goes out as an Authorization header; the live
// parts read the watch streams (Server-Sent Events) through fetch(), which can send headers.
"use strict";

const TOKEN_KEY = "jobtask.token";
const API = "/arvados/v1";
const JOB_PAGE = 50;
const TASK_PAGE = 100;
const JOBS_REFRESH_MS = 2000;
const ATTEMPT_PAGE = 1000;
const ATTEMPTS_MS = 1000;
const RENDER_MS = 250;
const GANTT_LABEL = 90;  // px kept for a lane's node name
const STATUSES = ["queued", "active", "completed", "failed", "cancel-requested", "canceled",
  "requeueing", "paused", "pause-requested", "under-construction"];
// Which verbs the job status machine allows from each status (jobtask.domain.statuses).
const ACTIONS = {
  cancel: ["queued", "active", "failed", "paused", "pause-requested"],
  requeue: ["completed", "failed", "canceled", "paused"],
  pause: ["queued", "active"],
  resume: ["paused", "pause-requested"],
  priority: ["queued", "active", "paused", "pause-requested", "requeueing"],
};

const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;  // CSSOM: allowed by the page's CSP
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// -- the token and the API ------------------------------------------------------------------

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(API + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!res.ok) {
    const errors = data && Array.isArray(data.errors) ? data.errors.join("; ") : res.statusText;
    if (res.status === 401) signOut("Your token was refused: " + errors);
    throw new ApiError(res.status, errors);
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null) q.set(k, typeof v === "string" ? v : JSON.stringify(v));
  }
  return "?" + q.toString();
}

// Follows a watch stream until `signal` aborts it; reconnects after a break (a new snapshot).
async function follow(path, onEvent, signal, onState) {
  let delay = 500;
  while (!signal.aborted) {
    try {
      const res = await fetch(API + path, {
        headers: { Authorization: "Bearer " + token(), Accept: "text/event-stream" },
        signal, cache: "no-store",
      });
      if (!res.ok) {
        const data = await res.json().catch(() => null);
        const msg = data && data.errors ? data.errors.join("; ") : res.statusText;
        if (res.status === 401) { signOut("Your token was refused: " + msg); return; }
        throw new ApiError(res.status, msg);
      }
      onState(true);
      delay = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let kind = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
          }
          if (!data.length) continue;
          const parsed = JSON.parse(data.join("\n"));
          if (kind === "error") throw new ApiError(0, (parsed.errors || []).join("; "));
          onEvent(parsed);
        }
      }
      if (onEvent(null) === "done") { onState("done"); return; }  // ended by itself
      onState(false);
    } catch (err) {
      if (signal.aborted) return;
      onState(false);
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) {
        toast(err.message);
        return;
      }
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 5000);
  }
}

// Renders at most once a frame (and at most every `minMs`), however many events arrive.
function coalesced(render, minMs = 0) {
  let queued = false;
  let last = 0;
  return () => {
    if (queued) return;
    queued = true;
    const wait = Math.max(0, last + minMs - performance.now());
    setTimeout(() => requestAnimationFrame(() => {
      queued = false;
      last = performance.now();
      render();
    }), wait);
  };
}

// Replaces a node's children only when `key` changed since the last time.
function keyed(node, key, build) {
  if (node.dataset.key === key) return;
  node.dataset.key = key;
  node.replaceChildren(...build());
}

function toast(message, ok = false) {
  const t = $("#toast");
  t.textContent = message;
  t.className = ok ? "ok" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 8000);
}

function setLive(on) {
  const live = $("#live");
  live.hidden = false;
  live.textContent = on === "done" ? "final" : on ? "live" : "reconnecting…";
  live.classList.toggle("off", !on);
}

// -- formatting -----------------------------------------------------------------------------

function bar(fraction, label) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  return el("span", { class: "bar", role: "progressbar", "aria-valuenow": pct.toFixed(0) },
    el("span", { style: `width:${pct}%` }), el("em", {}, label || pct.toFixed(0) + "%"));
}

const statusTag = (s) => el("span", { class: "status " + s }, s);
const when = (t) => (t ? new Date(t).toLocaleString() : "");

function duration(start, end) {
  if (!start) return "";
  const s = Math.max(0, ((end ? new Date(end) : new Date()) - new Date(start)) / 1000);
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

// "3", "signal 15", or "" while the attempt runs (or when its worker reported nothing).
function exitText(a) {
  if (!a) return "";
  if (a.exit_code !== undefined && a.exit_code !== null) return String(a.exit_code);
  if (a.signal !== undefined && a.signal !== null) return "signal " + a.signal;
  return "";
}

let palette = null;
function ganttColors() {
  if (!palette) {
    const css = getComputedStyle(document.documentElement);
    const v = (name) => css.getPropertyValue(name).trim();
    palette = { completed: v("--ok"), failed: v("--bad"), "soft-failed": v("--warn"),
      active: v("--accent"), other: v("--muted") };
  }
  return palette;
}

function jobCounts(job) {
  const s = job.tasks_summary || {};
  const total = (s.todo || 0) + (s.running || 0) + (s.done || 0) + (s.failed || 0);
  return { done: s.done || 0, total };
}

// -- pages ----------------------------------------------------------------------------------

let current = null;  // the page shown: { stop() }

function route() {
  if (current) current.stop();
  current = null;
  $("#live").hidden = true;
  if (!token()) { showSignIn(); return; }
  $("#nav").hidden = false;
  $("#sign-out").hidden = false;
  const hash = location.hash.replace(/^#\/?/, "");
  const [page, arg] = hash.split("/");
  for (const a of document.querySelectorAll("#nav a")) {
    a.classList.toggle("current", a.dataset.page === (page === "job" ? "jobs" : page || "jobs"));
  }
  if (page === "job" && arg) current = jobPage(decodeURIComponent(arg));
  else if (page === "workers") current = workersPage();
  else current = jobsPage();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (current) current.stop();
  current = null;
  // A note of the signed-out session's last action is not the next one's to read.
  clearTimeout(toast.timer);
  $("#toast").hidden = true;
  showSignIn(message);
}

function showSignIn(message) {
  $("#nav").hidden = true;
  $("#sign-out").hidden = true;
  $("#live").hidden = true;
  const input = el("input", { id: "token", type: "password", autocomplete: "off",
    placeholder: "API token" });
  const error = el("p", { id: "signin-error", class: "error" }, message || "");
  const form = el("form", { class: "signin", id: "signin" },
    el("h1", {}, "Sign in"),
    el("label", { for: "token" }, "API token (kept in this tab only)"), input,
    el("button", { type: "submit" }, "Sign in"), error);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("GET", "/api_client_authorizations/current");
      route();
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignIn(err.message || "Sign-in failed");
    }
  });
  main().replaceChildren(form);
  input.focus();
}

function jobsPage() {
  const state = { status: "", text: "", offset: 0, stopped: false, timer: null };
  const status = el("select", { id: "status-filter" }, el("option", { value: "" }, "any status"),
    STATUSES.map((s) => el("option", { value: s }, s)));
  const text = el("input", { id: "text-filter", type: "search", placeholder: "script or uuid" });
  const body = el("tbody", { id: "jobs-body" });
  const info = el("span", { id: "jobs-info", class: "muted" });
  const prev = el("button", { type: "button", id: "prev" }, "‹ Newer");
  const next = el("button", { type: "button", id: "next" }, "Older ›");
  main().replaceChildren(
    el("h1", {}, "Jobs"),
    el("div", { class: "toolbar" }, status, text, info),
    el("table", { id: "jobs" }, el("thead", {}, el("tr", {},
      ["Job", "Script", "Status", "Priority", "Tasks done", "Mean progress", "Owner",
        "Created", "Started", "Finished"].map((h) => el("th", {}, h)))), body),
    el("div", { class: "pager" }, prev, next));

  async function load() {
    clearTimeout(state.timer);
    if (document.hidden) return;  // onVisibility resumes
    const filters = [];
    if (state.status) filters.push(["status", "=", state.status]);
    const t = state.text.trim();
    if (/^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}$/.test(t)) filters.push(["uuid", "=", t]);
    else if (t) filters.push(["script", "ilike", "%" + t + "%"]);
    try {
      const page = await api("GET", "/jobs" + query({
        filters, order: ["created_at desc", "uuid asc"], limit: JOB_PAGE, offset: state.offset,
      }));
      const running = await runningProgress(page.items);
      if (state.stopped) return;
      // Re-render only what changed: an idle page costs one small read per interval.
      const key = JSON.stringify([page, running]);
      if (key !== state.shown) { state.shown = key; render(page, running); }
      setLive(true);
    } catch (err) {
      if (state.stopped) return;
      setLive(false);
      toast(err.message);
    }
    if (!state.stopped) state.timer = setTimeout(load, JOBS_REFRESH_MS);
  }

  // The progress of the running tasks of the page's running jobs, summed per job: one
  // read, bounded by the farm's slots (waiting tasks count 0, completed ones 1).
  async function runningProgress(jobs) {
    const uuids = jobs.filter((j) => (j.tasks_summary || {}).running).map((j) => j.uuid);
    const sums = {};
    if (!uuids.length) return sums;
    const tasks = await api("GET", "/job_tasks" + query({
      filters: [["job_uuid", "in", uuids], ["status", "=", "active"]],
      select: ["job_uuid", "progress"], limit: 1000, count: "none",
    }));
    for (const t of tasks.items) sums[t.job_uuid] = (sums[t.job_uuid] || 0) + (t.progress || 0);
    return sums;
  }

  // Re-reads are paused while the tab is hidden, and done at once when it shows again.
  function onVisibility() { if (!document.hidden && !state.stopped) load(); }
  document.addEventListener("visibilitychange", onVisibility);

  function render(page, running) {
    const rows = page.items.map((job) => {
      const { done, total } = jobCounts(job);
      const mean = total ? (done + (running[job.uuid] || 0)) / total : 0;
      return el("tr", { "data-uuid": job.uuid },
        el("td", { class: "mono" }, el("a", { href: "#/job/" + job.uuid }, job.uuid)),
        el("td", {}, job.script),
        el("td", {}, statusTag(job.status)),
        el("td", {}, job.priority),
        el("td", { class: "done" }, bar(total ? done / total : 0, `${done}/${total}`)),
        el("td", { class: "mean" }, bar(mean)),
        el("td", { class: "mono" }, job.owner_uuid),
        el("td", {}, when(job.created_at)),
        el("td", {}, when(job.started_at)),
        el("td", {}, when(job.finished_at)));
    });
    body.replaceChildren(...rows);
    const n = page.items_available ?? page.items.length;
    info.textContent = n ? `${state.offset + 1}–${state.offset + page.items.length} of ${n}`
      : "no jobs";
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + page.items.length >= n;
  }

  let debounce = null;
  status.addEventListener("change", () => { state.status = status.value; state.offset = 0; load(); });
  text.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => { state.text = text.value; state.offset = 0; load(); }, 250);
  });
  prev.addEventListener("click", () => { state.offset = Math.max(0, state.offset - JOB_PAGE); load(); });
  next.addEventListener("click", () => { state.offset += JOB_PAGE; load(); });
  load();
  return {
    stop() {
      state.stopped = true;
      clearTimeout(state.timer);
      clearTimeout(debounce);
      document.removeEventListener("visibilitychange", onVisibility);
    },
  };
}

function jobPage(uuid) {
  const abort = new AbortController();
  const model = { job: null, tasks: new Map(), order: [], page: 0, selected: null, log: "",
    attempts: [], firstOpen: 0, latest: new Map() };
  const attrs = el("dl", { class: "attrs", id: "job-attrs" });
  const actions = el("div", { class: "toolbar", id: "actions" });
  const summary = el("div", { id: "job-progress" });
  const taskBody = el("tbody", { id: "tasks-body" });
  const pager = el("div", { class: "pager" });
  const gantt = el("div", { class: "gantt", id: "gantt" });
  const attemptsTitle = el("h2", { id: "attempts-title" }, "Attempts");
  const attemptsBody = el("tbody", { id: "attempts-body" });
  const logTitle = el("h2", { id: "log-title" }, "Log");
  const logBox = el("pre", { class: "log", id: "log" }, "Choose a task to follow its log.");
  main().replaceChildren(
    el("h1", {}, "Job ", el("span", { class: "mono" }, uuid)),
    actions, attrs, el("h2", {}, "Progress"), summary,
    el("h2", {}, "Tasks"), pager,
    el("table", { id: "tasks" }, el("thead", {}, el("tr", {},
      ["Task", "Seq", "Parent", "Status", "Progress", "Attempt", "Failures", "Worker", "Node",
        "Exit", "Duration"].map((h) => el("th", {}, h)))), taskBody),
    el("h2", {}, "Timeline by node"), gantt,
    attemptsTitle, el("table", { id: "attempts" }, el("thead", {}, el("tr", {},
      ["#", "Worker", "Node", "Started", "Ended", "Duration", "Outcome", "Exit"].map((h) =>
        el("th", {}, h)))), attemptsBody),
    logTitle, logBox);

  // Task events of a busy job arrive by the hundred a second: the page is redrawn at most
  // every RENDER_MS, rows are rebuilt only when what they show changed, and nothing reads
  // layout (the timeline's width comes from a ResizeObserver).
  let ganttWidth = 0;
  const resized = new ResizeObserver((entries) => {
    ganttWidth = entries[0].contentRect.width;
    render();
  });
  resized.observe(gantt);
  const rows = new Map();  // task uuid -> { tr, key }
  const render = coalesced(() => {
    if (!model.job) return;
    renderAttrs();
    renderActions();
    renderTasks();
    renderGantt();
    renderAttempts();
    renderLog();
  }, RENDER_MS);

  // Attempts, oldest first. Those before the first open one never change again, so each
  // re-read starts there; re-reads are coalesced (at most one every ATTEMPTS_MS).
  let attemptsTimer = null;
  let attemptsBusy = false;
  function refreshAttempts() {
    if (attemptsTimer || attemptsBusy) { model.attemptsStale = true; return; }
    attemptsTimer = setTimeout(loadAttempts, ATTEMPTS_MS);
  }
  async function loadAttempts() {
    attemptsTimer = null;
    attemptsBusy = true;
    model.attemptsStale = false;
    try {
      const fresh = [];
      const from = model.firstOpen;
      for (;;) {
        const page = await api("GET", `/jobs/${uuid}/attempts` + query({
          limit: ATTEMPT_PAGE, offset: from + fresh.length }));
        fresh.push(...page.items);
        if (page.items.length < ATTEMPT_PAGE || abort.signal.aborted) break;
      }
      if (abort.signal.aborted) return;
      model.attempts = model.attempts.slice(0, from).concat(fresh);
      const open = model.attempts.findIndex((a) => !a.ended_at);
      model.firstOpen = open < 0 ? model.attempts.length : open;
      for (const a of fresh) {
        a.span = { node: a.node_name, start: Date.parse(a.started_at),
          end: a.ended_at ? Date.parse(a.ended_at) : null, kind: a.ended_at ? a.outcome : "active" };
        const seen = model.latest.get(a.task_uuid);
        if (!seen || seen.attempt <= a.attempt) model.latest.set(a.task_uuid, a);
      }
      render();
    } catch (err) {
      if (!abort.signal.aborted) toast(err.message);
    } finally {
      attemptsBusy = false;
      if (model.attemptsStale && !abort.signal.aborted) refreshAttempts();
    }
  }

  function renderAttrs() {
    const j = model.job;
    const failed = j.status === "failed"
      ? [...model.tasks.values()].filter((t) => t.status === "failed") : [];
    keyed(attrs, JSON.stringify([j, failed.map((t) => t.uuid)]), () => {
      const items = [["status", statusTag(j.status)], ["script", j.script],
        ["priority", j.priority], ["owner", j.owner_uuid], ["created", when(j.created_at)],
        ["started", when(j.started_at)], ["finished", when(j.finished_at)],
        ["parameters", JSON.stringify(j.script_parameters)], ["output", j.output ?? ""]];
      if (j.status === "failed") {
        const why = failed.map((t) => `${t.uuid}: ${(t.failed_log || "").trim().split("\n").pop() || "failed"}`);
        items.push(["failure", el("span", { id: "failure", class: "error" },
          why.length ? why.join("; ") : "a task failed for good")]);
      }
      return items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);
    });
  }

  function renderActions() {
    const s = model.job.status;
    const key = s + ":" + model.job.priority;
    if (actions.dataset.key === key) return;
    actions.dataset.key = key;
    const buttons = [];
    for (const verb of ["cancel", "requeue", "pause", "resume"]) {
      if (ACTIONS[verb].includes(s)) {
        buttons.push(el("button", { type: "button", id: "action-" + verb,
          onclick: () => act(verb, () => api("POST", `/jobs/${uuid}/${verb}`)) }, verb));
      }
    }
    if (ACTIONS.priority.includes(s)) {
      const input = el("input", { id: "priority-input", type: "number", value: model.job.priority,
        style: "width:8em" });
      buttons.push(input, el("button", { type: "button", id: "action-priority",
        onclick: () => act("priority", () => api("PUT", `/jobs/${uuid}`,
          { job: { priority: Number(input.value) } })) }, "set priority"));
    }
    actions.replaceChildren(...buttons);
  }

  async function act(verb, call) {
    try {
      const job = await call();
      if (job && job.uuid) { model.job = job; actions.dataset.key = ""; render(); }
      toast(`${verb}: done`, true);
    } catch (err) {
      toast(`${verb} refused: ${err.message}`);
    }
  }

  function taskRow(t) {
    const latest = model.latest.get(t.uuid);
    const key = JSON.stringify([t.status, t.progress, t.attempt, t.failed_count, t.worker_id,
      t.node_name, t.started_at, t.finished_at, t.status === "active" ? Date.now() >> 10 : 0,
      exitText(latest), t.uuid === model.selected]);
    const cached = rows.get(t.uuid);
    if (cached && cached.key === key) return cached.tr;
    const tr = el("tr", {
      "data-uuid": t.uuid, class: t.uuid === model.selected ? "selected" : null,
      onclick: () => select(t.uuid),
    },
      el("td", { class: "mono link" }, t.uuid),
      el("td", {}, t.sequence),
      el("td", { class: "mono" }, t.created_by_job_task_uuid || ""),
      el("td", {}, statusTag(t.status)),
      el("td", {}, bar(t.progress)),
      el("td", {}, t.attempt),
      el("td", {}, t.failed_count),
      el("td", { class: "mono" }, t.worker_id || ""),
      el("td", {}, t.node_name || ""),
      el("td", { class: "exit" }, exitText(latest)),
      el("td", {}, duration(t.started_at, t.finished_at)));
    rows.set(t.uuid, { tr, key });
    return tr;
  }

  function renderTasks() {
    const total = model.order.length;
    const pages = Math.max(1, Math.ceil(total / TASK_PAGE));
    model.page = Math.min(model.page, pages - 1);
    const shownIds = model.order.slice(model.page * TASK_PAGE, (model.page + 1) * TASK_PAGE);
    const shown = shownIds.map((id) => model.tasks.get(id)).filter(Boolean);
    const trs = shown.map(taskRow);
    const same = trs.length === taskBody.children.length &&
      trs.every((tr, i) => taskBody.children[i] === tr);
    if (!same) {
      taskBody.replaceChildren(...trs);
      const keep = new Set(shownIds);
      for (const id of rows.keys()) if (!keep.has(id)) rows.delete(id);
    }
    let done = 0, sum = 0;
    for (const t of model.tasks.values()) {
      if (t.status === "completed") done++;
      sum += t.progress || 0;
    }
    const n = model.tasks.size;
    const mean = n ? sum / n : 0;
    keyed(summary, `${done}/${n}/${mean.toFixed(3)}`, () => [
      el("span", { id: "tasks-done" }, bar(n ? done / n : 0, `${done}/${n} tasks done`)), " ",
      el("span", { id: "mean-progress" }, bar(mean, `mean ${(mean * 100).toFixed(0)}%`))]);
    keyed(pager, `${model.page}/${pages}/${n}`, () => [
      el("button", { type: "button", disabled: model.page === 0,
        onclick: () => { model.page--; render(); } }, "‹"),
      el("span", { class: "muted" }, `page ${model.page + 1} of ${pages} (${n} tasks)`),
      el("button", { type: "button", disabled: model.page >= pages - 1,
        onclick: () => { model.page++; render(); } }, "›")]);
  }

  // Every attempt, one lane per node, drawn on a canvas (thousands of spans cost one
  // draw call each, not a DOM node each). Attempts not read yet come from the tasks.
  function renderGantt() {
    const now = Date.now();
    const spans = model.attempts.map((a) => a.span);
    for (const t of model.tasks.values()) {
      const known = model.latest.get(t.uuid);
      if (t.status === "active" && t.started_at && t.node_name &&
          (!known || known.attempt < t.attempt)) {
        spans.push({ node: t.node_name, start: Date.parse(t.started_at), end: null, kind: "active" });
      }
    }
    if (!spans.length) { gantt.replaceChildren(el("div", { class: "muted" }, "no attempts yet")); return; }
    let t0 = Infinity, t1 = now;
    for (const sp of spans) { t0 = Math.min(t0, sp.start); if (sp.end) t1 = Math.max(t1, sp.end); }
    const width = Math.max(1, t1 - t0);
    const lanes = new Map();
    for (const sp of spans) {
      if (!lanes.has(sp.node)) lanes.set(sp.node, []);
      lanes.get(sp.node).push(sp);
    }
    const names = [...lanes.keys()].sort();
    const key = names.join("\n");
    if (gantt.dataset.key !== key) {
      gantt.dataset.key = key;
      gantt.replaceChildren(...names.map((node) => el("div", { class: "lane", "data-node": node },
        el("b", {}, node), el("canvas", { height: 14 }))));
    }
    const colors = ganttColors();
    for (const lane of gantt.children) {
      const list = lanes.get(lane.dataset.node) || [];
      lane.dataset.attempts = String(list.length);
      const canvas = lane.lastChild;
      const w = Math.max(1, Math.floor(ganttWidth) - GANTT_LABEL);
      if (canvas.width !== w) canvas.width = w;
      const ctx = canvas.getContext("2d");
      ctx.clearRect(0, 0, w, 14);
      for (const sp of list) {
        const x = ((sp.start - t0) / width) * w;
        const len = Math.max(2, (((sp.end ?? now) - sp.start) / width) * w);
        ctx.fillStyle = colors[sp.kind] || colors.other;
        ctx.fillRect(x, 0, len, 14);
      }
    }
  }

  function renderAttempts() {
    const mine = model.selected
      ? model.attempts.filter((a) => a.task_uuid === model.selected) : [];
    attemptsTitle.textContent = model.selected ? "Attempts of " + model.selected : "Attempts";
    const key = model.selected + ":" + JSON.stringify(mine);
    if (attemptsBody.dataset.key === key && !mine.some((a) => !a.ended_at)) return;
    attemptsBody.dataset.key = key;
    attemptsBody.replaceChildren(...mine.map((a) => el("tr", { "data-attempt": a.attempt },
      el("td", {}, a.attempt),
      el("td", { class: "mono" }, a.worker_id),
      el("td", {}, a.node_name),
      el("td", {}, when(a.started_at)),
      el("td", {}, when(a.ended_at)),
      el("td", {}, duration(a.started_at, a.ended_at)),
      el("td", {}, a.ended_at ? statusTag(a.outcome) : statusTag("active")),
      el("td", { class: "exit" }, exitText(a)))));
  }

  function renderLog() {
    if (!model.selected) return;
    logTitle.textContent = "Log of " + model.selected;
    const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
    if (logBox.textContent !== model.log) logBox.textContent = model.log || "(empty)";
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  async function select(taskUuid) {
    model.selected = taskUuid;
    model.log = "";
    try {
      const task = await api("GET", `/job_tasks/${taskUuid}`);
      if (model.selected === taskUuid) model.log = task.log || "";
    } catch (err) { toast(err.message); }
    render();
  }

  function upsert(task) {
    if (!model.tasks.has(task.uuid)) model.order.push(task.uuid);
    model.tasks.set(task.uuid, task);
  }

  function onEvent(ev) {
    if (ev === null) return model.job && ["completed", "failed", "canceled"].includes(model.job.status) ? "done" : null;
    switch (ev.type) {
      case "snapshot":
        if (ev.job) { model.job = ev.job; model.tasks.clear(); model.order = []; }
        for (const t of ev.tasks || []) upsert(t);
        break;
      case "job-changed": model.job = ev.job; break;
      case "task-created": case "task-changed": {
        const before = model.tasks.get(ev.task.uuid);
        upsert(ev.task);
        // A new attempt began or one ended: read the attempts again (coalesced).
        if (!before || before.status !== ev.task.status || before.attempt !== ev.task.attempt) {
          refreshAttempts();
        }
        break;
      }
      case "task-progress": {
        const t = model.tasks.get(ev.task_uuid);
        if (t) model.tasks.set(t.uuid, { ...t, progress: ev.progress });
        break;
      }
      case "task-log":
        if (ev.task_uuid === model.selected) model.log += ev.log;
        break;
      case "task-deleted":
        model.tasks.delete(ev.task_uuid);
        model.order = model.order.filter((id) => id !== ev.task_uuid);
        break;
      default: return null;
    }
    render();
    return null;
  }

  follow(`/jobs/${encodeURIComponent(uuid)}/watch`, onEvent, abort.signal, setLive);
  loadAttempts();
  const ticker = setInterval(() => render(), 1000);  // running durations and the timeline
  return {
    stop() {
      abort.abort();
      clearInterval(ticker);
      clearTimeout(attemptsTimer);
      resized.disconnect();
    },
  };
}

function workersPage() {
  const abort = new AbortController();
  const workers = new Map();
  const body = el("tbody", { id: "workers-body" });
  const info = el("p", { class: "muted", id: "workers-info" });
  main().replaceChildren(el("h1", {}, "Workers"), info,
    el("table", { id: "workers" }, el("thead", {}, el("tr", {},
      ["Worker", "Node", "State", "Slots busy", "Cores", "RAM", "Running tasks",
        "Finished", "Failed", "Last seen", "Tags"].map((h) => el("th", {}, h)))), body));
  const render = coalesced(() => {
    const list = [...workers.values()].sort((a, b) => a.worker_id.localeCompare(b.worker_id));
    const live = list.filter((w) => w.state === "live").length;
    info.textContent = `${list.length} worker(s), ${live} live`;
    body.replaceChildren(...list.map((w) => el("tr", { "data-worker": w.worker_id },
      el("td", { class: "mono" }, w.worker_id),
      el("td", {}, w.node_name),
      el("td", {}, statusTag(w.state)),
      el("td", {}, bar(w.slots ? (w.slots - w.free_slots) / w.slots : 0,
        `${w.slots - w.free_slots}/${w.slots}`)),
      el("td", {}, w.cores),
      el("td", {}, `${Math.round(w.ram_kib / 1024)} MiB`),
      el("td", { class: "mono wrap" }, (w.task_uuids || []).join(" ")),
      el("td", {}, w.tasks_finished),
      el("td", {}, w.tasks_failed),
      el("td", {}, when(w.last_seen_at)),
      el("td", {}, (w.tags || []).join(", ")))));
  });
  function onEvent(ev) {
    if (ev === null) return null;
    if (ev.type === "snapshot") {
      workers.clear();
      for (const w of ev.workers || []) workers.set(w.worker_id, w);
    } else if (ev.type === "removed") {
      workers.delete(ev.worker.worker_id);  // pruned from the registry
    } else if (ev.worker) {
      workers.set(ev.worker.worker_id, ev.worker);
    }
    render();
    return null;
  }
  follow("/workers/watch", onEvent, abort.signal, setLive);
  return { stop() { abort.abort(); } };
}

document.addEventListener("DOMContentLoaded", () => {
  $("#sign-out").addEventListener("click", () => signOut(""));
  window.addEventListener("hashchange", route);
  route();
});
