/* The viewer's compare mode (HeatViewer.createCompare): two slices of the project side by side.
 *
 * Each side (A, B) is a slice of GET /api/projects/<id>/compare (docs/compare.md): `;`-separated
 * `key=value` items (from, to, viewportWidth, path or group, segment=custom:<event>.<prop>=<value>);
 * what a side leaves out is the map's (its path, device band, dates). The mode asks /compare for
 * the heatmap, the elements and the scroll map, and shows the two maps side by side over the framed
 * page (or one difference map, or the two scroll reaches overlaid), the elements and depths with
 * both sides, their difference (B − A, per session) and the test's mark, and each side's sessions.
 * Below HEAT_MIN_SAMPLE_SESSIONS on a side the answer is insufficient_data: it is said plainly and
 * no difference is shown. The slices live in the address (#mode=compare&a=...&b=...).
 */
(function () {
  "use strict";

  const HV = window.HeatViewer;
  const cell = HV.tableCell;
  const $ = (id) => document.getElementById(id);
  const DAY_MS = 86400000;
  const DATE = /^\d{4}-\d{2}-\d{2}$/;
  const SIDES = ["a", "b"];
  const COLOURS = { a: "#1f6feb", b: "#d9480f" };  // the sides' lines on the overlaid scroll reach
  const MORE = [200, 30, 30];  // difference map: more per session in B (red) ...
  const FEWER = [30, 90, 220];  // ... and fewer (blue)
  const ELEMENTS_SHOWN = 50;

  /** A slice's text as {key: value} (only the first "=" of an item splits it; docs/compare.md). */
  function parseSlice(text) {
    const items = {};
    for (const item of String(text || "").split(";")) {
      const at = item.indexOf("=");
      if (at > 0) items[item.slice(0, at).trim()] = item.slice(at + 1).trim();
    }
    return items;
  }

  /** {key: value} as a slice's text, in a fixed order, without empty values. */
  function formatSlice(items) {
    return ["from", "to", "viewportWidth", "path", "group", "segment"]
      .filter((key) => items[key])
      .map((key) => `${key}=${items[key]}`)
      .join(";");
  }

  /** A page template (/product/:id, /blog/*, /docs/**) rather than one path. */
  function isGroup(page) {
    return /(^|\/)(:[^/]+|\*\*?)(\/|$)/.test(page);
  }

  const dayOf = (ms) => new Date(Number(ms)).toISOString().slice(0, 10);

  /** A side's form fields from its slice text. */
  function fillSide(side, text) {
    const items = parseSlice(text);
    const date = (ms) => (/^-?\d{1,15}$/.test(items[ms] || "") ? dayOf(items[ms]) : "");
    $(`${side}-from`).value = date("from");
    $(`${side}-to`).value = date("to");
    $(`${side}-width`).value = items.viewportWidth || "";
    $(`${side}-page`).value = items.group || items.path || "";
    $(`${side}-segment`).value = items.segment || "";
  }

  /** A side's slice text from its form fields; null (and the field marked) when a field is invalid. */
  function readSide(side) {
    const items = {};
    let valid = true;
    for (const [name, edge] of [["from", 0], ["to", DAY_MS - 1]]) {
      const input = $(`${side}-${name}`);
      const value = input.value.trim();
      const ms = DATE.test(value) ? Date.parse(`${value}T00:00:00Z`) : NaN;
      const ok = value === "" || !Number.isNaN(ms);
      input.setCustomValidity(ok ? "" : "A date as YYYY-MM-DD (UTC)");
      valid = valid && ok;
      if (value && ok) items[name] = String(ms + edge);
    }
    const width = $(`${side}-width`).value.trim();
    const widthOk = width === "" || /^[1-9]\d{0,5}$/.test(width);
    $(`${side}-width`).setCustomValidity(widthOk ? "" : "A width in px, 1 to 999999");
    valid = valid && widthOk;
    if (width && widthOk) items.viewportWidth = width;
    const page = $(`${side}-page`).value.trim();
    if (page) items[isGroup(page) ? "group" : "path"] = page;
    items.segment = $(`${side}-segment`).value.trim();
    return valid ? formatSlice(items) : null;
  }

  const fixed = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));
  const signed = (value, digits) => `${value > 0 ? "+" : value < 0 ? "−" : "±"}${Math.abs(value).toFixed(digits)}`;
  const percent = (share) => HV.formatPct(100 * share);
  const pValue = (p) => (p === null || p === undefined ? "–" : p < 0.001 ? p.toExponential(1) : p.toFixed(3));

  /** The significance cell: ✱ beyond chance, with the test stated in its tooltip. */
  function markCell(item, test) {
    const stated = `${test.name}, ${test.sided}-sided, α = ${test.alpha}`;
    const why = item.z === null ? "the test is undefined here (no variance)"
      : `z = ${item.z.toFixed(2)}, p = ${pValue(item.pValue)}`;
    const td = cell(item.significant ? "✱ yes" : "no", {
      className: item.significant ? "significant" : "not-significant",
      title: `${stated}: ${why}${item.significant ? "; beyond chance" : "; within chance"}.`,
    });
    td.dataset.significant = item.significant ? "1" : "0";
    return td;
  }

  /** "Not enough data to compare: A has n sessions, B has m; at least K each." */
  function gateText(answer) {
    const sessions = (n) => `${n} session${n === 1 ? "" : "s"}`;
    return `Not enough data to compare: A has ${sessions(answer.a.sessions)}, B has ${sessions(answer.b.sessions)}; `
      + `at least ${answer.minSessions} each (HEAT_MIN_SAMPLE_SESSIONS).`;
  }

  /**
   * The compare mode of the viewer page. `app`: what it uses of viewer-app.js: {state, api, busy,
   * panelState, panelFailed, pageUrl, writeAddress, sharedParams}.
   */
  function createCompare(app) {
    const boards = {};
    for (const side of SIDES) {
      const parts = ["stage", "sizer", "board", "frame", "outline"].map((part) => $(`compare-${side}-${part}`));
      const [stage, sizer, board, frame, outline] = parts;
      boards[side] = { draw: null };
      boards[side].frame = HV.createPageFrame({ stage, sizer, board, frame, outline }, () => redraw(side));
    }
    let answers = null;  // {heatmap, scrollmap}: the last answers drawn

    function pageShown(side) {
      return ["loading", "ready", "cross-origin"].includes(boards[side].frame.state.status);
    }

    function redraw(side) {
      if (boards[side].draw) boards[side].draw();
    }

    /** The form from the address's slices (and the map switch). */
    function fillForm() {
      fillSide("a", app.state.a);
      fillSide("b", app.state.b);
      for (const input of document.querySelectorAll("input[name=cmap]")) input.checked = input.value === app.state.cmap;
    }

    /** The form into the state; false when a field is invalid (it says why). */
    function readForm() {
      const a = readSide("a");
      const b = readSide("b");
      const checked = document.querySelector("input[name=cmap]:checked");
      app.state.cmap = checked ? checked.value : "sides";
      if (a === null || b === null) return false;
      [app.state.a, app.state.b] = [a, b];
      return true;
    }

    /** The framed page of a side: its own path, else the map's path (a group frames the map's path). */
    function sidePath(answer, side) {
      return answer[side].slice.path || app.state.path;
    }

    // -- the maps --------------------------------------------------------------------------------

    /** Side by side: each side's heatmap over its own framed page, muted when its sample is small. */
    function showSides(heatmap) {
      for (const side of SIDES) {
        const report = heatmap[side].report;
        const height = Math.max(report.meta.renderHeight, HV.layout(report).height);
        const board = boards[side];
        board.draw = () => HV.drawHeatmap($(`compare-${side}-map`), report, {
          backdrop: !pageShown(side), fold: true, scale: board.frame.state.scale,
          muted: Boolean(report.meta.sample && report.meta.sample.small),
        });
        board.frame.show(app.pageUrl(sidePath(heatmap, side)), report.meta.viewport.w, height);
        redraw(side);
      }
    }

    /** One map: red where B has more clicks per session than A, blue where fewer, over A's page;
     * a cell whose difference is beyond chance is ringed. */
    function showDifference(heatmap) {
      const meta = heatmap.a.report.meta;
      const size = meta.cell.w;
      const height = Math.max(meta.renderHeight, heatmap.b.report.meta.renderHeight);
      const board = boards.a;
      board.draw = () => {
        const canvas = $("compare-a-map");
        canvas.width = Math.min(HV.LIMITS.width, Math.ceil(meta.viewport.w));
        canvas.height = Math.min(HV.LIMITS.height, Math.ceil(height + size));
        const ctx = canvas.getContext("2d");
        ctx.clearRect(0, 0, canvas.width, canvas.height);
        if (!pageShown("a")) HV.drawBackdrop(ctx, meta, canvas.width, canvas.height);
        const items = heatmap.differences || [];
        const largest = items.reduce((m, d) => Math.max(m, Math.abs(d.diff)), 0) || 1;
        const radius = Math.max(4, 1.5 * size);
        for (const d of items) {
          if (!d.diff) continue;
          const [x, y] = [(d.cx + 0.5) * size, (d.cy + 0.5) * size];
          const [r, g, b] = d.diff > 0 ? MORE : FEWER;
          const alpha = 0.25 + 0.6 * Math.abs(d.diff) / largest;
          const gradient = ctx.createRadialGradient(x, y, 0, x, y, radius);
          gradient.addColorStop(0, `rgba(${r}, ${g}, ${b}, ${alpha})`);
          gradient.addColorStop(1, `rgba(${r}, ${g}, ${b}, 0)`);
          ctx.fillStyle = gradient;
          ctx.fillRect(x - radius, y - radius, 2 * radius, 2 * radius);
          if (d.significant) {
            ctx.lineWidth = 2 / (board.frame.state.scale || 1);
            ctx.strokeStyle = `rgb(${r}, ${g}, ${b})`;
            ctx.beginPath(); ctx.arc(x, y, radius * 0.8, 0, 2 * Math.PI); ctx.stroke();
          }
        }
        document.body.dataset.compareCells = String(items.length);
      };
      board.frame.show(app.pageUrl(sidePath(heatmap, "a")), meta.viewport.w, height);
      redraw("a");
    }

    /** The two scroll reaches overlaid on A's page: at each depth of the page, a line whose distance
     * from the left edge is the share of the side's sessions that reached it. */
    function showScroll(scrollmap) {
      const meta = scrollmap.a.report.meta;
      const pageHeight = (m) => Math.round(m.pageHeight || m.renderHeight || m.viewport.h);
      const height = Math.max(pageHeight(meta), pageHeight(scrollmap.b.report.meta));
      const board = boards.a;
      board.draw = () => {
        const canvas = $("compare-a-map");
        const width = Math.min(HV.LIMITS.width, Math.ceil(meta.viewport.w));
        canvas.width = width;
        canvas.height = Math.min(HV.LIMITS.height, height);
        const ctx = canvas.getContext("2d");
        ctx.clearRect(0, 0, width, canvas.height);
        if (!pageShown("a")) HV.drawBackdrop(ctx, { viewport: { h: Infinity } }, width, canvas.height);
        const px = 1 / (board.frame.state.scale || 1);
        ctx.font = `bold ${Math.round(12 * px)}px system-ui, sans-serif`;
        SIDES.forEach((side, index) => {
          const report = scrollmap[side].report;
          const h = pageHeight(report.meta);
          const steps = [...report.reach].sort((p, q) => p.depth - q.depth);
          // A step line: the share reached at a depth holds down to the next depth; kept inside the
          // canvas (0% and 100% on the edges would be half hidden); B dashed, so equal lines both show.
          const xOf = (pct) => Math.min(width - 2 * px, Math.max(2 * px, pct / 100 * width));
          ctx.strokeStyle = COLOURS[side];
          ctx.lineWidth = 3 * px;
          ctx.setLineDash(side === "b" ? [10 * px, 6 * px] : []);
          ctx.beginPath();
          steps.forEach((step, at) => {
            const [x, y] = [xOf(step.pct), step.depth / 100 * h];
            if (at) ctx.lineTo(x, y);
            else ctx.moveTo(x, y);
            const next = steps[at + 1];
            if (next) ctx.lineTo(x, next.depth / 100 * h);
          });
          ctx.stroke();
          ctx.setLineDash([]);
          const last = steps[steps.length - 1];
          if (!last) return;
          const label = `${side.toUpperCase()}: ${HV.formatPct(last.pct)} of ${scrollmap[side].sessions} sessions reached the bottom`;
          const y = (20 + 20 * index) * px;
          ctx.fillStyle = "rgba(255, 255, 255, 0.9)";
          ctx.fillRect(6 * px, y - 14 * px, ctx.measureText(label).width + 10 * px, 19 * px);
          ctx.fillStyle = COLOURS[side];
          ctx.fillText(label, 11 * px, y);
        });
      };
      board.frame.show(app.pageUrl(sidePath(scrollmap, "a")), meta.viewport.w, height);
      redraw("a");
    }

    function showMaps() {
      const kind = app.state.cmap;
      $("compare-b").hidden = kind !== "sides";
      for (const side of SIDES) boards[side].draw = null;
      $("compare-legend").replaceChildren();
      if (!answers) return;
      const legend = {
        sides: "Each side's clicks per cell, on its own colour scale (1 to its hottest cell).",
        diff: "Red: more clicks per session in B than in A; blue: fewer; a ring: a cell beyond chance "
          + "(two-sample Poisson rate z-test, two-sided, α = 0.05; rows of one session are not independent, read it with care).",
        scroll: "Share of each side's sessions that reached each depth (left edge 0%, right edge 100%): A in blue, B in orange (dashed).",
      }[kind];
      $("compare-legend").textContent = legend;
      if (kind === "scroll") showScroll(answers.scrollmap);
      else if (kind === "diff" && answers.heatmap.status === "ok") showDifference(answers.heatmap);
      else if (kind === "diff") {
        $("compare-legend").textContent = "No difference map: not enough data.";
        boards.a.frame.show(app.pageUrl(sidePath(answers.heatmap, "a")), answers.heatmap.a.report.meta.viewport.w, 1);
        const canvas = $("compare-a-map");
        canvas.width = canvas.height = 0;
      } else showSides(answers.heatmap);
      document.body.dataset.compareMap = kind;
    }

    // -- the tables ------------------------------------------------------------------------------

    function showElements(answer) {
      const tbody = $("compare-elements").querySelector("tbody");
      tbody.replaceChildren();
      $("compare-elements-count").textContent = "";
      if (answer.status !== "ok") {
        app.panelState("compare-elements", "empty", gateText(answer));
        return;
      }
      for (const item of answer.differences.slice(0, ELEMENTS_SHOWN)) {
        const row = document.createElement("tr");
        row.dataset.selector = item.selector;
        row.append(
          cell(item.selector, { className: "selector" }),
          cell(fixed(item.a.clicksPerSession, 2), { className: "num", title: `${item.a.clicks} clicks / ${answer.a.sessions} sessions` }),
          cell(fixed(item.b.clicksPerSession, 2), { className: "num", title: `${item.b.clicks} clicks / ${answer.b.sessions} sessions` }),
          cell(signed(item.diff.clicksPerSession, 2), { className: `num ${item.diff.clicksPerSession > 0 ? "more" : item.diff.clicksPerSession < 0 ? "fewer" : ""}` }),
          cell(percent(item.a.share), { className: "num", title: `${item.a.sessions} of ${answer.a.sessions} sessions clicked it` }),
          cell(percent(item.b.share), { className: "num", title: `${item.b.sessions} of ${answer.b.sessions} sessions clicked it` }),
          cell(pValue(item.pValue), { className: "num" }),
          markCell(item, answer.test),
        );
        tbody.append(row);
      }
      $("compare-elements-count").textContent = `(${answer.total})`;
      app.panelState("compare-elements", answer.total ? "ready" : "empty", answer.total
        ? `Clicks per session of A (${answer.a.sessions} sessions) and B (${answer.b.sessions} sessions); hover a mark for its test.`
        : "No clicks on elements on either side.");
    }

    function showReach(answer) {
      const tbody = $("compare-reach").querySelector("tbody");
      tbody.replaceChildren();
      if (answer.status !== "ok") {
        app.panelState("compare-reach", "empty", gateText(answer));
        return;
      }
      for (const item of answer.differences) {
        const row = document.createElement("tr");
        row.dataset.depth = String(item.depth);
        row.append(
          cell(`${item.depth}%`),
          cell(percent(item.a.share), { className: "num", title: `${item.a.sessions} of ${answer.a.sessions} sessions` }),
          cell(percent(item.b.share), { className: "num", title: `${item.b.sessions} of ${answer.b.sessions} sessions` }),
          cell(`${signed(100 * item.diff, 1)} pt`, { className: "num" }),
          cell(pValue(item.pValue), { className: "num" }),
          markCell(item, answer.test),
        );
        tbody.append(row);
      }
      app.panelState("compare-reach", "ready", "Share of each side's sessions whose screen reached each depth.");
    }

    /** Each side's caption: what it is and how many sessions it rests on. */
    function showCaptions(answer) {
      for (const side of SIDES) {
        const { slice, sessions } = answer[side];
        const parts = [
          slice.group ? `group ${slice.group}` : slice.path || "every path",
          slice.segment || "every session",
          slice.viewportWidth ? `${slice.viewportWidth} px screens` : slice.viewportBucket || "",
        ].filter(Boolean);
        const caption = $(`compare-${side}-caption`);
        caption.textContent = `${side.toUpperCase()}: ${parts.join(" · ")} — based on ${sessions} session${sessions === 1 ? "" : "s"}`
          + (answer[side].segmentSessions !== undefined ? ` (${answer[side].segmentSessions} tagged in the range)` : "") + ".";
        caption.dataset.sessions = String(sessions);
      }
    }

    // -- loading ---------------------------------------------------------------------------------

    /** Ask /compare for `report` with both sides and the map's shared choices. */
    function ask(report, extra) {
      return app.api("/compare", { report, a: app.state.a, b: app.state.b, ...app.sharedParams(), ...extra });
    }

    /** Load and show the comparison; `isCurrent()` is false once a newer render started. */
    async function render(isCurrent) {
      answers = null;
      for (const name of ["compare", "compare-elements", "compare-reach"]) app.panelState(name, "loading", "Comparing…");
      $("compare-gate").hidden = true;
      document.body.dataset.compare = "loading";
      const requests = {
        heatmap: ask("heatmap", { type: "click", resolution: app.state.resolution }),
        elements: ask("elements", { limit: ELEMENTS_SHOWN }),
        scrollmap: ask("scrollmap", {}),
      };
      const settled = {};
      await Promise.all(Object.entries(requests).map(([name, request]) => request.then(
        (body) => { settled[name] = { body }; },
        (err) => { settled[name] = { err }; },
      )));
      if (!isCurrent()) return;
      const panels = { elements: ["compare-elements", "The elements cannot be compared"], scrollmap: ["compare-reach", "The scroll reach cannot be compared"] };
      for (const [name, [panel, what]] of Object.entries(panels)) {
        if (settled[name].err) {
          $(panel).querySelector("tbody").replaceChildren();
          app.panelFailed(panel, settled[name].err, what);
        }
      }
      if (settled.elements.body) showElements(settled.elements.body);
      if (settled.scrollmap.body) showReach(settled.scrollmap.body);
      const failure = settled.heatmap.err || settled.scrollmap.err || settled.elements.err;
      if (failure) {
        app.panelFailed("compare", failure, "The comparison is not available");
        document.body.dataset.compare = "error";
        return;
      }
      answers = { heatmap: settled.heatmap.body, scrollmap: settled.scrollmap.body };
      const first = settled.elements.body;
      showCaptions(first);
      const ok = first.status === "ok";
      $("compare-gate").hidden = ok;
      $("compare-gate").textContent = ok ? "" : gateText(first);
      app.panelState("compare", ok ? "ready" : "empty", ok
        ? `A against B: differences are B − A per session, each tested two-sided at α = ${first.test.alpha}.`
        : "Only each side's map is shown: no differences below the minimum.");
      showMaps();
      document.body.dataset.compare = first.status;
    }

    /** The map switch changed: draw the answers again (no request). */
    function switchMap() {
      readForm();
      app.writeAddress();
      showMaps();
    }

    for (const input of document.querySelectorAll("input[name=cmap]")) input.addEventListener("change", switchMap);
    return { render, fillForm, readForm, parseSlice, formatSlice };
  }

  window.HeatViewer = Object.assign(window.HeatViewer || {}, { createCompare });
})();
