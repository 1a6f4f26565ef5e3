/* The viewer page: controls, the map over the framed page, elements, scroll reach, sessions.
 *
 * Everything comes from the query API, with the key the user typed (or passed once as #key=...,
 * then removed from the address bar and kept in sessionStorage) sent as x-api-key. Every other
 * choice lives in the address's fragment (#project=...&path=...&band=...), so a view can be shared.
 */
(function () {
  "use strict";

  const HV = window.HeatViewer;
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "flask-heat-collector:viewer-key";
  const SESSIONS_PER_PAGE = 50;
  const CLICK_PAGES = 5;  // of 1,000 clicks, for highlighting an element's points
  const SESSION_PAGES = 10;  // of 500 events, for one session's map and timeline
  const DAY_MS = 86400000;
  // Device bands by viewport width (px), and the width framed when a band has no data.
  const BANDS = {
    mobile: { min: 0, max: 767, label: "mobile (< 768 px)", fallback: 400 },
    tablet: { min: 768, max: 1279, label: "tablet (768–1,279 px)", fallback: 800 },
    desktop: { min: 1280, max: Infinity, label: "desktop (≥ 1,280 px)", fallback: 1300 },
  };
  // The choices kept in the address, with their defaults (a default is left out of the address).
  const DEFAULTS = { path: "", type: "click", band: "all", from: "", to: "", resolution: "128", view: "heatmap", session: "" };

  const apiBase = document.body.dataset.apiBase;
  const pageBase = document.body.dataset.pageBase || "";
  const state = { key: "", project: "", ...DEFAULTS, sessionsOffset: 0 };
  let generation = 0;  // bumped by every render: a stale answer is dropped
  let view = null;  // what the board shows: {kind, width, height, heatmap | scrollmap | session}
  let highlighted = "";  // selector whose points are highlighted
  const clickCache = new Map();  // "path|from|to" -> Promise of click events
  const frame = HV.createPageFrame(
    { stage: $("stage"), sizer: $("sizer"), board: $("board"), frame: $("page-frame"), outline: $("outline") },
    frameChanged,
  );

  // -- small helpers ---------------------------------------------------------------------------

  function status(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  function panelStatus(id, text, isError) {
    $(id).textContent = text;
    $(id).classList.toggle("error", Boolean(isError));
  }

  function formatTime(ms) {
    return new Date(ms).toISOString().replace("T", " ").slice(5, 19);  // MM-DD hh:mm:ss, UTC
  }

  function formatOffset(ms) {
    const seconds = Math.max(0, ms) / 1000;
    const minutes = Math.floor(seconds / 60);
    return `+${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
  }

  function cell(text, options) {
    const td = document.createElement("td");
    td.textContent = text;
    if (options && options.title) td.title = options.title;
    if (options && options.className) td.className = options.className;
    return td;
  }

  /** Count work in flight in body[data-busy], so a test (or a user) can tell when the page is settled. */
  let pending = 0;
  async function busy(promise) {
    pending += 1;
    document.body.dataset.busy = "1";
    try {
      return await promise;
    } finally {
      pending -= 1;
      if (!pending) delete document.body.dataset.busy;
    }
  }

  // -- the query API ---------------------------------------------------------------------------

  async function api(suffix, params) {
    const url = new URL(`${apiBase}/projects/${encodeURIComponent(state.project)}${suffix}`, location.href);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    const response = await fetch(url, {
      headers: { "x-api-key": state.key, accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) {
      throw new Error(body && body.message ? `${body.code}: ${body.message}` : `HTTP ${response.status}`);
    }
    return body;
  }

  /** The date inputs as unix ms: from the start of the first day to the end of the last (UTC). */
  function range() {
    const from = state.from ? Date.parse(`${state.from}T00:00:00Z`) : NaN;
    const to = state.to ? Date.parse(`${state.to}T00:00:00Z`) + DAY_MS - 1 : NaN;
    return { from: Number.isNaN(from) ? undefined : from, to: Number.isNaN(to) ? undefined : to };
  }

  // -- the address ------------------------------------------------------------------------------

  /** Read the fragment; a key found there goes to sessionStorage and out of the address at once. */
  function readAddress() {
    const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.key = fragment.get("key") || sessionStorage.getItem(KEY_STORE) || "";
    if (fragment.has("key")) {
      sessionStorage.setItem(KEY_STORE, state.key);
      fragment.delete("key");
      const rest = fragment.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
    }
    state.project = fragment.get("project") || "";
    for (const [name, fallback] of Object.entries(DEFAULTS)) state[name] = fragment.get(name) ?? fallback;
    state.sessionsOffset = 0;
    $("api-key").value = state.key;
    $("project-id").value = state.project;
    $("path").value = state.path;
    // A value the controls do not offer (an edited address) falls back to the default.
    for (const name of ["type", "band", "from", "to", "resolution"]) {
      $(name).value = state[name];
      if ($(name).value !== state[name]) $(name).value = state[name] = DEFAULTS[name];
    }
    if (!["heatmap", "scroll"].includes(state.view)) state.view = DEFAULTS.view;
    for (const input of document.querySelectorAll("input[name=view]")) input.checked = input.value === state.view;
  }

  /** Write every choice but the key into the fragment (replacing the entry: no history per click). */
  function writeAddress() {
    const fragment = new URLSearchParams();
    if (state.project) fragment.set("project", state.project);
    for (const [name, fallback] of Object.entries(DEFAULTS)) {
      if (state[name] !== fallback) fragment.set(name, state[name]);
    }
    const text = fragment.toString();
    history.replaceState(null, "", location.pathname + location.search + (text ? `#${text}` : ""));
  }

  function readControls() {
    state.path = $("path").value.trim();
    for (const name of ["type", "band", "from", "to", "resolution"]) state[name] = $(name).value;
    const checked = document.querySelector("input[name=view]:checked");
    state.view = checked ? checked.value : DEFAULTS.view;
  }

  // -- the page under the map ------------------------------------------------------------------

  /** The framed page's URL for `path` (null: no page), never outside the tracked site's origin. */
  function pageUrl(path) {
    if (!path || !$("show-page").checked) return null;
    try {
      const base = new URL(pageBase || "/", location.href);
      const url = new URL(pageBase + (path.startsWith("/") ? path : `/${path}`), location.href);
      return url.origin === base.origin ? url.href : null;
    } catch (err) {
      return null;  // not a URL at all
    }
  }

  function pageShown() {
    return ["loading", "ready", "cross-origin"].includes(frame.state.status);
  }

  function frameChanged(frameState) {
    const note = $("frame-note");
    let text = frameState.message;
    if (frameState.status === "none" && view) {
      if (!$("show-page").checked) text = "The page is hidden; the map is drawn on a grid.";
      else if (!state.path) text = "Choose a path to see its page under the map.";
      else text = `The path ${state.path} does not lead to a page of the tracked site; the map is drawn on a grid.`;
    }
    note.textContent = text;
    note.hidden = !text;
    note.classList.toggle("error", ["blocked", "error"].includes(frameState.status));
    drawOverlay();
  }

  // -- drawing ----------------------------------------------------------------------------------

  /** Draw what `view` holds over the page (or over the grid when there is no page). */
  function drawOverlay() {
    if (!view) return;
    const options = { backdrop: !pageShown(), fold: true, scale: frame.state.scale, width: view.width };
    const canvas = $("heatmap");
    if (view.kind === "scroll") {
      const bands = HV.drawScrollReach(canvas, view.scrollmap, options);
      document.body.dataset.reachBands = String(bands.length);
    } else {
      const max = HV.drawHeatmap(canvas, view.heatmap, options);
      $("legend-max").textContent = String(max || "max");
    }
    drawHighlight();
  }

  /** The highlight layer: one session's numbered clicks, or the points of the hovered element. */
  function drawHighlight() {
    const layer = $("highlight");
    if (!view) return;
    const size = { width: view.width, height: frame.state.boardHeight || view.height, scale: frame.state.scale };
    if (view.kind === "session") {
      HV.drawMarkers(layer, view.session.clicks, { ...size, numbered: true });
      return;
    }
    HV.drawMarkers(layer, view.highlight || [], size);
  }

  function showView(next, pageHeight) {
    view = next;
    frame.show(pageUrl(state.path), next.width, pageHeight);
    $("export").disabled = false;
  }

  // -- device bands ----------------------------------------------------------------------------

  /** The width of an answer's chosen bucket (its band); the frame, meta.viewport.w, is the exact
   * width visitors had (1280 in bucket 1300x800), which may differ. */
  function bucketOf(meta) {
    const found = /^(\d{1,6})x\d{1,6}$/.exec(meta.bucket || "");
    return found && Number(found[1]) ? Number(found[1]) : meta.viewport.w;
  }

  /** Rows per bucket width in an answer's meta: the framed bucket's and `otherViewports`. */
  function widthCounts(meta, framedCount) {
    const counts = new Map();
    if (framedCount > 0) counts.set(bucketOf(meta), framedCount);
    for (const [width, count] of Object.entries(meta.otherViewports || {})) {
      if (count > 0) counts.set(Number(width), (counts.get(Number(width)) || 0) + count);
    }
    return counts;
  }

  /** The most common width of `band` among `counts` (ties: the narrower), or null when none. */
  function bandWidth(band, counts) {
    const { min, max } = BANDS[band];
    let best = null;
    for (const [width, count] of counts) {
      if (width < min || width > max) continue;
      if (!best || count > best.count || (count === best.count && width < best.width)) best = { width, count };
    }
    return best ? best.width : null;
  }

  /** " Based on N sessions." from a report's meta.sample, with a note when the sample is small. */
  function sampleNote(meta) {
    const sample = meta.sample;
    if (!sample) return "";
    const sessions = `${sample.sessions} session${sample.sessions === 1 ? "" : "s"}`;
    return ` Based on ${sessions}` + (sample.small ? " (small sample: read it with care)." : ".");
  }

  // -- the heatmap view ------------------------------------------------------------------------

  async function renderHeatmap(gen) {
    const params = { path: state.path, type: state.type, resolution: state.resolution, ...range() };
    let heatmap = await api("/heatmap", params);
    let empty = "";
    if (state.band !== "all") {
      const meta = heatmap.meta;
      const others = Object.values(meta.otherViewports || {}).reduce((a, b) => a + b, 0);
      const width = bandWidth(state.band, widthCounts(meta, meta.total - others));
      if (width === null) {
        empty = `No ${meta.resolvedType} data from ${BANDS[state.band].label} screens for this path and range.`;
        heatmap = {
          points: [],
          meta: { ...meta, viewport: { w: BANDS[state.band].fallback, h: 800 }, renderHeight: 800, plotted: 0, total: 0, otherViewports: {} },
        };
      } else if (width !== bucketOf(meta)) {
        heatmap = await api("/heatmap", { ...params, viewportWidth: width });
      }
    }
    if (gen !== generation) return;
    const meta = heatmap.meta;
    // The board is at least as tall as the canvas (the lowest spots reach below renderHeight).
    const height = Math.max(meta.renderHeight, HV.layout(heatmap).height);
    showView({ kind: "heatmap", heatmap, width: meta.viewport.w, band: bucketOf(meta), height }, height);
    const others = Object.keys(meta.otherViewports || {}).length;
    status(empty || `${meta.plotted} of ${meta.total} events plotted (${meta.resolvedType}), frame ${meta.viewport.w} px `
      + `wide (viewport ${meta.bucket}), ${heatmap.points.length} cells`
      + (others ? `; ${others} other width${others === 1 ? "" : "s"} not drawn (choose a device band)` : "")
      + (meta.warning ? `. ${meta.warning}` : ".") + sampleNote(meta));
    const cut = HV.describeCut(heatmap);
    $("cut-note").textContent = cut;
    $("cut-note").hidden = !cut;
    document.body.dataset.heatmapPoints = String(heatmap.points.length);
    document.body.dataset.frameWidth = String(meta.viewport.w);
    document.body.dataset.bandWidth = String(bucketOf(meta));
  }

  // -- the scroll view -------------------------------------------------------------------------

  async function renderScroll(gen) {
    const params = { path: state.path, ...range() };
    let scrollmap = await api("/scrollmap", params);
    let empty = "";
    if (state.band !== "all") {
      const meta = scrollmap.meta;
      const width = bandWidth(state.band, widthCounts(meta, meta.sessions));
      if (width === null) empty = `No scrolls from ${BANDS[state.band].label} screens for this path and range.`;
      else if (width !== meta.viewport.w) scrollmap = await api("/scrollmap", { ...params, viewportWidth: width });
      if (width === null) {
        scrollmap = { reach: [], meta: { ...meta, sessions: 0, viewport: { w: BANDS[state.band].fallback, h: 800 }, renderHeight: 800 } };
      }
    }
    if (gen !== generation) return;
    const meta = scrollmap.meta;
    const height = meta.renderHeight || meta.viewport.h;
    showView({ kind: "scroll", scrollmap, width: meta.viewport.w, height }, height);
    renderReachTable(scrollmap);
    status(empty || `Scroll reach of ${meta.sessions} session${meta.sessions === 1 ? "" : "s"}, frame ${meta.viewport.w} px wide; `
      + `the fold is at ${HV.formatPct(meta.foldPct || 0)} of the page.` + sampleNote(meta));
    $("cut-note").hidden = true;
    document.body.dataset.frameWidth = String(meta.viewport.w);
    document.body.dataset.bandWidth = String(bucketOf(meta));
  }

  function renderReachTable(scrollmap) {
    const tbody = $("reach").querySelector("tbody");
    tbody.replaceChildren();
    for (const step of scrollmap.reach) {
      const row = document.createElement("tr");
      row.dataset.depth = String(step.depth);
      row.append(cell(`${step.depth}%`), cell(String(step.sessions), { className: "num" }),
                 cell(HV.formatPct(step.pct), { className: "num" }));
      tbody.append(row);
    }
    $("reach-count").textContent = `(${scrollmap.meta.sessions} sessions)`;
    panelStatus("reach-status", scrollmap.reach.length ? "Share of sessions whose screen reached each depth of the page (the bottom edge of the viewport)." : "No scrolls.");
  }

  // -- elements --------------------------------------------------------------------------------

  async function loadElements(gen) {
    const tbody = $("elements").querySelector("tbody");
    const type = state.type === "rageclick" ? "rageclick" : "click";
    try {
      // Counted in the map's width band: the band's frame width once the map has chosen it.
      const band = state.band === "all" ? {} : { viewportWidth: document.body.dataset.bandWidth || document.body.dataset.frameWidth };
      const body = await api("/elements", { path: state.path, type, limit: 50, ...band, ...range() });
      if (gen !== generation) return;
      tbody.replaceChildren();
      body.elements.forEach((element, index) => tbody.append(elementRow(element, index)));
      $("elements-count").textContent = `(${body.elements.length})`;
      panelStatus("elements-status", body.elements.length
        ? `Most ${type === "rageclick" ? "rage-clicked" : "clicked"} first${state.path ? "" : ", on every path"}, `
          + `counted on ${body.meta.viewport.w} px wide screens as the map; hover a row to see its clicks on the map.`
        : `No ${type === "rageclick" ? "rage clicks" : "clicks"} on elements here.`);
      document.body.dataset.elements = String(body.elements.length);
    } catch (err) {
      if (gen !== generation) return;
      tbody.replaceChildren();
      panelStatus("elements-status", `Elements are not available: ${err.message}`, true);
      document.body.dataset.elements = "error";
    }
  }

  function elementRow(element, index) {
    const row = document.createElement("tr");
    row.dataset.selector = element.selector;
    row.tabIndex = 0;
    const name = cell("", { title: element.selector, className: "selector" });
    const code = document.createElement("code");
    code.textContent = element.selector;
    name.append(code);
    row.append(cell(String(index + 1)), name, cell(String(element.clicks), { className: "num" }),
               cell(String(element.sessions), { className: "num" }), cell(String(element.rageClicks), { className: "num" }));
    const on = () => busy(highlight(element.selector, row));
    const off = () => unhighlight(element.selector, row);
    row.addEventListener("mouseenter", on);
    row.addEventListener("focus", on);
    row.addEventListener("mouseleave", off);
    row.addEventListener("blur", off);
    return row;
  }

  /** The path's click events of the range (up to CLICK_PAGES pages), fetched once per path and range. */
  function clicksOfPath() {
    const { from, to } = range();
    const key = `${state.path}|${from}|${to}`;
    if (!clickCache.has(key)) {
      const load = async () => {
        const found = [];
        for (let page = 0; page < CLICK_PAGES; page += 1) {
          const body = await api("/events", { type: "click", path: state.path, from, to, limit: 1000, offset: page * 1000 });
          found.push(...body.events);
          if (body.events.length < 1000) break;
        }
        return found;
      };
      clickCache.set(key, load().catch((err) => {
        clickCache.delete(key);
        throw err;
      }));
    }
    return clickCache.get(key);
  }

  /** The viewport bucket width of a stored event, as the collector computes it. */
  function bucketWidth(event) {
    try {
      const meta = JSON.parse(event.metaJson || "{}");
      const explicit = /^(\d{1,6})x(\d{1,6})$/.exec((meta.meta && meta.meta.viewportBucket) || "");
      if (explicit && Number(explicit[1]) && Number(explicit[2])) return Number(explicit[1]);
      return Math.round(meta.viewport.w / 100) * 100;
    } catch (err) {
      return null;
    }
  }

  async function highlight(selector, row) {
    highlighted = selector;
    for (const other of $("elements").querySelectorAll("tr.active")) other.classList.remove("active");
    row.classList.add("active");
    const box = frame.outlineElement(selector);
    document.body.dataset.outline = box ? "1" : "0";
    let clicks = [];
    try {
      clicks = await clicksOfPath();
    } catch (err) {
      panelStatus("elements-status", `The clicks could not be read: ${err.message}`, true);
    }
    if (highlighted !== selector || !view || view.kind === "session") return;
    view.highlight = clicks
      .filter((e) => e.selector === selector && e.x !== null && e.y !== null && bucketWidth(e) === (view.band || view.width))
      .map((e) => ({ x: e.x, y: e.y }));
    document.body.dataset.highlighted = String(view.highlight.length);
    drawHighlight();
  }

  function unhighlight(selector, row) {
    if (highlighted !== selector) return;
    highlighted = "";
    row.classList.remove("active");
    $("outline").hidden = true;
    if (view) view.highlight = [];
    delete document.body.dataset.highlighted;
    drawHighlight();
  }

  // -- sessions --------------------------------------------------------------------------------

  let sessionsGeneration = 0;  // as `generation`, for the sessions list (paged on its own)
  async function loadSessions() {
    const tbody = $("sessions").querySelector("tbody");
    const gen = ++sessionsGeneration;
    try {
      // One more than a page, to know whether there is an older page.
      const body = await api("/sessions", { order: "desc", limit: SESSIONS_PER_PAGE + 1, offset: state.sessionsOffset, ...range() });
      if (gen !== sessionsGeneration) return;
      const sessions = body.sessions.slice(0, SESSIONS_PER_PAGE);
      tbody.replaceChildren(...sessions.map(sessionRow));
      const first = state.sessionsOffset + 1;
      $("session-count").textContent = sessions.length ? `(${first}–${state.sessionsOffset + sessions.length})` : "(0)";
      $("sessions-prev").disabled = state.sessionsOffset === 0;
      $("sessions-next").disabled = body.sessions.length <= SESSIONS_PER_PAGE;
      $("sessions-page").textContent = `page ${state.sessionsOffset / SESSIONS_PER_PAGE + 1}`;
      panelStatus("sessions-status", sessions.length ? "Newest first; choose one to see its own map and timeline." : "No sessions in this range.");
      markSelectedSession();
    } catch (err) {
      if (gen !== sessionsGeneration) return;
      tbody.replaceChildren();
      panelStatus("sessions-status", `Sessions are not available: ${err.message}`, true);
    }
  }

  function sessionRow(s) {
    const row = document.createElement("tr");
    row.dataset.sessionId = s.sessionId;
    row.tabIndex = 0;
    const user = s.externalUserId || "anonymous";
    row.append(
      cell(user, { title: `user: ${s.externalUserId || "(none)"}\nsession: ${s.sessionId}`, className: s.externalUserId ? "user" : "user anonymous" }),
      cell(formatTime(s.startedAt), { title: new Date(s.startedAt).toISOString() }),
      cell(String(s.eventCount), { className: "num" }),
      cell(s.firstPath || "", { className: "paths" }),
    );
    const open = () => {
      state.session = s.sessionId;
      writeAddress();
      render();
    };
    row.addEventListener("click", open);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") open();
    });
    return row;
  }

  function markSelectedSession() {
    for (const row of $("sessions").querySelectorAll("tbody tr")) {
      row.classList.toggle("selected", row.dataset.sessionId === state.session);
    }
  }

  /** One session's events (up to SESSION_PAGES pages of 500) and the session. */
  async function sessionDetail(sessionId) {
    const events = [];
    let session = null;
    for (let page = 0; page < SESSION_PAGES; page += 1) {
      const body = await api(`/sessions/${encodeURIComponent(sessionId)}`, { limit: 500, offset: page * 500 });
      session = body.session;
      events.push(...body.events);
      if (body.events.length < 500) break;
    }
    return { session, events };
  }

  function viewportOf(event) {
    try {
      const viewport = JSON.parse(event.metaJson || "{}").viewport;
      return viewport && viewport.w > 0 ? viewport : null;
    } catch (err) {
      return null;
    }
  }

  async function renderSession(gen) {
    const { session, events } = await sessionDetail(state.session);
    if (gen !== generation) return;
    if (!session) throw new Error(`session ${state.session} was not found in this project`);
    const onPath = (path) => events.some((e) => e.path === path && (e.type === "click" || e.type === "move"));
    const path = state.path && onPath(state.path)
      ? state.path
      : (events.find((e) => e.type === "click" || e.type === "move") || {}).path || session.firstPath || state.path;
    if (path !== state.path) {
      state.path = path;
      $("path").value = path;
      writeAddress();
    }
    const here = events.filter((e) => e.path === path && e.x !== null && e.y !== null);
    const viewport = here.map(viewportOf).find(Boolean) || { w: 1280, h: 720 };
    const height = Math.max(viewport.h, ...here.map((e) => e.y + 40));
    const moves = here.filter((e) => e.type === "move").map((e) => ({ x: e.x, y: e.y, value: 1 }));
    const clicks = here.filter((e) => e.type === "click").map((e) => ({ x: e.x, y: e.y }));
    const heatmap = {
      points: moves,
      meta: { viewport: { w: viewport.w, h: viewport.h }, renderHeight: height, resolution: 128, cell: { w: 6, h: 6 } },
    };
    const board = Math.max(height, HV.layout(heatmap).height);
    showView({ kind: "session", heatmap, width: viewport.w, height: board, session: { clicks } }, board);
    const user = session.externalUserId || "an anonymous user";
    $("session-title").textContent = `Session of ${user}, started ${formatTime(session.startedAt)} UTC: `
      + `${clicks.length} click${clicks.length === 1 ? "" : "s"} (numbered) and ${moves.length} move points on ${path}, `
      + `at its own width (${viewport.w} px).`;
    $("session-banner").hidden = false;
    renderTimeline(session, events);
    status(`Session ${session.id}: ${events.length} events.`);
    $("cut-note").hidden = true;
    document.body.dataset.frameWidth = String(viewport.w);
    document.body.dataset.sessionClicks = String(clicks.length);
    markSelectedSession();
  }

  /** One row per event (a move's points are one row), in time order, with its offset from the start. */
  function renderTimeline(session, events) {
    const tbody = $("timeline").querySelector("tbody");
    const seen = new Set();
    const rows = [];
    for (const e of [...events].sort((a, b) => a.ts - b.ts)) {
      if (seen.has(e.eventId)) continue;
      seen.add(e.eventId);
      const data = e.data || {};
      const detail = e.selector || data.name || (e.scrollDepth !== null && e.scrollDepth !== undefined ? `${e.scrollDepth}% deep` : "")
        || data.to || "";
      const row = document.createElement("tr");
      row.dataset.type = e.type;
      row.append(cell(formatOffset(e.ts - session.startedAt), { title: new Date(e.ts).toISOString() }),
                 cell(e.type), cell(e.path || ""), cell(String(detail), { className: "selector" }));
      rows.push(row);
    }
    tbody.replaceChildren(...rows);
    $("timeline-count").textContent = `(${rows.length})`;
  }

  // -- rendering ---------------------------------------------------------------------------------

  function showPanels() {
    const inSession = Boolean(state.session);
    $("timeline-panel").hidden = !inSession;
    $("session-banner").hidden = !inSession;
    $("elements-panel").hidden = inSession || state.view === "scroll";
    $("reach-panel").hidden = inSession || state.view !== "scroll";
    $("legend").hidden = state.view === "scroll" && !inSession;
    $("reach-legend").hidden = state.view !== "scroll" || inSession;
    for (const id of ["type", "resolution"]) $(id).disabled = inSession || state.view === "scroll";
    $("band").disabled = inSession;
    document.body.dataset.view = inSession ? "session" : state.view;
  }

  /** Draw the current choice: the aggregate heatmap (and elements), the scroll reach, or a session. */
  async function render() {
    if (!state.key || !state.project) return;
    const gen = ++generation;
    highlighted = "";
    $("outline").hidden = true;
    delete document.body.dataset.highlighted;
    showPanels();
    try {
      if (state.session) {
        await busy(renderSession(gen));
      } else if (state.view === "scroll") {
        await busy(renderScroll(gen));
      } else {
        await busy(renderHeatmap(gen).then(() => loadElements(gen)));  // elements in the map's band
      }
    } catch (err) {
      if (gen !== generation) return;
      clearBoard();
      status(err.message, true);
      document.body.dataset.heatmapPoints = "error";
    }
  }

  /** Nothing on the board: no page, no map (after an error, nothing stale stays on screen). */
  function clearBoard() {
    view = null;
    for (const id of ["heatmap", "highlight"]) $(id).width = $(id).height = 0;
    frame.show(null, 1, 1);
    $("export").disabled = true;
  }

  // -- paths -------------------------------------------------------------------------------------

  /** Fill the path list from the paths endpoint (most events first), by prefix. */
  async function suggestPaths(prefix) {
    try {
      const body = await api("/paths", { q: prefix, limit: 50, ...range() });
      const options = body.paths.map((p) => {
        const option = document.createElement("option");
        option.value = p.path;
        option.label = `${p.events} events, ${p.sessions} sessions`;
        return option;
      });
      $("path-options").replaceChildren(...options);
      return body.paths;
    } catch (err) {
      panelStatus("elements-status", `Paths are not available: ${err.message}`, true);
      return [];
    }
  }

  let suggestTimer = null;
  let pickTimer = null;
  function suggestSoon() {
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(() => suggestPaths($("path").value.trim()), 250);
  }

  async function loadProject() {
    status("Loading…");
    clickCache.clear();
    clearBoard();
    $("sessions").querySelector("tbody").replaceChildren();
    $("elements").querySelector("tbody").replaceChildren();
    delete document.body.dataset.heatmapPoints;
    $("cut-note").hidden = true;
    const sessions = busy(loadSessions());
    const paths = await busy(suggestPaths(""));
    if (!state.path && paths.length) {
      state.path = paths[0].path;  // the path with the most events
      $("path").value = state.path;
      writeAddress();
    }
    await Promise.all([render(), sessions]);
  }

  // -- wiring ------------------------------------------------------------------------------------

  function changed(options) {
    readControls();
    if (options && options.rangeChanged) state.sessionsOffset = 0;
    writeAddress();
    render();
    if (options && options.rangeChanged) busy(loadSessions());
  }

  async function exportView() {
    if (!view) return;
    const doc = frame.state.status === "ready" ? frame.framedDocument() : null;
    const layers = [$("heatmap"), $("highlight")];
    const width = view.width;
    const height = Math.max(frame.state.boardHeight || 0, $("heatmap").height);
    const result = await busy(HV.exportPng({ doc, layers, width, height }));
    const name = `heatmap-${(state.path || "all").replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "") || "root"}`
      + `-${view.kind}.png`;
    HV.download(result.blob, name);
    document.body.dataset.export = result.withPage ? "page" : "grid";
    const why = result.note || (result.withPage ? "" : "The page is not in the PNG (only a page of this origin can be drawn); the map is over the grid.");
    status(`Exported ${name}${result.withPage ? " (page and map)" : ""}.${why ? ` ${why}` : ""}`);
  }

  function start() {
    $("connect").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      state.project = $("project-id").value.trim();
      sessionStorage.setItem(KEY_STORE, state.key);
      state.path = "";
      state.session = "";
      $("path").value = "";
      writeAddress();
      loadProject();
    });
    for (const id of ["type", "band", "resolution"]) $(id).addEventListener("change", () => changed());
    for (const id of ["from", "to"]) $(id).addEventListener("change", () => changed({ rangeChanged: true }));
    for (const input of document.querySelectorAll("input[name=view]")) input.addEventListener("change", () => changed());
    $("path").addEventListener("input", () => {
      suggestSoon();
      // A value picked from the list is a choice; typing is not (until change: Enter or leaving the field).
      clearTimeout(pickTimer);
      const picked = [...$("path-options").options].some((o) => o.value === $("path").value);
      if (picked) pickTimer = setTimeout(() => $("path").value.trim() !== state.path && changed(), 300);
    });
    $("path").addEventListener("change", () => {
      if ($("path").value.trim() !== state.path) changed();
    });
    $("show-page").addEventListener("change", () => {
      if (view) frame.show(pageUrl(state.path), view.width, view.height);
    });
    $("back").addEventListener("click", () => {
      state.session = "";
      writeAddress();
      markSelectedSession();
      render();
    });
    $("sessions-prev").addEventListener("click", () => {
      state.sessionsOffset = Math.max(0, state.sessionsOffset - SESSIONS_PER_PAGE);
      busy(loadSessions());
    });
    $("sessions-next").addEventListener("click", () => {
      state.sessionsOffset += SESSIONS_PER_PAGE;
      busy(loadSessions());
    });
    $("export").addEventListener("click", () => exportView().catch((err) => status(`Export failed: ${err.message}`, true)));
    window.addEventListener("hashchange", () => {
      readAddress();
      if (state.key && state.project) loadProject();
    });
    readAddress();
    if (state.key && state.project) loadProject();
  }

  start();
})();
