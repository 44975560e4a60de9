// Slide mode in JupyterLab: Python sends which cells are on each slide (deploylab.slides'
// metadata); this script hides the other cells of the notebook it sits in, enlarges the font
// and turns a clicker's keys into slide moves. A widget with its own presenter keys
// (aria-keyshortcuts) keeps Space and → while it has focus.
const say = (model, key, english, values = {}) =>
  String((model.get("labels") || {})[key] ?? english).replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");

const STYLE_ID = "dl-slide-mode-style";
const STYLE = `
.jp-Notebook.dl-presenting { --jp-content-font-size1: 22px; --jp-content-font-size2: 1.5em;
  --jp-content-font-size3: 1.9em; --jp-content-font-size4: 2.3em; --jp-code-font-size: 18px;
  --jp-content-line-height: 1.5; padding-bottom: 80px; }
.jp-Notebook.dl-presenting .jp-Cell.dl-off-slide { display: none !important; }
.jp-Notebook.dl-presenting .dl-slide-control-cell .jp-Cell-inputWrapper { display: none; }
.dl-slide-bar { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; font-size: 14px; }
.dl-slide-bar.dl-floating { position: fixed; right: 16px; bottom: 12px; z-index: 10;
  padding: 6px 10px; border-radius: 6px; color: var(--jp-ui-font-color1, #1f1f1f); background: var(--jp-layout-color2, #eeeeee);
  border: 1px solid var(--jp-border-color1, #bdbdbd); max-width: 60vw; }
.dl-slide-notes { white-space: pre-wrap; max-width: 50vw; max-height: 30vh; overflow: auto; }
`;

