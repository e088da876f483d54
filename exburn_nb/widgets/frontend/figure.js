// exburn_nb's live figure: plotly's FigureWidget front end (about 5 MB of JavaScript), asked
// from the kernel the first time a page draws a figure instead of being stored in every
// figure's widget state. One copy per page and plotly version, shared by every figure.
// Without a kernel (an nbconvert export with widget state) the figure is drawn once from its
// saved state with plotly.js from its CDN; live pages never fetch from the internet.

const PAGE = (globalThis.__exburn_nb_plotly ??= {}); // plotly version -> shared loader
const ASK_AGAIN_MS = 2000; // a request unanswered this long is sent again (JupyterLab sends a
// new comm's first messages on the busy main shell until the comm's subshell exists)
const STATIC_AFTER_MS = 4000; // no kernel answer by then: draw the saved state statically
const SYNC_MS = 3000; // the current figure asked for again after this long unanswered

function loader(version) {
  if (!PAGE[version]) {
    let resolve, reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    PAGE[version] = { promise, resolve, reject, asked: -Infinity, settled: false };
  }
  return PAGE[version];
}

// Ask the kernel for plotly's widget module through this model's comm.
function ask(model, entry) {
  entry.asked = Date.now();
  const onMessage = (msg, buffers) => {
    if (msg?.type !== "xb-plotly-bundle") return;
    model.off("msg:custom", onMessage);
    if (entry.settled) return;
    entry.settled = true;
    const url = URL.createObjectURL(new Blob([buffers[0]], { type: "text/javascript" }));
    import(/* webpackIgnore: true */ url)
      .then(entry.resolve, entry.reject)
      .finally(() => URL.revokeObjectURL(url));
  };
  model.on("msg:custom", onMessage);
  try {
    model.send({ type: "xb-plotly-bundle?" });
  } catch (err) {
    model.off("msg:custom", onMessage); // no comm (an export): the static drawing shows
  }
}

function plotlyModule(model) {
  const entry = loader(model.get("_xb_plotly"));
  if (!entry.settled && Date.now() - entry.asked > ASK_AGAIN_MS) ask(model, entry);
  return entry.promise;
}

// A Jupyter front end (JupyterLab, Notebook, Voilà), where figures are drawn by the kernel
// and nothing is fetched from the internet (a classroom may be offline).
const LIVE_PAGE = () => document.getElementById("jupyter-config-data") !== null;

// Draw the model's saved data once (plotly.js from its CDN, outside live pages); returns
// what undoes it.
async function drawStatic(model, el) {
  const url = `https://cdn.jsdelivr.net/npm/plotly.js-dist-min@${model.get("_xb_plotlyjs")}/+esm`;
  try {
    if (LIVE_PAGE()) throw new Error("a live page waits for its kernel");
    const Plotly = (await import(/* webpackIgnore: true */ url)).default;
    const layout = { ...model.get("_widget_layout"), autosize: true };
    await Plotly.newPlot(el, model.get("_widget_data"), layout, { responsive: true });
    return () => Plotly.purge(el);
  } catch (err) {
    el.textContent = "This figure is drawn by its kernel: run the notebook to see it.";
    return () => {};
  }
}

// plotly's model missed the changes sent before it started: ask for the whole figure, and
// again every SYNC_MS until the kernel answers (a busy kernel or page can take longer). A
// figure drawn from the state it had before would lack traces that later changes refer to.
function sync(model) {
  return new Promise((resolve) => {
    let timer;
    const done = () => {
      clearInterval(timer);
      model.off("change:_xb_synced", done);
      resolve();
    };
    const ask = () => {
      try {
        model.send({ type: "xb-plotly-sync?" });
      } catch (err) {
        done(); // no comm (an export): its saved state is all there is
      }
    };
    model.on("change:_xb_synced", done);
    timer = setInterval(ask, SYNC_MS);
    ask();
  });
}

