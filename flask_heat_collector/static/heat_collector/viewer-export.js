/* Export of the current view as a PNG (HeatViewer.exportPng).
 *
 * A same-origin page is drawn under the map: its DOM is copied with every computed style inlined
 * (the copy needs no style sheet), images become data: URLs, and the copy is drawn as an SVG
 * <foreignObject> image, which leaves the canvas readable (untainted) in Chromium. What such an
 * image cannot hold is left out: pseudo-elements (::before/::after), web fonts, CSS background
 * images, nested frames and images of other origins. A page of another origin, or one that could
 * not be framed, is replaced by the grid.
 */
(function () {
  "use strict";

  const CAPTION_LINE = 18;  // px per caption line
  const DIM = "rgba(0, 0, 0, 0.4)";  // "Dim the page", as the frame's CSS filter darkens it
  const SKIPPED = new Set(["SCRIPT", "NOSCRIPT", "STYLE", "LINK", "IFRAME", "OBJECT", "EMBED", "TEMPLATE"]);

  /** `style` as one declaration list (a computed style includes every property). */
  function styleText(style) {
    const parts = [];
    for (let i = 0; i < style.length; i += 1) {
      const name = style[i];
      parts.push(`${name}:${style.getPropertyValue(name)}${style.getPropertyPriority(name) ? " !important" : ""}`);
    }
    return parts.join(";");
  }

  /** An <img> of the page as a data: URL, or "" when it cannot be read (not loaded, another origin). */
  function imageData(img) {
    try {
      if (!img.complete || !img.naturalWidth) return "";
      const canvas = document.createElement("canvas");
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      canvas.getContext("2d").drawImage(img, 0, 0);
      return canvas.toDataURL("image/png");
    } catch (err) {
      return "";
    }
  }

  /** A copy of `source` (an element of the framed page) with computed styles inlined, or null. */
  function copyElement(source, view) {
    if (SKIPPED.has(source.tagName)) return null;
    const copy = source.cloneNode(false);
    copy.setAttribute("style", styleText(view.getComputedStyle(source)));
    for (const name of ["srcset", "sizes", "onload", "onerror"]) copy.removeAttribute(name);
    if (source.tagName === "IMG") copy.setAttribute("src", imageData(source));
    if (source.tagName === "CANVAS") {
      try {
        const img = source.ownerDocument.createElement("img");
        img.setAttribute("src", source.toDataURL("image/png"));
        img.setAttribute("style", copy.getAttribute("style"));
        return img;
      } catch (err) {
        return copy;
      }
    }
    if (source.tagName === "INPUT" || source.tagName === "TEXTAREA") copy.setAttribute("value", source.value);
    for (const child of source.childNodes) {
      if (child.nodeType === Node.TEXT_NODE) copy.append(child.cloneNode(false));
      else if (child.nodeType === Node.ELEMENT_NODE) {
        const inner = copyElement(child, view);
        if (inner) copy.append(inner);
      }
    }
    return copy;
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("the page could not be drawn as an image"));
      img.src = src;
    });
  }

  /** The framed document `doc` as an image `width` x `height` px (page px). */
  async function renderDocument(doc, width, height) {
    const view = doc.defaultView;
    const html = copyElement(doc.documentElement, view);
    html.style.width = `${width}px`;
    html.style.height = `${height}px`;
    html.style.overflow = "hidden";
    const xhtml = new XMLSerializer().serializeToString(html);
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">`
      + `<foreignObject x="0" y="0" width="${width}" height="${height}">${xhtml}</foreignObject></svg>`;
    return loadImage(`data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`);
  }

  function toBlob(canvas) {
    return new Promise((resolve, reject) => {
      try {
        canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the PNG could not be made"))), "image/png");
      } catch (err) {
        reject(err);  // SecurityError: a tainted canvas
      }
    });
  }

  /** The height of the caption band for `caption` ({lines, legend}); 0 without one. */
  function captionHeight(caption) {
    if (!caption) return 0;
    return 10 + CAPTION_LINE * (caption.lines.length + (caption.legend ? 1 : 0)) + 6;
  }

  /** The caption band at `top`: its lines (path, type, band, dates, sample), then the legend with its unit. */
  function drawCaption(ctx, caption, top, width) {
    ctx.save();
    ctx.fillStyle = "#1d3557";
    ctx.fillRect(0, top, width, captionHeight(caption));
    ctx.fillStyle = "#fff";
    ctx.font = "13px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    let y = top + 10 + CAPTION_LINE / 2;
    for (const line of caption.lines) {
      ctx.fillText(line, 8, y, width - 16);
      y += CAPTION_LINE;
    }
    const legend = caption.legend;
    if (legend) {
      const low = ctx.measureText(legend.low).width;
      ctx.fillText(legend.low, 8, y);
      const barX = 8 + low + 6;
      window.HeatViewer.drawLegendBar(ctx, barX, y - 5, 120, 10, legend.muted);
      ctx.fillStyle = "#fff";
      const high = `${legend.high} ${legend.unit}${legend.muted ? " (muted: small sample)" : ""}`;
      ctx.fillText(high, barX + 126, y, Math.max(40, width - barX - 134));
    }
    ctx.restore();
  }

  /**
   * The view as a PNG blob `width` x `height` (page px, kept within HeatViewer.LIMITS) and a caption
   * band below it: the page `doc` (null: the grid; `dim`: darkened as on screen) under `layers`
   * (canvases drawn at 0, 0), then `caption` ({lines, legend}). Answers {blob, withPage, note}.
   */
  async function exportPng({ doc, layers, width, height, backdropMeta, caption, dim }) {
    const { LIMITS, drawBackdrop } = window.HeatViewer;
    const w = Math.max(1, Math.min(LIMITS.width, Math.round(width)));
    const h = Math.max(1, Math.min(LIMITS.height, Math.floor(LIMITS.pixels / w), Math.round(height)));

    async function compose(withPage) {
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h + captionHeight(caption);
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, w, h);
      if (withPage) {
        ctx.drawImage(await renderDocument(doc, w, h), 0, 0);
        if (dim) {
          ctx.fillStyle = DIM;
          ctx.fillRect(0, 0, w, h);
        }
      } else drawBackdrop(ctx, backdropMeta || { viewport: { h: Infinity } }, w, h);
      for (const layer of layers) if (layer.width && layer.height) ctx.drawImage(layer, 0, 0);
      if (caption) drawCaption(ctx, caption, h, w);
      return toBlob(canvas);
    }

    if (doc) {
      try {
        return { blob: await compose(true), withPage: true, note: "" };
      } catch (err) {
        const blob = await compose(false);
        return { blob, withPage: false, note: `The page could not be drawn (${err.message}); the map is exported over the grid.` };
      }
    }
    return { blob: await compose(false), withPage: false, note: "" };
  }

  /** Offer `blob` as a download named `name`. */
  function download(blob, name) {
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  window.HeatViewer = Object.assign(window.HeatViewer || {}, { exportPng, download, renderDocument, captionHeight });
})();
