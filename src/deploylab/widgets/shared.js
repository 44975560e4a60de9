// Helpers every SVG widget shares. Not a widget of its own: anywidget loads each widget's
// module alone (no imports between them), so deploylab.widgets.esm.widget_esm joins this
// file in front of a widget's own file into the one module anywidget receives.
const SVG = "http://www.w3.org/2000/svg";

// Words in the workbook's language come from Python (the `labels` trait, see labels.py);
// the English here is the fallback. "{name}" placeholders are filled from `values`.
const say = (model, key, english, values = {}) =>
  String((model.get("labels") || {})[key] ?? english).replace(/\{(\w+)\}/g, (_, name) => values[name] ?? "");

// Presenter keys, for slides and clickers: while focus is inside the widget (Tab to it),
// Space plays or pauses and → steps; the key then stops here, so the slideshow (RISE)
// does not move. Space on a focused button presses that button, as everywhere. Esc hands
// the keys back to the slides. Outside the widget, Space and → move the slides as usual.
function presenterKeys(root, name, { toggle, step = null }) {
  root.tabIndex = 0;
  root.setAttribute("role", "group");
  root.setAttribute("aria-label", name);
  root.setAttribute("aria-keyshortcuts", step ? "Space ArrowRight" : "Space");
  root.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea")) return;
    if (event.key === " ") {
      if (!event.target.closest("button, [role='button']")) { event.preventDefault(); toggle(); }
    } else if (event.key === "ArrowRight" && step) {
      event.preventDefault();
      step();
    } else if (event.key === "Escape") {
      event.target.blur();
    } else {
      return;
    }
    event.stopPropagation();
  });
}

// An SVG element with its attributes and, optionally, its text.
function svgEl(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

// Keyboard: a clickable SVG part gets Tab focus, a button role and a name, and reacts to
// Enter and Space like a click.
function clickable(node, name, handler) {
  node.setAttribute("tabindex", "0");
  node.setAttribute("role", "button");
  node.setAttribute("aria-label", name);
  node.addEventListener("click", handler);
  node.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); handler(); }
  });
}
