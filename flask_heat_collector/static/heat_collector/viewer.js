/* Heatmap viewer of flask-heat-collector.
 *
 * Everything comes from the query API, with the key the user typed (or passed as #key=...) sent as
 * x-api-key. `window.HeatViewer.drawHeatmap(canvas, heatmap)` is usable on its own, e.g. to lay a
 * heatmap over the tracked page itself.
 */
(function () {
  "use strict";

  const STOPS = [[0, "#0000ff"], [0.25, "#00ffff"], [0.5, "#00ff00"], [0.75, "#ffff00"], [1, "#ff0000"]];
  let palette = null;

  function densityPalette() {
    if (palette) return palette;
    const canvas = document.createElement("canvas");
    canvas.width = 256;
    canvas.height = 1;
    const ctx = canvas.getContext("2d");
    const gradient = ctx.createLinearGradient(0, 0, 256, 0);
    for (const [stop, colour] of STOPS) gradient.addColorStop(stop, colour);
    ctx.fillStyle = gradient;
    ctx.fillRect(0, 0, 256, 1);
    palette = ctx.getImageData(0, 0, 256, 1).data;
    return palette;
  }

  function drawBackdrop(ctx, meta, width, height) {
    ctx.fillStyle = "#fafbfc";
    ctx.fillRect(0, 0, width, height);
    ctx.strokeStyle = "#e6e9ef";
    ctx.lineWidth = 1;
    for (let x = 100; x < width; x += 100) {
      ctx.beginPath(); ctx.moveTo(x + 0.5, 0); ctx.lineTo(x + 0.5, height); ctx.stroke();
    }
    for (let y = 100; y < height; y += 100) {
      ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(width, y + 0.5); ctx.stroke();
    }
    if (meta.viewport.h < height) {
      ctx.strokeStyle = "#8a94a6";
      ctx.setLineDash([8, 6]);
      ctx.beginPath(); ctx.moveTo(0, meta.viewport.h + 0.5); ctx.lineTo(width, meta.viewport.h + 0.5); ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = "#8a94a6";
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillText("fold", 6, meta.viewport.h - 6);
    }
  }

  // The largest canvas drawn (canvas px = page px): browsers refuse taller or larger ones.
  const LIMITS = { width: 10000, height: 20000, pixels: 32000000 };

  /**
   * The canvas for `heatmap` within LIMITS and what falls outside it: {width, height, radius, drawn,
   * below: {points, events, from}, right: {points, events, from}}. Points at or beyond a limit are
   * not drawn (one click at y = 10,000,000 must not make the page fail).
   */
  function layout(heatmap) {
    const { points, meta } = heatmap;
    const fullWidth = Math.max(0, Math.ceil(meta.viewport.w));
    const cell = meta.cell ? meta.cell.w : fullWidth / meta.resolution;  // square cells (SPEC 4)
    const radius = Math.max(12, 1.6 * cell);
    const width = Math.min(fullWidth, LIMITS.width);
    const maxHeight = width ? Math.min(LIMITS.height, Math.floor(LIMITS.pixels / width)) : LIMITS.height;
    // Room below the render height, so the spots of the lowest rows are not cut in half.
    const fullHeight = points.length ? meta.renderHeight + Math.ceil(radius) : meta.renderHeight;
    const result = {
      width,
      height: Math.max(0, Math.min(fullHeight, maxHeight)),
      radius,
      drawn: [],
      below: { points: 0, events: 0, from: maxHeight },
      right: { points: 0, events: 0, from: width },
    };
    for (const p of points) {
      const cut = p.y >= maxHeight ? result.below : p.x >= width ? result.right : null;
      if (!cut) {
        result.drawn.push(p);
        continue;
      }
      cut.points += 1;
      cut.events += p.value;
    }
    return result;
  }

  /** What `layout(heatmap)` left out, as a sentence for the page ("" when nothing). */
  function describeCut(heatmap) {
    const { below, right } = layout(heatmap);
    const plural = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
    const parts = [];
    for (const [cut, where] of [[below, "below"], [right, "right of"]]) {
      if (!cut.points) continue;
      parts.push(`${plural(cut.points, "point")} (${plural(cut.events, "event")}) ${where} `
                 + `${cut.from.toLocaleString("en-US")} px ${cut.points === 1 ? "is" : "are"} not drawn.`);
    }
    return parts.join(" ");
  }

  /**
   * Draw `heatmap` (the body of GET /api/projects/<id>/heatmap) on `canvas`, one canvas pixel per
   * page pixel: points are page coordinates; the canvas stays within LIMITS (see `layout`).
   * `options.backdrop === false` leaves the canvas transparent (an overlay). Returns the largest
   * cell count drawn.
   */
  function drawHeatmap(canvas, heatmap, options) {
    const { meta } = heatmap;
    const { width, height, radius, drawn: points } = layout(heatmap);
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (!options || options.backdrop !== false) drawBackdrop(ctx, meta, width, height);
    if (!points.length) return 0;

    let max = 1;
    let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const p of points) {
      max = Math.max(max, p.value);
      [left, top, right, bottom] = [Math.min(left, p.x), Math.min(top, p.y), Math.max(right, p.x), Math.max(bottom, p.y)];
    }
    // The density layer covers only the spots' bounding box (a tall page is mostly empty).
    const x0 = Math.max(0, Math.floor(left - radius));
    const y0 = Math.max(0, Math.floor(top - radius));
    const x1 = Math.min(width, Math.ceil(right + radius));
    const y1 = Math.min(height, Math.ceil(bottom + radius));
    if (x1 <= x0 || y1 <= y0) return max;
    const layer = document.createElement("canvas");
    layer.width = x1 - x0;
    layer.height = y1 - y0;
    const lctx = layer.getContext("2d");
    lctx.translate(-x0, -y0);
    for (const p of points) {
      // Logarithmic, so one very hot cell does not hide the rest.
      const alpha = 0.25 + 0.75 * (Math.log(1 + p.value) / Math.log(1 + max));
      const gradient = lctx.createRadialGradient(p.x, p.y, 0, p.x, p.y, radius);
      gradient.addColorStop(0, `rgba(0, 0, 0, ${alpha})`);
      gradient.addColorStop(1, "rgba(0, 0, 0, 0)");
      lctx.fillStyle = gradient;
      lctx.fillRect(p.x - radius, p.y - radius, 2 * radius, 2 * radius);
    }
    // Colour each pixel by its accumulated density.
    const image = lctx.getImageData(0, 0, layer.width, layer.height);
    const data = image.data;
    const colours = densityPalette();
    for (let i = 3; i < data.length; i += 4) {
      const density = data[i];
      if (!density) continue;
      const at = density * 4;
      data[i - 3] = colours[at];
      data[i - 2] = colours[at + 1];
      data[i - 1] = colours[at + 2];
      data[i] = Math.min(220, 30 + density);
    }
    lctx.putImageData(image, 0, 0);
    ctx.drawImage(layer, x0, y0);
    return max;
  }

  function shortId(id) {
    if (!id) return "—";
    return id.length > 13 ? `${id.slice(0, 8)}…` : id;
  }

  function formatTime(ms) {
    return new Date(ms).toISOString().replace("T", " ").slice(5, 19);  // MM-DD hh:mm:ss, UTC
  }

  function start() {
    const $ = (id) => document.getElementById(id);
    const apiBase = document.body.dataset.apiBase;
    const KEY_STORE = "flask-heat-collector:viewer-key";
    const state = { key: "", project: "", wantedPath: null };

    function status(text, isError) {
      $("status").textContent = text;
      $("status").classList.toggle("error", Boolean(isError));
    }

    async function api(path, params) {
      const url = new URL(apiBase + path, location.href);
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

    const projectPath = (suffix) => `/projects/${encodeURIComponent(state.project)}${suffix}`;

    async function pageviews() {
      const found = [];
      for (let offset = 0; offset < 5000; offset += 1000) {
        const body = await api(projectPath("/events"), { type: "pageview", limit: 1000, offset });
        found.push(...body.events);
        if (body.events.length < 1000) break;
      }
      return found;
    }

    function renderSessions(sessions, pathsBySession) {
      const tbody = $("sessions").querySelector("tbody");
      tbody.replaceChildren();
      for (const s of sessions) {
        const row = document.createElement("tr");
        row.dataset.sessionId = s.sessionId;
        const paths = [...(pathsBySession.get(s.sessionId) || [])];
        const cells = [shortId(s.sessionId), shortId(s.userId), formatTime(s.startedAt), formatTime(s.lastSeenAt),
                       String(s.eventCount), paths.join(", ")];
        const titles = [s.sessionId, s.userId || "", new Date(s.startedAt).toISOString(),
                        new Date(s.lastSeenAt).toISOString(), "", ""];
        cells.forEach((text, index) => {
          const cell = document.createElement("td");
          cell.textContent = text;
          if (titles[index]) cell.title = titles[index];
          if (index === 5) cell.className = "paths";
          row.append(cell);
        });
        row.addEventListener("click", () => {
          for (const other of tbody.querySelectorAll("tr.selected")) other.classList.remove("selected");
          row.classList.add("selected");
          $("path").value = s.firstPath;
          run(draw);
        });
        tbody.append(row);
      }
      $("session-count").textContent = `(${sessions.length})`;
    }

    function setPaths(paths) {
      const select = $("path");
      const previous = state.wantedPath ?? select.value;
      select.replaceChildren();
      const all = document.createElement("option");
      all.value = "";
      all.textContent = "(all paths)";
      select.append(all);
      for (const path of paths) {
        const option = document.createElement("option");
        option.value = path;
        option.textContent = path;
        select.append(option);
      }
      select.value = paths.includes(previous) ? previous : (paths[0] ?? "");
      state.wantedPath = null;
    }

    async function loadProject() {
      status("Loading sessions…");
      renderSessions([], new Map());
      drawHeatmap($("heatmap"), { points: [], meta: { viewport: { w: 0, h: 0 }, renderHeight: 0, resolution: 1 } });
      delete document.body.dataset.heatmapPoints;
      $("cut-note").hidden = true;
      const [body, views] = await Promise.all([api(projectPath("/sessions"), { limit: 200 }), pageviews()]);
      const pathsBySession = new Map();
      const remember = (sessionId, path) => {
        if (!pathsBySession.has(sessionId)) pathsBySession.set(sessionId, new Set());
        pathsBySession.get(sessionId).add(path);
      };
      for (const s of body.sessions) remember(s.sessionId, s.firstPath);
      for (const e of views) remember(e.sessionId, e.path);
      renderSessions(body.sessions, pathsBySession);
      const paths = new Set();
      for (const set of pathsBySession.values()) for (const path of set) paths.add(path);
      setPaths([...paths].sort());
      await draw();
    }

    async function draw() {
      if (!state.key || !state.project) return;
      const heatmap = await api(projectPath("/heatmap"), {
        path: $("path").value,
        type: $("type").value,
        resolution: $("resolution").value,
      });
      const max = drawHeatmap($("heatmap"), heatmap);
      const meta = heatmap.meta;
      $("legend-max").textContent = String(max);
      status(`${meta.plotted} of ${meta.total} events plotted (${meta.resolvedType}), viewport ${meta.bucket}, `
             + `${heatmap.points.length} cells` + (meta.warning ? `. ${meta.warning}` : "."));
      const cut = describeCut(heatmap);
      $("cut-note").textContent = cut;
      $("cut-note").hidden = !cut;
      document.body.dataset.heatmapPoints = String(heatmap.points.length);
    }

    async function run(action) {
      try {
        await action();
      } catch (err) {
        status(err.message, true);
        document.body.dataset.heatmapPoints = "error";
      }
    }

    // #key=...&project=...&path=... ; the key is taken out of the address bar at once.
    function readFragment() {
      const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
      state.key = fragment.get("key") || sessionStorage.getItem(KEY_STORE) || "";
      state.project = fragment.get("project") || "";
      state.wantedPath = fragment.get("path");
      if (fragment.has("key")) {
        sessionStorage.setItem(KEY_STORE, state.key);
        fragment.delete("key");
        const rest = fragment.toString();
        history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
      }
      $("api-key").value = state.key;
      $("project-id").value = state.project;
    }

    $("connect").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("api-key").value.trim();
      state.project = $("project-id").value.trim();
      sessionStorage.setItem(KEY_STORE, state.key);
      history.replaceState(null, "", `${location.pathname}${location.search}#project=${encodeURIComponent(state.project)}`);
      run(loadProject);
    });
    for (const id of ["path", "type", "resolution"]) $(id).addEventListener("change", () => run(draw));
    window.addEventListener("hashchange", () => {
      readFragment();
      if (state.key && state.project) run(loadProject);
    });
    readFragment();
    if (state.key && state.project) run(loadProject);
  }

  window.HeatViewer = { drawHeatmap, describeCut, LIMITS };
  if (document.getElementById("heat-viewer")) start();
})();