// On a page where live figures run, the export-only copies of them are not shown.
function hideExportCopies() {
  if (document.getElementById("xb-export-only-style")) return;
  const style = document.head.appendChild(document.createElement("style"));
  style.id = "xb-export-only-style";
  style.textContent =
    ".xb-export-only, .jp-OutputArea-child:has(.xb-export-only) { display: none !important; }";
}

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((res) => (timer = setTimeout(() => res(null), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The model's plotly widget, asking again while unanswered; null after `ms`.
async function waitFor(model, ready, ms) {
  for (const start = Date.now(); Date.now() - start < ms; ) {
    const figure = await withTimeout(ready, ASK_AGAIN_MS);
    if (figure) return figure;
    plotlyModule(model);
  }
  return null;
}

// Frame acknowledgements: the kernel sends {type: "xb-frame?", id} after a change and waits
// for {type: "xb-frame", id} before its next frame, so frames go out at the pace this page
// draws them (two animation frames: the change is applied and painted).
function ackFrames(model) {
  const onMessage = (msg) => {
    if (msg?.type !== "xb-frame?") return;
    requestAnimationFrame(() =>
      requestAnimationFrame(() => model.send({ type: "xb-frame", id: msg.id })),
    );
  };
  model.on("msg:custom", onMessage);
  model.send({ type: "xb-frame", id: 0 }); // "this view acknowledges frames"
  return () => model.off("msg:custom", onMessage);
}

// plotly.js drops a click when its figure is redrawn while the button is down: the redraw
// re-hovers, a hover during a press clears the point under the pointer (gd._hoverdata), and
// the click's own hover on release is throttled (one per 50 ms), so the click finds no point
// and no plotly_click is sent. A live figure redraws several times a second while training,
// so a person's click on it was often lost. On release, give the click the point that was
// under the pointer when the button went down (plotly's throttled hover then replaces it).
function keepClicks(gd) {
  let held = null;
  const down = () => (held = gd._hoverdata);
  const up = () => {
    if (held && !gd._hoverdata) gd._hoverdata = held;
    held = null;
  };
  gd.addEventListener("pointerdown", down, true); // before plotly's mousedown / touchstart
  window.addEventListener("pointerup", up, true); // before plotly's mouseup / touchend
  return () => {
    gd.removeEventListener("pointerdown", down, true);
    window.removeEventListener("pointerup", up, true);
  };
}

// plotly's widget sends a click as a change of a synced trait (_js2py_pointsCallback). While
// a live figure redraws, ipywidgets' front end holds such changes until the kernel has
// answered the one before, merging them: a hover or unhover after the click overwrote it,
// and the kernel never saw the click. A click goes as a message of its own instead, which
// the kernel hands to plotly's own handler (the trace's on_click callbacks).
function clicksAsMessages(model) {
  const set = (key, value, ...rest) => {
    if (key === "_js2py_pointsCallback" && value?.event_type === "plotly_click") {
      model.send({ type: "xb-click", callback: value });
      return;
    }
    return model.set(key, value, ...rest);
  };
  return new Proxy(model, {
    get: (target, name) => {
      if (name === "set") return set;
      const value = target[name];
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

export default () => {
  let ready; // plotly's own widget for this model, once its module is here

  return {
    initialize({ model }) {
      // anywidget gives initialize 2 s; the module may take longer, so render waits for it
      ready = plotlyModule(model).then(async (module) => {
        const figure = module.default();
        figure.initialize({ model: clicksAsMessages(model) });
        await sync(model);
        return figure;
      });
      ready.catch((err) => console.error("exburn_nb: plotly's widget failed to load", err));
    },
    async render({ model, el }) {
      let figure = await waitFor(model, ready, STATIC_AFTER_MS);
      if (!figure) {
        const still = el.appendChild(document.createElement("div"));
        const undo = await drawStatic(model, still);
        figure = await waitFor(model, ready, Infinity);
        undo();
        still.remove();
      }
      hideExportCopies();
      const stopAcks = ackFrames(model);
      const cleanup = await figure.render({ model, el });
      const stopKeeping = keepClicks(el); // plotly's widget draws into el
      // plotly's widget sizes the figure once: follow the width its cell gives it later (the
      // file browser opened, the window narrowed). plotly.js's responsive handler resizes a
      // figure without a fixed width to its div.
      const observer = new ResizeObserver(() => el._responsiveChartHandler?.());
      observer.observe(el);
      return () => {
        observer.disconnect();
        stopAcks();
        stopKeeping();
        if (typeof cleanup === "function") cleanup();
      };
    },
  };
};
