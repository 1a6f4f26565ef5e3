/* Heatmap viewer of flask-heat-collector: the drawing functions (window.HeatViewer).
 *
 * Usable on their own, e.g. `HeatViewer.drawHeatmap(canvas, heatmap, {backdrop: false})` lays a
 * heatmap over the tracked page itself. The viewer page adds viewer-frame.js (the page under the
 * map), viewer-export.js (PNG export) and viewer-app.js (the page's controls and panels).
 */
(function () {
  "use strict";

  const STOPS = [[0, "#0000ff"], [0.25, "#00ffff"], [0.5, "#00ff00"], [0.75, "#ffff00"], [1, "#ff0000"]];
  const MUTED_GREY = 0.7;  // a small sample's colours: this much of each colour is grey
  let palette = null;
  let mutedPalette = null;

  /** The density palette (256 RGBA entries); `muted`: washed out towards grey, for a small sample. */
  function densityPalette(muted) {
    if (muted) {
      if (mutedPalette) return mutedPalette;
      const full = densityPalette(false);
      mutedPalette = new Uint8ClampedArray(full.length);
      for (let i = 0; i < full.length; i += 4) {
        const grey = (full[i] + full[i + 1] + full[i + 2]) / 3;
        for (let c = 0; c < 3; c += 1) mutedPalette[i + c] = Math.round(MUTED_GREY * grey + (1 - MUTED_GREY) * full[i + c]);
        mutedPalette[i + 3] = full[i + 3];
      }
      return mutedPalette;
    }
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

  /** The colour of `share` (0 to 1) on the density palette, as [r, g, b]. */
  function paletteColour(share, muted) {
    const colours = densityPalette(muted);
    const at = 4 * Math.max(0, Math.min(255, Math.round(share * 255)));
    return [colours[at], colours[at + 1], colours[at + 2]];
  }

  /** The dashed fold line at `y` (the bottom of the first screen), with its label. */
  function drawFold(ctx, y, width, scale) {
    const px = 1 / (scale || 1);  // one screen pixel, whatever the board's scale
    ctx.save();
    ctx.strokeStyle = "#4a5568";
    ctx.lineWidth = 2 * px;
    ctx.setLineDash([8 * px, 6 * px]);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(width, y); ctx.stroke();
    ctx.setLineDash([]);
    ctx.font = `${Math.round(12 * px)}px system-ui, sans-serif`;
    const label = "fold";
    const w = ctx.measureText(label).width + 8 * px;
    ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
    ctx.fillRect(4 * px, y - 18 * px, w, 16 * px);
    ctx.fillStyle = "#1d2430";
    ctx.fillText(label, 8 * px, y - 6 * px);
    ctx.restore();
  }

  /** The grid drawn when there is no page under the map (canvas px = page px). */
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
    // The kernel covers a cell and its neighbours' edges: a finer grid draws finer spots.
    const radius = Math.max(3, 1.5 * cell);
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
   * `options.backdrop === false` leaves the canvas transparent (an overlay); `options.fold` then
   * still draws the fold line (`options.scale`: the board's scale, for its width); `options.muted`
   * paints washed-out colours (a small sample). Returns the largest cell count drawn.
   */
  function drawHeatmap(canvas, heatmap, options) {
    const { meta } = heatmap;
    const opts = options || {};
    const { width, height, radius, drawn: points } = layout(heatmap);
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (opts.backdrop !== false) drawBackdrop(ctx, meta, width, height);
    else if (opts.fold && meta.viewport.h < height) drawFold(ctx, meta.viewport.h, width, opts.scale);
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
    const colours = densityPalette(opts.muted);
    const ceiling = opts.muted ? 150 : 220;
    for (let i = 3; i < data.length; i += 4) {
      const density = data[i];
      if (!density) continue;
      const at = density * 4;
      data[i - 3] = colours[at];
      data[i - 2] = colours[at + 1];
      data[i - 1] = colours[at + 2];
      data[i] = Math.min(ceiling, 30 + density);
    }
    lctx.putImageData(image, 0, 0);
    ctx.drawImage(layer, x0, y0);
    return max;
  }


  /**
   * Draw the scroll reach of `scrollmap` (the body of GET .../scrollmap) on `canvas`: one band per
   * 5 % of the whole page (`meta.pageHeight`, the page height the visitors scrolled, SPEC 4),
   * coloured by the share of sessions whose screen's bottom edge reached the band's top, labelled
   * with that share, and the fold at `meta.foldPct`. Options: `width` (page px), `scale` (the
   * board's, so labels stay readable), `backdrop` (false: transparent, over the page), `muted` (a
   * small sample). Returns the bands drawn: [{depth, pct, top, height}].
   */
  function drawScrollReach(canvas, scrollmap, options) {
    const { reach, meta } = scrollmap;
    const opts = options || {};
    const width = Math.min(LIMITS.width, Math.max(1, Math.round(opts.width || meta.viewport.w)));
    const pageHeight = Math.max(1, Math.round(meta.pageHeight || meta.renderHeight || meta.viewport.h));
    const height = Math.min(pageHeight, LIMITS.height, Math.floor(LIMITS.pixels / width));
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (opts.backdrop !== false) drawBackdrop(ctx, { viewport: { h: Infinity } }, width, height);
    const px = 1 / (opts.scale || 1);
    const sorted = [...reach].sort((a, b) => a.depth - b.depth);
    const bands = [];
    sorted.forEach((step, index) => {
      const next = sorted[index + 1];
      if (!next) return;  // depth 100 is the bottom edge, not a band
      const top = Math.round(step.depth / 100 * pageHeight);
      const bottom = Math.round(next.depth / 100 * pageHeight);
      if (top >= height) return;
      const [r, g, b] = paletteColour(step.pct / 100, opts.muted);
      ctx.fillStyle = `rgba(${r}, ${g}, ${b}, 0.38)`;
      ctx.fillRect(0, top, width, Math.min(bottom, height) - top);
      ctx.strokeStyle = "rgba(29, 36, 48, 0.25)";
      ctx.lineWidth = px;
      ctx.beginPath(); ctx.moveTo(0, top); ctx.lineTo(width, top); ctx.stroke();
      bands.push({ depth: step.depth, pct: step.pct, top, height: bottom - top });
    });
    // Labels after every band, so none is painted over; at most one per 22 screen px.
    ctx.font = `bold ${Math.round(12 * px)}px system-ui, sans-serif`;
    let lastLabel = -Infinity;
    for (const band of bands) {
      const y = band.top + Math.min(band.height, 40 * px) / 2 + 5 * px;
      if (y - lastLabel < 22 * px || y > height) continue;
      lastLabel = y;
      const label = `${formatPct(band.pct)} reached ${band.depth}%`;
      const w = ctx.measureText(label).width + 10 * px;
      const x = width - w - 8 * px;
      ctx.fillStyle = "rgba(255, 255, 255, 0.9)";
      ctx.fillRect(x, y - 13 * px, w, 18 * px);
      ctx.fillStyle = "#1d2430";
      ctx.fillText(label, x + 5 * px, y);
    }
    if (meta.foldPct > 0 && meta.foldPct < 100) drawFold(ctx, meta.foldPct / 100 * pageHeight, width, opts.scale);
    return bands;
  }

  /** The palette as a bar `w` x `h` at (x, y) (the legend of an exported PNG). */
  function drawLegendBar(ctx, x, y, w, h, muted) {
    for (let i = 0; i < w; i += 1) {
      const [r, g, b] = paletteColour(i / Math.max(1, w - 1), muted);
      ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
      ctx.fillRect(x + i, y, 1, h);
    }
  }

  /** A table cell showing `text` (as text), with `options.title` and `options.className` when given. */
  function tableCell(text, options) {
    const td = document.createElement("td");
    td.textContent = text;
    if (options && options.title) td.title = options.title;
    if (options && options.className) td.className = options.className;
    return td;
  }

  /** `pct` (0 to 100) as "62%" or "0.5%". */
  function formatPct(pct) {
    return pct >= 10 || pct === 0 ? `${Math.round(pct)}%` : `${Math.round(pct * 10) / 10}%`;
  }

  /**
   * Markers for single points on `canvas` (sized `width` x `height`, transparent): rings for a
   * highlighted element's clicks, or numbered dots for one session's clicks (`options.numbered`).
   */
  function drawMarkers(canvas, points, options) {
    const opts = options || {};
    canvas.width = Math.min(LIMITS.width, Math.max(0, Math.round(opts.width || 0)));
    canvas.height = Math.min(LIMITS.height, Math.max(0, Math.round(opts.height || 0)));
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const px = 1 / (opts.scale || 1);
    const radius = (opts.numbered ? 9 : 11) * px;
    ctx.font = `bold ${Math.round(10 * px)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    points.forEach((p, index) => {
      if (p.x >= canvas.width || p.y >= canvas.height) return;
      ctx.beginPath();
      ctx.arc(p.x, p.y, radius, 0, 2 * Math.PI);
      if (opts.numbered) {
        ctx.fillStyle = "rgba(176, 0, 32, 0.9)";
        ctx.fill();
        ctx.fillStyle = "#fff";
        ctx.fillText(String(index + 1), p.x, p.y + 0.5 * px);
      } else {
        // Rings only, so the heat under a crowd of clicks stays visible.
        ctx.lineWidth = 2 * px;
        ctx.strokeStyle = "rgba(255, 0, 200, 0.9)";
        ctx.stroke();
      }
    });
  }

  window.HeatViewer = Object.assign(window.HeatViewer || {}, {
    drawHeatmap, describeCut, drawScrollReach, drawMarkers, drawBackdrop, drawLegendBar, formatPct, layout, LIMITS,
    tableCell,
  });
})();
