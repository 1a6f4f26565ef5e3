/* The tracked page under the map (HeatViewer.createPageFrame).
 *
 * The page is framed at the map's frame width and the map's height, in a sandbox without
 * allow-scripts (its scripts, the heat SDK among them, never run: the viewer's visits are not
 * recorded), and scaled with a CSS transform to the stage's width. The overlay canvases sit on the
 * same board, so one page pixel of the map lands on one pixel of the page; the stage scrolls both.
 */
(function () {
  "use strict";

  const LOAD_TIMEOUT_MS = 10000;
  const MAX_HEIGHT = 20000;  // as HeatViewer.LIMITS.height: beyond it nothing is drawn anyway

  /**
   * `elements`: {stage, sizer, board, frame, outline}; `onChange(frameState)` after every status
   * change and relayout. Status: "none" (no page), "loading", "ready" (same origin, checked),
   * "cross-origin" (loaded, but another origin cannot be checked), "blocked" (refused to be framed,
   * or no load in time), "error" (an HTTP error page).
   */
  function createPageFrame(elements, onChange) {
    const { stage, sizer, board, frame, outline } = elements;
    const state = { status: "none", message: "", url: "", sameOrigin: false, width: 0, height: 0, scale: 1, pageHeight: 0 };
    let timer = null;
    let waiting = [];  // resolvers of settled()

    function changed() {
      document.body.dataset.frame = state.status;
      onChange(state);
      if (state.status !== "loading") {
        const done = waiting;
        waiting = [];
        for (const resolve of done) resolve(state);
      }
    }

    /** A promise of the frame's state once it is no longer loading (at once when it is not). */
    function settled() {
      if (state.status !== "loading") return Promise.resolve(state);
      return new Promise((resolve) => waiting.push(resolve));
    }

    function setStatus(status, message) {
      state.status = status;
      state.message = message || "";
      if (timer) clearTimeout(timer);
      timer = null;
      changed();
    }

    /** Scale the board (frame and overlays, `width` x `height` page px) to the stage's width. */
    function relayout() {
      const available = Math.max(1, stage.clientWidth - 2);
      state.scale = state.width ? Math.min(1, available / state.width) : 1;
      const height = Math.min(MAX_HEIGHT, Math.max(state.height, state.status === "ready" ? state.pageHeight : 0));
      board.style.width = `${state.width}px`;
      board.style.height = `${height}px`;
      board.style.transform = `scale(${state.scale})`;
      sizer.style.width = `${Math.ceil(state.width * state.scale)}px`;
      sizer.style.height = `${Math.ceil(height * state.scale)}px`;
      frame.style.width = `${state.width}px`;
      frame.style.height = `${height}px`;
      state.boardHeight = height;
    }

    /** The framed document when it is same-origin and loaded, else null (never throws). */
    function framedDocument() {
      if (!state.sameOrigin) return null;
      try {
        const doc = frame.contentDocument;
        // A blocked frame shows the browser's error page: no document of ours, or about:blank.
        if (!doc || !doc.documentElement || doc.URL === "about:blank" || doc.URL.startsWith("chrome-error:")) return null;
        return doc;
      } catch (err) {
        return null;
      }
    }

    /** The HTTP status of the framed (same-origin) page, or 0 when the browser does not say. */
    function responseStatus() {
      try {
        const [navigation] = frame.contentWindow.performance.getEntriesByType("navigation");
        return (navigation && navigation.responseStatus) || 0;
      } catch (err) {
        return 0;
      }
    }

    /** The framed page's own height at the frame's width (the board grows to show all of it). */
    function measure(doc) {
      state.pageHeight = 0;
      relayout();  // the frame at the map's height first: a page is never measured shorter than its frame
      try {
        state.pageHeight = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
      } catch (err) {
        state.pageHeight = 0;
      }
    }

    function onLoad() {
      if (!state.url || frame.dataset.src !== state.url) return;
      if (!state.sameOrigin) {
        setStatus("cross-origin",
          `The page comes from ${new URL(state.url).origin}; the viewer cannot look into a page of another `
          + "origin, so if it stays empty, that site refuses to be framed (X-Frame-Options or CSP "
          + "frame-ancestors; see the viewer docs).");
        return;
      }
      const doc = framedDocument();
      if (!doc) {
        setStatus("blocked", `The page ${state.url} cannot be shown under the map: it refuses to be framed `
          + "(X-Frame-Options or CSP frame-ancestors) or did not load. The map is drawn on a grid.");
        return;
      }
      const code = responseStatus();
      if (code >= 400) {
        setStatus("error", `The page ${state.url} answered HTTP ${code}. The map is drawn on a grid.`);
        return;
      }
      try {
        // The board scrolls, not the frame: no scroll bars inside it (they would narrow the page).
        doc.documentElement.style.overflow = "hidden";
      } catch (err) {
        // a page that cannot be styled still shows
      }
      measure(doc);
      state.status = "ready";
      state.message = "";
      if (timer) clearTimeout(timer);
      timer = null;
      relayout();
      changed();
    }

    frame.addEventListener("load", onLoad);

    /**
     * Frame `url` (null: no page) `width` px wide and at least `height` px tall. The same URL is not
     * loaded again; only the board is resized.
     */
    function show(url, width, height) {
      state.width = Math.max(1, Math.round(width));
      state.height = Math.max(1, Math.round(height));
      if (!url) {
        state.url = "";
        frame.hidden = true;
        frame.dataset.src = "";
        if (frame.getAttribute("src")) frame.removeAttribute("src");
        relayout();
        setStatus("none", "");
        return;
      }
      frame.hidden = false;
      if (url === state.url && !["blocked", "error"].includes(state.status)) {
        const doc = state.status === "ready" ? framedDocument() : null;
        if (doc) measure(doc);  // another width: the page flows again
        relayout();
        changed();
        return;
      }
      state.url = url;
      state.sameOrigin = new URL(url, location.href).origin === location.origin;
      state.pageHeight = 0;
      state.status = "loading";
      relayout();
      frame.dataset.src = url;
      frame.src = url;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        if (state.status === "loading" && state.url === url) {
          setStatus("blocked", `The page ${url} did not load within ${LOAD_TIMEOUT_MS / 1000} s. The map is drawn on a grid.`);
        }
      }, LOAD_TIMEOUT_MS);
      changed();
    }

    /** Outline the first element matching `selector` in a same-origin page; its box (page px) or null. */
    function outlineElement(selector) {
      outline.hidden = true;
      const doc = state.status === "ready" ? framedDocument() : null;
      if (!doc || !selector) return null;
      let element = null;
      try {
        element = doc.querySelector(selector);
      } catch (err) {
        return null;  // a selector the SDK wrote that this browser cannot parse
      }
      if (!element) return null;
      const box = element.getBoundingClientRect();
      const px = 1 / state.scale;
      outline.style.left = `${box.left}px`;
      outline.style.top = `${box.top}px`;
      outline.style.width = `${box.width}px`;
      outline.style.height = `${box.height}px`;
      outline.style.borderWidth = `${Math.max(2, Math.round(3 * px))}px`;
      outline.hidden = false;
      return { x: box.left, y: box.top, width: box.width, height: box.height };
    }

    if (window.ResizeObserver) {
      let pending = false;
      new ResizeObserver(() => {
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => {
          pending = false;
          const before = state.scale;
          relayout();
          if (state.scale !== before) changed();
        });
      }).observe(stage);
    }

    return { state, show, relayout, outlineElement, framedDocument, settled };
  }

  window.HeatViewer = Object.assign(window.HeatViewer || {}, { createPageFrame });
})();