function render({ model, el }) {
  el.classList.add("dl-widget");
  if (!document.getElementById(STYLE_ID)) {
    const style = document.createElement("style");
    style.id = STYLE_ID;
    style.textContent = STYLE;
    document.head.append(style);
  }
  const bar = document.createElement("div");
  bar.className = "dl-slide-bar dl-widget";
  const toggle = document.createElement("button");
  toggle.className = "dl-slide-toggle";
  const back = document.createElement("button");
  back.className = "dl-slide-back";
  back.textContent = say(model, "back", "◂ back");
  const next = document.createElement("button");
  next.className = "dl-slide-next";
  next.textContent = say(model, "next", "next ▸");
  const counter = document.createElement("span");
  counter.className = "dl-slide-counter";
  counter.setAttribute("aria-live", "polite");
  const notes = document.createElement("div");
  notes.className = "dl-slide-notes";
  notes.hidden = true;
  bar.append(toggle, back, next, counter, notes);
  el.append(bar);

  let notebook = null, ownCell = null, presenting = false;
  // The notebook's cell widgets when JupyterLab exposes its application (exact even for
  // cells not in the page); else the cells in the page, in order.
  const notebookWidget = () => {
    const content = window.jupyterapp?.shell?.currentWidget?.content;
    return content?.widgets && content.node === notebook ? content : null;
  };
  const cells = () => {
    const content = notebookWidget();
    if (content) return content.widgets.map((cell) => cell.node);
    return notebook ? [...notebook.querySelectorAll(".jp-Notebook-cell")] : [];
  };
  const slides = () => model.get("slides");

  // Code cells run on entry to their slide (once each, in order) when JupyterLab exposes its
  // application (deploylab present starts it with expose_app_in_browser); cells that already
  // ran are left alone.
  const ran = new Set();
  let queue = Promise.resolve();  // slides entered quickly still run their cells in order
  const runOnEntry = (indices) => (queue = queue.then(() => runCells(indices)).catch(() => {}));
  const runCells = async (indices) => {
    const app = window.jupyterapp;
    const content = notebookWidget();
    if (!model.get("run_on_entry") || !content) return;
    for (const j of indices) {
      const cell = content.widgets[j];
      if (!cell || ran.has(j) || cell.model.type !== "code" || cell === ownCellWidget(content)) continue;
      ran.add(j);
      if (cell.model.executionCount !== null) continue;
      content.activeCellIndex = j;
      content.deselectAll();
      await app.commands.execute("notebook:run-cell");
    }
  };
  const ownCellWidget = (content) => content.widgets.find((cell) => cell.node === ownCell);

  // Speaker notes are markdown: **bold** is shown bold, the rest as plain text.
  const showNotes = (text) => {
    notes.replaceChildren(...text.split(/\*\*(.+?)\*\*/s).map((part, k) => {
      if (k % 2 === 0) return document.createTextNode(part);
      const strong = document.createElement("strong");
      strong.textContent = part;
      return strong;
    }));
  };

  const show = (index) => {
    const total = slides().length;
    const i = Math.max(0, Math.min(total - 1, index));
    const on = new Set(slides()[i] || []);
    const all = cells();
    all.forEach((cell, j) => cell.classList.toggle("dl-off-slide", presenting && !on.has(j) && cell !== ownCell));
    counter.textContent = say(model, "counter", "slide {n} of {total}", { n: i + 1, total });
    showNotes((model.get("notes") || {})[String(i)] || say(model, "no_notes", "(no speaker notes on this slide)"));
    if (model.get("current") !== i) { model.set("current", i); model.save_changes(); }
    const first = all[(slides()[i] || [])[0]];
    if (presenting && first) first.scrollIntoView({ block: "start" });
    if (presenting) {
      runOnEntry(slides()[i] || []).then(() => {
        if (presenting && model.get("current") === i) first?.scrollIntoView({ block: "start" });
      });
    }
  };

  const onKey = (event) => {
    if (!presenting || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target instanceof Element ? event.target : document.body;
    if (target.closest("input, select, textarea, [contenteditable='true'], .cm-editor")) return;
    const widgetKeys = target.closest("[aria-keyshortcuts]");
    if (widgetKeys && [" ", "ArrowRight", "Escape"].includes(event.key)) return;  // the widget's
    if (target.closest("button, [role='button']") && [" ", "Enter"].includes(event.key)) return;
    const moves = {
      ArrowRight: () => show(model.get("current") + 1),
      PageDown: () => show(model.get("current") + 1),
      " ": () => show(model.get("current") + 1),
      ArrowLeft: () => show(model.get("current") - 1),
      PageUp: () => show(model.get("current") - 1),
      Home: () => show(0),
      End: () => show(slides().length - 1),
      Escape: () => stop(),
      n: () => { notes.hidden = !notes.hidden; },
    };
    // A Korean keyboard in Hangul mode sends "ㅜ" for the n key: its key code still says n.
    const move = moves[event.code === "KeyN" ? "n" : event.key];
    if (!move) return;
    event.preventDefault();
    event.stopPropagation();
    move();
  };

  const label = () => {
    toggle.textContent = presenting ? say(model, "leave", "leave slides (Esc)") : say(model, "present", "present as slides");
  };
  const start = () => {
    notebook = el.closest(".jp-Notebook");
    if (!notebook) return;
    ownCell = el.closest(".jp-Notebook-cell");
    ownCell?.classList.add("dl-slide-control-cell");
    presenting = true;
    notebook.classList.add("dl-presenting");
    // Every cell in the page (as RISE does): windowing would leave hidden slides' cells out.
    const content = notebookWidget();
    if (content) content.notebookConfig = { ...content.notebookConfig, windowingMode: "none" };
    document.addEventListener("keydown", onKey, true);
    document.activeElement?.blur?.();
    // Room for the slide: fold JupyterLab's side panels away (when the page exposes the app).
    window.jupyterapp?.shell?.collapseLeft?.();
    window.jupyterapp?.shell?.collapseRight?.();
    // The notebook's scroller contains fixed positions: float the bar from the page itself.
    bar.classList.add("dl-floating", "jp-ThemedContainer");
    document.body.append(bar);
    label();
    show(model.get("current"));
    if (!model.get("presenting")) { model.set("presenting", true); model.save_changes(); }
  };
  const stop = () => {
    presenting = false;
    document.removeEventListener("keydown", onKey, true);
    if (notebook) notebook.classList.remove("dl-presenting");
    cells().forEach((cell) => cell.classList.remove("dl-off-slide"));
    notes.hidden = true;
    bar.classList.remove("dl-floating");
    el.append(bar);
    label();
    if (model.get("presenting")) { model.set("presenting", false); model.save_changes(); }
  };
  toggle.addEventListener("click", () => (presenting ? stop() : start()));
  back.addEventListener("click", () => show(model.get("current") - 1));
  next.addEventListener("click", () => show(model.get("current") + 1));
  model.on("change:presenting", () => { if (model.get("presenting") !== presenting) (presenting ? stop() : start()); });
  model.on("change:current", () => { if (presenting) show(model.get("current")); });
  label();
  counter.textContent = say(model, "counter", "slide {n} of {total}", { n: model.get("current") + 1, total: slides().length });

  // Drawn before it is attached: start once the widget is in the notebook's page.
  let frame = null;
  const whenAttached = () => {
    if (!el.isConnected) { frame = requestAnimationFrame(whenAttached); return; }
    if (model.get("presenting")) start();
  };
  whenAttached();
  return () => { if (frame) cancelAnimationFrame(frame); stop(); };
}

export default { render };
