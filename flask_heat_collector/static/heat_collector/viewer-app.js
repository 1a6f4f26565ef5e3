/* The viewer page: projects, controls, the map over the framed page, insights, elements, scroll
 * reach, sessions.
 *
 * Every panel has a state in its section's data-state: "loading" while its request runs (the old
 * content is dimmed, never shown as current), "ready", "empty", "error" (the message and the
 * answer's request id) or "notfound" (meta.projectFound: false). A panel in error is loaded again
 * by itself, with a growing delay (RETRY_FIRST_MS doubling up to RETRY_MAX_MS): no reload needed.
 *
 * Everything comes from the query API, with the key the user typed (or passed once as #key=...,
 * then removed from the address bar and kept in sessionStorage) sent as x-api-key. Every other
 * choice lives in the address's fragment (#project=...&path=...&band=...), so a view can be shared.
 */
(function () {
  "use strict";

  const HV = window.HeatViewer;
  const cell = HV.tableCell;
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "flask-heat-collector:viewer-key";
  const SESSIONS_PER_PAGE = 50;
  const CLICK_PAGES = 5;  // of 1,000 clicks, for highlighting an element's points
  const SESSION_PAGES = 10;  // of 500 events, for one session's map and timeline
  const DAY_MS = 86400000;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const TOP_ELEMENTS = 3;  // per signal, in the insights panel
  const DATE = /^\d{4}-\d{2}-\d{2}$/;
  // What a cell of each map type counts (the legend's unit).
  const UNITS = {
    click: "clicks", move: "move points", scroll: "scrolls", all: "events", pageview: "pageviews",
    custom: "custom events", input: "inputs", keyboard: "key presses", rageclick: "rage clicks",
    deadclick: "dead clicks", errorclick: "error clicks",
  };
  // The frustration signals: the name `sessions?signal=` takes, the `paths`/`elements` fields and
  // the heatmap type that maps them (SPEC 10).
  const SIGNALS = [
    { name: "rage", label: "Rage clicks", term: "Rage", pathField: "rageClicks", elementField: "rageClicks", type: "rageclick" },
    { name: "dead", label: "Dead clicks", term: "Dead", pathField: "deadClicks", elementField: "deadClicks", type: "deadclick" },
    { name: "error", label: "Error clicks", term: "Error", elementField: "errorClicks", type: "errorclick" },
    { name: "quickback", label: "Quick backs", term: "Quick back", pathField: "quickBacks" },
    { name: "scroll", label: "Excessive scrolls", term: "Excessive scroll", pathField: "excessiveScrolls" },
  ];
  // The sessions list is asked for the map's slice: sessions with an event on the path (visitedPath)
  // in the band's width (viewportWidth). A server that does not know these parameters ignores them.
  const SESSIONS_SLICE = true;
  // Device bands by viewport width (px), and the width framed when a band has no data.
  const BANDS = {
    mobile: { min: 0, max: 767, label: "mobile (< 768 px)", fallback: 400 },
    tablet: { min: 768, max: 1279, label: "tablet (768–1,279 px)", fallback: 800 },
    desktop: { min: 1280, max: Infinity, label: "desktop (≥ 1,280 px)", fallback: 1300 },
  };
  // The choices kept in the address, with their defaults (a default is left out of the address).
  const DEFAULTS = {
    path: "", type: "click", band: "all", from: "", to: "", resolution: "128", view: "heatmap", session: "", signal: "", anchor: "auto",
    mode: "map", a: "", b: "", cmap: "sides",  // compare mode (viewer-compare.js): the two slices and the map shown
  };
  // How the heatmap places rows of another exact width than the frame's (SPEC 4, 1b); on a tie, auto
  // keeps the first.
  const ANCHORS = ["left", "center", "scale"];

  const apiBase = document.body.dataset.apiBase;
  const pageBase = document.body.dataset.pageBase || "";
  const siteUrlSet = Boolean(document.body.dataset.siteUrl);
  const state = { key: "", project: "", ...DEFAULTS, sessionsOffset: 0 };
  let generation = 0;  // bumped by every render: a stale answer is dropped
  let view = null;  // what the board shows: {kind, width, height, heatmap | scrollmap | session}
  let highlighted = "";  // selector whose points are highlighted
  const clickCache = new Map();  // "path|from|to" -> Promise of click events
  const compare = HV.createCompare({
    state, api, busy, pageUrl, writeAddress, sharedParams, panelState, panelFailed,
  });
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

  /** A failed answer of the query API: its code, message and request id (SPEC 5). */
  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.message ? body.message : `The collector answered HTTP ${status}.`);
      this.status = status;
      this.code = (body && body.code) || `http_${status}`;
      this.requestId = (body && body.requestId) || "";
    }
  }

  /** A project endpoint answered meta.projectFound: false. */
  class ProjectNotFound extends Error {
    constructor(project) {
      super(`No such project: ${project}. Choose one from the list.`);
      this.project = project;
    }
  }

  // The row count beside a panel's title.
  const PANEL_COUNTS = { elements: "elements-count", sessions: "session-count" };

  // Panels whose last load failed, and the pending retry.
  const failed = new Set();
  let retryDelay = 0;
  let retryTimer = null;

  /**
   * Put panel `name` (map, insights, elements, reach, sessions) in state `value` with `text`; an
   * error's code and request id are added, and a panel in error is retried by itself.
   */
  function panelState(name, value, text, err) {
    $(`${name}-panel`).dataset.state = value;
    // A failed panel has no rows: the count of the last answer beside its title goes with them.
    if ((value === "error" || value === "notfound") && PANEL_COUNTS[name]) $(PANEL_COUNTS[name]).textContent = "";
    const target = name === "map" ? $("status") : $(`${name}-status`);
    const parts = [text];
    if (err instanceof ApiError) {
      const id = document.createElement("span");
      id.className = "request-id";
      id.textContent = err.requestId || "(none)";
      parts.push(` (${err.code}; request id `, id, ")");
    }
    if (value === "error" && retriable(err)) {
      failed.add(name);
      parts.push(` Trying again in ${Math.round(scheduleRetry() / 1000)} s.`);
    } else if (value !== "loading") {
      failed.delete(name);
      if (!failed.size) retryDelay = 0;
    }
    target.replaceChildren(...parts);
    target.classList.toggle("error", value === "error" || value === "notfound");
  }

  /** Worth asking again by itself: the collector was unreachable, failed (5xx) or was busy (429); a
   * refused key or a bad parameter (other 4xx) stays as it is until the user changes something. */
  function retriable(err) {
    return !(err instanceof ApiError) || err.status === 0 || err.status === 429 || err.status >= 500;
  }

  /** Show `err` in panel `name`: "no such project", or the error with its request id. */
  function panelFailed(name, err, what) {
    if (err instanceof ProjectNotFound) panelState(name, "notfound", err.message);
    else panelState(name, "error", `${what}: ${err.message}`, err);
  }

  /** Load again what failed after the current delay (doubling to RETRY_MAX_MS); the delay in ms. */
  function scheduleRetry() {
    if (retryTimer) return retryDelay;
    retryDelay = retryDelay ? Math.min(RETRY_MAX_MS, retryDelay * 2) : RETRY_FIRST_MS;
    retryTimer = setTimeout(() => {
      retryTimer = null;
      if (failed.has("projects")) connect();
      else if (state.key && state.project) {
        const sessions = failed.has("sessions");
        if (failed.size > (sessions ? 1 : 0)) render();
        if (sessions) busy(loadSessions());
      }
    }, retryDelay);
    return retryDelay;
  }

  /** A unix-ms time as ISO 8601 in UTC, "2026-12-07 01:10:05" (the header or caption says UTC). */
  function formatTime(ms) {
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function formatDate(ms) {
    return ms ? new Date(ms).toISOString().slice(0, 10) : "never";
  }

  function formatOffset(ms) {
    const seconds = Math.max(0, ms) / 1000;
    const minutes = Math.floor(seconds / 60);
    return `+${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
  }

  /** A link (`href="#"`, class `className`) showing `text` that runs `action` instead of being followed. */
  function actionLink(text, className, action) {
    const link = document.createElement("a");
    link.href = "#";
    link.className = className;
    link.textContent = text;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      action();
    });
    return link;
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

  /** GET `<apiBase><suffix>` with the key; the JSON body, or an ApiError. */
  async function get(suffix, params) {
    const url = new URL(`${apiBase}${suffix}`, location.href);
    for (const [name, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
    }
    let response;
    try {
      response = await fetch(url, {
        headers: { "x-api-key": state.key, accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      throw new ApiError(0, { code: "unreachable", message: "The collector cannot be reached." });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  /** GET an endpoint of the current project; ProjectNotFound when its meta says the id is unknown. */
  async function api(suffix, params) {
    const project = state.project;
    const body = await get(`/projects/${encodeURIComponent(project)}${suffix}`, params);
    if (body && body.meta && body.meta.projectFound === false) throw new ProjectNotFound(project);
    return body;
  }

  /** The chosen days as words: "2026-11-20 to 2026-12-31 (UTC)". */
  function datesText() {
    const { from, to } = range();
    return `${from === undefined ? "the first event" : formatDate(from)} to ${to === undefined ? "now" : formatDate(to)} (UTC)`;
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
    $("path").value = state.path;
    // An older address's type=scroll is the scroll reach view.
    if (state.type === "scroll") [state.type, state.view] = [DEFAULTS.type, "scroll"];
    // A value the controls do not offer (an edited address) falls back to the default.
    for (const name of ["type", "band", "resolution", "anchor"]) {
      $(name).value = state[name];
      if ($(name).value !== state[name]) $(name).value = state[name] = DEFAULTS[name];
    }
    for (const name of ["from", "to"]) {
      if (!DATE.test(state[name])) state[name] = DEFAULTS[name];
      $(name).value = state[name];
    }
    if (!["heatmap", "scroll"].includes(state.view)) state.view = DEFAULTS.view;
    if (!SIGNALS.some((s) => s.name === state.signal)) state.signal = "";
    if (!["map", "compare"].includes(state.mode)) state.mode = DEFAULTS.mode;
    if (!["sides", "diff", "scroll"].includes(state.cmap)) state.cmap = DEFAULTS.cmap;
    for (const input of document.querySelectorAll("input[name=mode]")) input.checked = input.value === state.mode;
    compare.fillForm();
    showViewControls();
  }

  /** The type picker and the view switch show the view: "scroll reach" is both. */
  function showViewControls() {
    $("type").value = state.view === "scroll" ? "scroll" : state.type;
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

  /** The controls into `state`; `source` is the control that changed ("type" or "view" decide the view). */
  function readControls(source) {
    state.path = $("path").value.trim();
    for (const name of ["band", "resolution", "anchor"]) state[name] = $(name).value;
    for (const name of ["from", "to"]) {
      const value = $(name).value.trim();
      const valid = value === "" || (DATE.test(value) && !Number.isNaN(Date.parse(`${value}T00:00:00Z`)));
      $(name).setCustomValidity(valid ? "" : "A date as YYYY-MM-DD (UTC)");
      if (valid) state[name] = value;
    }
    const type = $("type").value;
    if (source === "type") state.view = type === "scroll" ? "scroll" : "heatmap";
    if (source === "view") {
      const checked = document.querySelector("input[name=view]:checked");
      state.view = checked ? checked.value : DEFAULTS.view;
    }
    if (type !== "scroll") state.type = type;
    showViewControls();
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
    // The page is not there: the viewer may be looking at the wrong site (the standalone collector
    // frames its own host, which serves no pages).
    if (["blocked", "error"].includes(frameState.status) && !siteUrlSet) {
      const hint = document.createElement("span");
      hint.className = "hint";
      hint.id = "site-hint";
      const code = document.createElement("code");
      code.textContent = "HEAT_VIEWER_SITE_URL";
      hint.append("The viewer frames pages of its own host. If the tracked site runs elsewhere (as with the "
        + "standalone collector), set ", code, " to the site's origin, e.g. https://shop.example.com, "
        + "so that the viewer shows its pages (see the viewer docs).");
      note.append(hint);
    }
    note.hidden = !text;
    note.classList.toggle("error", ["blocked", "error"].includes(frameState.status));
    dimPage();
    drawOverlay();
  }

  /** Dim the framed page under the heat ("Dim the page"), so that faint spots stay visible. */
  function dimPage() {
    $("board").classList.toggle("dim", $("dim-page").checked && pageShown() && Boolean(view) && view.kind !== "session");
  }

  // -- drawing ----------------------------------------------------------------------------------

  /** Draw what `view` holds over the page (or over the grid when there is no page). */
  function drawOverlay() {
    if (!view) return;
    const options = { backdrop: !pageShown(), fold: true, scale: frame.state.scale, width: view.width, muted: Boolean(view.muted) };
    const canvas = $("heatmap");
    if (view.kind === "scroll") {
      const bands = HV.drawScrollReach(canvas, view.scrollmap, options);
      document.body.dataset.reachBands = String(bands.length);
    } else {
      const max = HV.drawHeatmap(canvas, view.heatmap, options);
      view.max = max;
      $("legend-max").textContent = String(max || "max");
    }
    drawHighlight();
  }

  /** The legend's unit and the small-sample note of a report's meta; the colours are muted for a small sample. */
  function showLegend(meta, kind) {
    const sample = meta.sample || null;
    const small = Boolean(sample && sample.small && sample.sessions > 0);  // none at all: the empty state says so
    for (const id of ["legend-bar", "reach-bar"]) $(id).classList.toggle("muted", small);
    if (kind === "heatmap") {
      const side = meta.cell ? Math.round(meta.cell.w) : 0;
      $("legend-unit").textContent = `${UNITS[meta.resolvedType] || "events"} per cell`
        + (side ? ` (a cell is ${side} × ${side} px of the page)` : "");
    }
    const note = $("sample-note");
    note.hidden = !small;
    note.textContent = small
      ? `Small sample: based on ${plural(sample.sessions, "session")}, fewer than the collector's `
        + "HEAT_MIN_SAMPLE_SESSIONS. The colours are muted: read this as a few visits, not as a pattern."
      : "";
    document.body.dataset.sample = sample ? `${sample.sessions}${small ? " small" : ""}` : "";
    return small;
  }

  function plural(n, word) {
    return `${Number(n).toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
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
    dimPage();
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
    if (state.anchor !== "auto") params.anchor = state.anchor;
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
    let anchoring = null;
    if (!empty && heatmap.meta.plotted) {
      // The page framed at the map's width first: the anchoring is tried on its elements.
      const first = heatmapView(heatmap);
      showView(first, first.height);
      panelState("map", "loading", "Choosing the anchoring: where the clicks land on the page…");
      anchoring = await chooseAnchor(heatmap.meta);
      if (gen !== generation) return;
      if (anchoring.anchor !== (heatmap.meta.anchor || "left")) {
        heatmap = await api("/heatmap", { ...params, viewportWidth: bucketOf(heatmap.meta), anchor: anchoring.anchor });
        if (gen !== generation) return;
      }
    }
    showHeatmap(heatmap, empty, anchoring);
  }

  /** The board's view of a heatmap answer: framed at meta.viewport.w, the width visitors had (SPEC 4). */
  function heatmapView(heatmap, muted) {
    const meta = heatmap.meta;
    // The board is at least as tall as the canvas (the lowest spots reach below renderHeight).
    const height = Math.max(meta.renderHeight, HV.layout(heatmap).height);
    return { kind: "heatmap", heatmap, width: meta.viewport.w, band: bucketOf(meta), anchor: meta.anchor || "left", height, muted };
  }

  function showHeatmap(heatmap, empty, anchoring) {
    const meta = heatmap.meta;
    const next = heatmapView(heatmap, showLegend(meta, "heatmap"));
    showView(next, next.height);
    const others = Object.keys(meta.otherViewports || {}).length;
    // The frame is meta.viewport.w: the width visitors had (SPEC 4), whatever the bucket's label.
    const text = empty || `${meta.plotted} of ${meta.total} events plotted (${meta.resolvedType}), frame ${meta.viewport.w} px `
      + `wide (the width visitors had, bucket ${meta.bucket || `${bucketOf(meta)}x${meta.viewport.h}`}), ${heatmap.points.length} cells`
      + (others ? `; ${others} other width${others === 1 ? "" : "s"} not drawn`
        + (state.band === "all" ? " (choose a device band)" : ` (other widths than ${meta.viewport.w} px)`) : "")
      + (meta.warning ? `. ${meta.warning}` : ".") + anchorNote(anchoring) + sampleNote(meta);
    if (!meta.total && !empty) {
      panelState("map", "empty", `No events in this slice (${state.path || "every path"}, `
        + `${state.band === "all" ? "all widths" : BANDS[state.band].label}, ${datesText()}): nothing to draw.`);
    } else panelState("map", empty || !meta.plotted ? "empty" : "ready", text);
    const cut = HV.describeCut(heatmap);
    $("cut-note").textContent = cut;
    $("cut-note").hidden = !cut;
    document.body.dataset.heatmapPoints = String(heatmap.points.length);
    document.body.dataset.frameWidth = String(meta.viewport.w);
    document.body.dataset.bandWidth = String(bucketOf(meta));
    document.body.dataset.anchor = next.anchor;
    document.body.dataset.anchorHow = anchoring ? anchoring.how : "";
  }

  // -- anchoring -------------------------------------------------------------------------------

  /** Where a click at `x` on a `width`-wide screen lands on a `frameWidth`-wide map (as the server places it). */
  function placeX(x, width, frameWidth, anchor) {
    if (anchor === "center") return x + (frameWidth - width) / 2;
    if (anchor === "scale" && width > 0) return x * frameWidth / width;
    return x;
  }

  /**
   * How many of the band's clicks with a selector land inside their element's box on the framed
   * page, for each anchoring: {inside: {left, center, scale}, total}. Clicks whose selector matches
   * nothing on the page are not counted.
   */
  function countInside(doc, clicks, frameWidth, band) {
    const win = doc.defaultView;
    const boxes = new Map();  // selector -> box in page px, or null
    const boxOf = (selector) => {
      if (!boxes.has(selector)) {
        let box = null;
        try {
          const element = doc.querySelector(selector);
          const r = element ? element.getBoundingClientRect() : null;
          if (r && r.width > 0 && r.height > 0) {
            box = { left: r.left + win.scrollX, right: r.right + win.scrollX, top: r.top + win.scrollY, bottom: r.bottom + win.scrollY };
          }
        } catch (err) {
          box = null;  // a selector this browser cannot parse
        }
        boxes.set(selector, box);
      }
      return boxes.get(selector);
    };
    const inside = { left: 0, center: 0, scale: 0 };
    let total = 0;
    for (const e of clicks) {
      const viewport = viewportOf(e);
      if (!e.selector || e.x === null || e.y === null || !viewport || bucketWidth(e) !== band) continue;
      const box = boxOf(e.selector);
      if (!box) continue;
      total += 1;
      for (const anchor of ANCHORS) {
        const x = placeX(e.x, viewport.w, frameWidth, anchor);
        if (x >= box.left && x <= box.right && e.y >= box.top && e.y <= box.bottom) inside[anchor] += 1;
      }
    }
    return { inside, total };
  }

  /**
   * The map's anchoring: the one chosen by hand, or (auto) the one that puts the most clicks with a
   * selector inside their element on the framed page. Only a same-origin page can be looked into:
   * otherwise auto is left. {anchor, how: "auto" | "manual" | "unchecked", scores, why}
   */
  async function chooseAnchor(meta) {
    const frameState = await frame.settled();
    const doc = frameState.status === "ready" ? frame.framedDocument() : null;
    let scores = null;
    let why = frameState.status === "cross-origin"
      ? "the page is of another origin, so the clicks cannot be checked on it: choose the anchor by hand"
      : "no page to check the clicks on";
    if (doc) {
      try {
        scores = countInside(doc, await clicksOfPath(), meta.viewport.w, bucketOf(meta));
        why = scores.total ? "" : "no click with a selector lands on an element of this page";
      } catch (err) {
        why = `the clicks could not be read: ${err.message}`;
      }
    }
    if (state.anchor !== "auto") return { anchor: state.anchor, how: "manual", scores, why };
    if (!scores || !scores.total) return { anchor: "left", how: "unchecked", scores, why };
    const best = ANCHORS.reduce((a, b) => (scores.inside[b] > scores.inside[a] ? b : a));
    return { anchor: best, how: "auto", scores, why };
  }

  /** " Anchored: center (auto: 12 of 12 clicks inside their element; left 6, scale 9)." */
  function anchorNote(anchoring) {
    document.body.dataset.anchorScores = anchoring && anchoring.scores ? JSON.stringify(anchoring.scores) : "";
    if (!anchoring) return "";
    const { anchor, how, scores, why } = anchoring;
    let counts = "";
    if (scores && scores.total) {
      const others = ANCHORS.filter((a) => a !== anchor);
      const same = others.every((a) => scores.inside[a] === scores.inside[anchor]);
      counts = `${scores.inside[anchor]} of ${plural(scores.total, "click")} inside their element`
        + (same ? ", whichever the anchoring" : `; ${others.map((a) => `${a} ${scores.inside[a]}`).join(", ")}`);
    }
    if (how === "auto") return ` Anchored: ${anchor} (auto: ${counts}).`;
    if (how === "manual") return ` Anchored: ${anchor} (chosen by hand${counts ? `: ${counts}` : ""}).`;
    return ` Anchored: ${anchor} (${why}).`;
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
      else if (width !== bucketOf(meta)) scrollmap = await api("/scrollmap", { ...params, viewportWidth: width });
      if (width === null) {
        scrollmap = { reach: [], meta: { ...meta, sessions: 0, viewport: { w: BANDS[state.band].fallback, h: 800 }, renderHeight: 800 } };
      }
    }
    if (gen !== generation) return;
    const meta = scrollmap.meta;
    const muted = showLegend(meta, "scroll");
    // The whole page the visitors scrolled (meta.pageHeight, SPEC 4), not only where events landed.
    const height = Math.round(meta.pageHeight || meta.renderHeight || meta.viewport.h);
    showView({ kind: "scroll", scrollmap, width: meta.viewport.w, height, muted }, height);
    renderReachTable(scrollmap);
    const foldPx = Math.round((meta.foldPct || 0) / 100 * height);
    panelState("map", empty || !meta.sessions ? "empty" : "ready", empty
      || `Scroll reach of ${plural(meta.sessions, "session")}, frame ${meta.viewport.w} px wide; the page is ${height} px `
      + `high and the fold is at ${HV.formatPct(meta.foldPct || 0)} of it (${foldPx} px).` + sampleNote(meta));
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
    $("reach-count").textContent = `(${plural(scrollmap.meta.sessions, "session")})`;
    panelState("reach", scrollmap.meta.sessions ? "ready" : "empty", scrollmap.meta.sessions
      ? "Share of sessions whose screen reached each depth of the page (the bottom edge of the viewport)."
      : "No sessions on this path in this slice.");
  }

  // -- elements --------------------------------------------------------------------------------

  /** The elements of the map's slice (and from them, with the path's counts, the insights panel). */
  async function loadElements(gen) {
    const tbody = $("elements").querySelector("tbody");
    const type = state.type === "rageclick" ? "rageclick" : "click";
    // With a dead- or error-click map, the elements are ranked by that signal.
    const signal = SIGNALS.find((s) => s.type === state.type && s.type !== "rageclick");
    panelState("elements", "loading", "Loading the elements…");
    panelState("insights", "loading", "Loading the signals…");
    let body = null;
    try {
      // Counted in the map's width band: the band's frame width once the map has chosen it.
      const band = state.band === "all" ? {} : { viewportWidth: document.body.dataset.bandWidth || document.body.dataset.frameWidth };
      body = await api("/elements", { path: state.path, type, limit: 500, ...band, ...range() });
      if (gen !== generation) return;
      let shown = body.elements;
      if (signal) shown = shown.filter((e) => e[signal.elementField] > 0).sort((a, b) => b[signal.elementField] - a[signal.elementField]);
      shown = shown.slice(0, 50);
      tbody.replaceChildren(...shown.map(elementRow));
      $("elements-count").textContent = `(${shown.length})`;
      const what = signal ? signal.label.toLowerCase() : type === "rageclick" ? "rage clicks" : "clicks";
      panelState("elements", shown.length ? "ready" : "empty", shown.length
        ? `Most ${what} first${state.path ? "" : ", on every path"}, counted in the map's `
          + `${body.meta.viewport.w} px bucket; hover a row to see its clicks on the map.`
        : `No ${what} on elements here.`);
      document.body.dataset.elements = String(shown.length);
    } catch (err) {
      if (gen !== generation) return;
      tbody.replaceChildren();
      panelFailed("elements", err, "Elements are not available");
      panelFailed("insights", err, "Signals are not available");
      document.body.dataset.elements = "error";
      return;
    }
    await loadInsights(gen, body);
  }

  function elementRow(element, index) {
    const count = (n) => cell(String(n || 0), { className: "num" });
    const row = document.createElement("tr");
    row.dataset.selector = element.selector;
    row.tabIndex = 0;
    const name = cell("", { title: element.selector, className: "selector" });
    const code = document.createElement("code");
    code.textContent = element.selector;
    name.append(code);
    row.append(cell(String(index + 1)), name, count(element.clicks), count(element.sessions),
               count(element.rageClicks), count(element.deadClicks), count(element.errorClicks));
    const on = () => busy(highlight(element.selector, row));
    const off = () => unhighlight(element.selector, row);
    row.addEventListener("mouseenter", on);
    row.addEventListener("focus", on);
    row.addEventListener("mouseleave", off);
    row.addEventListener("blur", off);
    return row;
  }

  // -- insights --------------------------------------------------------------------------------

  /**
   * The insights panel of the path: each signal's count (the `paths` answer's counts on the path over
   * the dates; error clicks: the sum over its elements in the map's band), its top elements, a link
   * to the sessions with it and, for click signals, to its map.
   */
  async function loadInsights(gen, elementsBody) {
    let found = null;
    try {
      if (state.path) {
        const body = await api("/paths", { q: state.path, limit: 500, ...range() });
        found = body.paths.find((p) => p.path === state.path) || null;
      }
    } catch (err) {
      if (gen !== generation) return;
      panelFailed("insights", err, "Signals are not available");
      return;
    }
    if (gen !== generation) return;
    const rows = SIGNALS.map((signal) => {
      let count = null;
      if (signal.pathField && found) count = found[signal.pathField] || 0;
      else if (signal.pathField) count = state.path ? 0 : null;
      else if (state.path) count = elementsBody.elements.reduce((sum, e) => sum + (e[signal.elementField] || 0), 0);
      const tops = signal.elementField
        ? elementsBody.elements.filter((e) => e[signal.elementField] > 0)
          .sort((a, b) => b[signal.elementField] - a[signal.elementField]).slice(0, TOP_ELEMENTS)
        : [];
      return insightRow(signal, count, tops);
    });
    $("insights").querySelector("tbody").replaceChildren(...rows);
    const total = SIGNALS.length;
    $("insights-count").textContent = state.path ? `on ${state.path}` : "";
    panelState("insights", state.path ? "ready" : "empty", state.path
      ? "Counts on the path over the dates (error clicks and top elements: in the map's band). "
        + "Sessions opens the sessions list filtered by the signal; map shows where it happened."
      : `Choose a path to see its ${total} signals.`);
  }

  function insightRow(signal, count, tops) {
    const row = document.createElement("tr");
    row.dataset.signal = signal.name;
    const term = [...document.querySelectorAll("#insights-panel dl.caption dt")].find((dt) => dt.textContent === signal.term);
    if (term) row.title = `${signal.term}: ${term.nextElementSibling.textContent}`;
    const list = cell("", { className: "tops" });
    for (const element of tops) {
      const code = document.createElement("code");
      code.textContent = element.selector;
      list.append(code, ` ${element[signal.elementField]}`, document.createElement("br"));
    }
    if (!tops.length) list.textContent = signal.elementField ? "–" : "(not per element)";
    const links = cell("");
    links.append(actionLink("sessions", "sessions-link", () => {
      state.signal = signal.name;
      state.sessionsOffset = 0;
      writeAddress();
      busy(loadSessions());
      $("sessions-panel").scrollIntoView({ block: "nearest" });
    }));
    if (signal.type) {
      links.append(" · ", actionLink("map", "map-link", () => {
        $("type").value = signal.type;
        changed({ source: "type" });
      }));
    }
    row.append(cell(signal.label), cell(count === null ? "–" : String(count), { className: "num" }), list, links);
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
    // Placed as the map places them: a click of another exact width by the map's anchoring.
    view.highlight = clicks
      .filter((e) => e.selector === selector && e.x !== null && e.y !== null && bucketWidth(e) === (view.band || view.width))
      .map((e) => {
        const viewport = viewportOf(e);
        return { x: viewport ? placeX(e.x, viewport.w, view.width, view.anchor) : e.x, y: e.y };
      });
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

  /**
   * The sessions list's slice, as the map's: the dates, sessions with an event on the path
   * (`visitedPath`) and, with a band chosen, at the band's frame width (`viewportWidth`).
   */
  function sessionsSlice() {
    const slice = { ...range() };
    if (SESSIONS_SLICE && state.path) slice.visitedPath = state.path;
    const band = document.body.dataset.bandWidth || document.body.dataset.frameWidth;  // the bucket's width
    if (SESSIONS_SLICE && state.band !== "all" && band) slice.viewportWidth = band;
    if (state.signal) slice.signal = state.signal;
    return slice;
  }

  let sessionsGeneration = 0;  // as `generation`, for the sessions list (paged on its own)
  async function loadSessions() {
    const tbody = $("sessions").querySelector("tbody");
    const gen = ++sessionsGeneration;
    const signal = SIGNALS.find((s) => s.name === state.signal);
    $("sessions-filter").hidden = !signal;
    $("sessions-filter-text").textContent = signal ? `Only sessions with ${signal.label.toLowerCase()}. ` : "";
    panelState("sessions", "loading", "Loading the sessions…");
    try {
      // One more than a page, to know whether there is an older page.
      const body = await api("/sessions", { order: "desc", limit: SESSIONS_PER_PAGE + 1, offset: state.sessionsOffset, ...sessionsSlice() });
      if (gen !== sessionsGeneration) return;
      const sessions = body.sessions.slice(0, SESSIONS_PER_PAGE);
      tbody.replaceChildren(...sessions.map(sessionRow));
      const first = state.sessionsOffset + 1;
      $("session-count").textContent = sessions.length ? `(${first}–${state.sessionsOffset + sessions.length})` : "(0)";
      $("sessions-prev").disabled = state.sessionsOffset === 0;
      $("sessions-next").disabled = body.sessions.length <= SESSIONS_PER_PAGE;
      $("sessions-page").textContent = `page ${state.sessionsOffset / SESSIONS_PER_PAGE + 1}`;
      panelState("sessions", sessions.length ? "ready" : "empty", sessions.length
        ? "Newest first; choose one to see its own map and timeline."
        : `No sessions in this slice${signal ? ` with ${signal.label.toLowerCase()}` : ""}.`);
      markSelectedSession();
    } catch (err) {
      if (gen !== sessionsGeneration) return;
      tbody.replaceChildren();
      panelFailed("sessions", err, "Sessions are not available");
    }
  }

  /** A session's signal counts, "R2 D1" (rage, dead, error, quick back, excessive scroll). */
  function signalSummary(signals) {
    const letters = { rage: "R", dead: "D", error: "E", quickback: "Q", scroll: "S" };
    return Object.entries(letters).filter(([name]) => signals && signals[name] > 0)
      .map(([name, letter]) => `${letter}${signals[name]}`).join(" ");
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
      cell(signalSummary(s.signals), { title: "R rage, D dead, E error clicks; Q quick backs; S excessive scrolls" }),
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
    $("legend-unit").textContent = "move points per cell (this session's moves; its clicks are numbered)";
    $("sample-note").hidden = true;
    showView({ kind: "session", heatmap, width: viewport.w, height: board, session: { clicks } }, board);
    const user = session.externalUserId || "an anonymous user";
    $("session-title").textContent = `Session of ${user}, started ${formatTime(session.startedAt)} UTC: `
      + `${clicks.length} click${clicks.length === 1 ? "" : "s"} (numbered) and ${moves.length} move points on ${path}, `
      + `at its own width (${viewport.w} px).`;
    $("session-banner").hidden = false;
    renderTimeline(session, events);
    panelState("map", "ready", `Session ${session.id}: ${events.length} events.`);
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
    const comparing = state.mode === "compare";
    for (const id of ["compare-panel", "compare-elements-panel", "compare-reach-panel"]) $(id).hidden = !comparing;
    if (comparing) {
      for (const id of ["map-panel", "timeline-panel", "elements-panel", "insights-panel", "reach-panel", "sessions-panel"]) $(id).hidden = true;
      document.body.dataset.view = "compare";
      return;
    }
    $("map-panel").hidden = false;
    $("sessions-panel").hidden = false;
    const inSession = Boolean(state.session);
    $("timeline-panel").hidden = !inSession;
    $("session-banner").hidden = !inSession;
    $("elements-panel").hidden = inSession || state.view === "scroll";
    $("insights-panel").hidden = inSession || state.view === "scroll";
    $("reach-panel").hidden = inSession || state.view !== "scroll";
    $("legend").hidden = (state.view === "scroll" && !inSession);
    $("reach-legend").hidden = state.view !== "scroll" || inSession;
    $("type").disabled = inSession;
    $("resolution").disabled = inSession || state.view === "scroll";
    $("anchor").disabled = inSession || state.view === "scroll";
    $("band").disabled = inSession;
    document.body.dataset.view = inSession ? "session" : state.view;
  }

  /** Draw the current choice: the aggregate heatmap (and elements), the scroll reach, or a session. */
  async function render() {
    if (!state.key || !state.project) return;
    const gen = ++generation;
    if (state.mode === "compare") {
      showPanels();
      await busy(compare.render(() => gen === generation));
      return;
    }
    highlighted = "";
    $("outline").hidden = true;
    delete document.body.dataset.highlighted;
    showPanels();
    const what = state.session ? "the session" : state.view === "scroll" ? "the scroll reach"
      : `the ${UNITS[state.type] || state.type} map`;
    panelState("map", "loading", `Loading ${what}…`);
    // Nothing of the previous answer reads as current: its sample note and legend maximum go.
    $("cut-note").hidden = true;
    $("sample-note").hidden = true;
    $("legend-max").textContent = "max";
    const heatmapView = !state.session && state.view !== "scroll";
    if (state.view === "scroll" && !state.session) panelState("reach", "loading", "Loading the scroll reach…");
    if (heatmapView) {
      panelState("elements", "loading", "Loading the elements…");
      panelState("insights", "loading", "Loading the signals…");
    }
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
      panelFailed("map", err, state.session ? "The session is not available" : "The map is not available");
      if (state.view === "scroll" && !state.session) {
        panelFailed("reach", err, "The scroll reach is not available");
        $("reach").querySelector("tbody").replaceChildren();
      }
      if (heatmapView && $("elements-panel").dataset.state === "loading") {
        // They follow the map's band: not loaded while the map fails.
        for (const name of ["elements", "insights"]) {
          $(name).querySelector("tbody").replaceChildren();
          panelFailed(name, err, "Not loaded, as the map failed");
        }
      }
      document.body.dataset.heatmapPoints = "error";
    }
  }

  /** Nothing on the board: no page, no map (after an error, nothing stale stays on screen). */
  function clearBoard() {
    view = null;
    $("sample-note").hidden = true;
    for (const id of ["heatmap", "highlight"]) $(id).width = $(id).height = 0;
    frame.show(null, 1, 1);
    $("export").disabled = true;
  }

  /** What both sides of a comparison share unless a side says otherwise: the map's path, dates and
   * device band (the band's frame width once a map in that band has chosen it). */
  function sharedParams() {
    const shared = { path: state.path, ...range() };
    const width = document.body.dataset.bandWidth;
    if (state.band !== "all" && width) shared.viewportWidth = width;
    return shared;
  }

  // -- paths -------------------------------------------------------------------------------------

  /** Fill the path list from the paths endpoint (most events first), by prefix. */
  async function suggestPaths(prefix, quiet) {
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
      if (quiet) return [];  // only suggestions: the map says what is wrong
      throw err;
    }
  }

  let suggestTimer = null;
  let pickTimer = null;
  function suggestSoon() {
    clearTimeout(suggestTimer);
    suggestTimer = setTimeout(() => suggestPaths($("path").value.trim(), true), 250);
  }

  async function loadProject() {
    panelState("map", "loading", "Loading the project…");
    clickCache.clear();
    clearBoard();
    for (const id of ["sessions", "elements", "insights", "reach"]) $(id).querySelector("tbody").replaceChildren();
    delete document.body.dataset.heatmapPoints;
    $("cut-note").hidden = true;
    let paths = [];
    try {
      paths = await busy(suggestPaths(""));
    } catch (err) {
      panelFailed("map", err, "The project's paths are not available");
      if (!(err instanceof ProjectNotFound)) return;
      for (const name of ["elements", "insights", "sessions"]) panelState(name, "notfound", err.message);
      return;
    }
    if (!state.path && paths.length) {
      state.path = paths[0].path;  // the path with the most events
      $("path").value = state.path;
      writeAddress();
    }
    // With a band, the sessions wait for the map: their width is the map's frame width.
    if (state.band === "all") await Promise.all([render(), busy(loadSessions())]);
    else {
      await render();
      await busy(loadSessions());
    }
  }

  // -- projects ----------------------------------------------------------------------------------

  /** List the projects the key may read into the picker (GET /api/projects), then load the chosen one. */
  async function connect() {
    panelState("map", "loading", "Loading the projects…");
    $("projects-panel").dataset.state = "loading";
    let projects;
    try {
      projects = (await busy(get("/projects"))).projects;
    } catch (err) {
      panelState("projects", "error", "Projects not loaded.");
      panelFailed("map", err, "The projects are not available");
      return;
    }
    failed.delete("projects");
    const select = $("project-id");
    const options = projects.map((p) => {
      const option = document.createElement("option");
      option.value = p.id;
      option.textContent = `${p.name || "(no name)"} · last event ${formatDate(p.lastEventAt)} · ${p.id}`;
      return option;
    });
    if (state.project && !projects.some((p) => p.id === state.project)) {
      const option = document.createElement("option");
      option.value = state.project;
      option.textContent = `${state.project} (not a project this key may read)`;
      options.push(option);
    }
    if (!state.project && projects.length === 1) state.project = projects[0].id;
    const prompt = document.createElement("option");
    prompt.value = "";
    prompt.textContent = projects.length ? "Choose a project" : "(no project yet)";
    select.replaceChildren(prompt, ...options);
    select.value = state.project;
    select.disabled = false;
    $("projects-panel").dataset.state = projects.length ? "ready" : "empty";
    document.body.dataset.projects = String(projects.length);
    if (state.project) {
      writeAddress();
      await loadProject();
    } else {
      panelState("map", "empty", projects.length
        ? "Choose a project."
        : "This key may read no project yet: a project appears with the first batch the SDK sends.");
    }
  }

  // -- wiring ------------------------------------------------------------------------------------

  /** A control changed: draw again; the sessions list follows the slice (path, band, dates). */
  async function changed(options) {
    const before = `${state.path}|${state.band}|${state.from}|${state.to}`;
    readControls(options && options.source);
    const slice = `${state.path}|${state.band}|${state.from}|${state.to}`;
    if (slice !== before) state.sessionsOffset = 0;
    writeAddress();
    await render();
    if (slice !== before) await busy(loadSessions());
  }

  /** The export's caption band: what the picture shows (path, type, band, dates, sample) and its legend. */
  function exportCaption() {
    const meta = view.kind === "scroll" ? view.scrollmap.meta : view.kind === "heatmap" ? view.heatmap.meta : null;
    const type = view.kind === "scroll" ? "scroll reach" : view.kind === "session" ? `session ${state.session}`
      : `${UNITS[meta.resolvedType] || meta.resolvedType} map`;
    const band = state.band === "all" ? "all widths" : BANDS[state.band].label;
    const dates = datesText();
    const sample = meta && meta.sample
      ? `based on ${plural(meta.sample.sessions, "session")}${meta.sample.small ? " (small sample)" : ""}` : "";
    const lines = [
      `${state.path || "every path"} · ${type} · ${band} · ${view.width} px wide`
        + (view.kind === "heatmap" ? ` · anchored ${view.anchor}` : ""),
      [dates, sample].filter(Boolean).join(" · "),
    ];
    const legend = view.kind === "scroll"
      ? { low: "0%", high: "100%", unit: "% of sessions whose screen reached the depth", muted: view.muted }
      : view.kind === "heatmap" ? { low: "1", high: String(view.max || 1), unit: $("legend-unit").textContent, muted: view.muted }
        : null;
    return { lines, legend };
  }

  async function exportView() {
    if (!view) return;
    const doc = frame.state.status === "ready" ? frame.framedDocument() : null;
    const layers = [$("heatmap"), $("highlight")];
    const width = view.width;
    const height = Math.max(frame.state.boardHeight || 0, $("heatmap").height);
    const caption = exportCaption();
    document.body.dataset.exportCaption = caption.lines.join("\n");
    const dim = $("board").classList.contains("dim");
    const result = await busy(HV.exportPng({ doc, layers, width, height, caption, dim }));
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
      sessionStorage.setItem(KEY_STORE, state.key);
      connect();
    });
    $("project-id").addEventListener("change", () => {
      state.project = $("project-id").value;
      state.path = "";
      state.session = "";
      state.signal = "";
      state.sessionsOffset = 0;
      $("path").value = "";
      writeAddress();
      if (state.project) loadProject();
    });
    $("type").addEventListener("change", () => changed({ source: "type" }));
    for (const id of ["band", "resolution", "anchor", "from", "to"]) $(id).addEventListener("change", () => changed());
    for (const input of document.querySelectorAll("input[name=view]")) input.addEventListener("change", () => changed({ source: "view" }));
    $("dim-page").addEventListener("change", dimPage);
    for (const input of document.querySelectorAll("input[name=mode]")) {
      input.addEventListener("change", () => {
        state.mode = input.value;
        writeAddress();
        render();
      });
    }
    $("compare-form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (!compare.readForm()) {
        $("compare-form").reportValidity();
        return;
      }
      writeAddress();
      render();
    });
    $("sessions-filter-clear").addEventListener("click", () => {
      state.signal = "";
      state.sessionsOffset = 0;
      writeAddress();
      busy(loadSessions());
    });
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
      const project = state.project;
      readAddress();
      if (state.key && state.project !== project) connect();
      else if (state.key && state.project) loadProject();
    });
    readAddress();
    if (state.key) connect();
  }

  start();
})();
