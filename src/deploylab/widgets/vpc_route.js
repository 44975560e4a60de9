// Route lookup step-through: each route's prefix bits are compared with the destination's
// bits, one route per step; matching routes light up, and the longest prefix wins.
// Python (RouteTable.lookup) decides; this file replays the decision slowly.
// say, presenterKeys, svgEl come from shared.js (see deploylab.widgets.esm).

function render({ model, el }) {
  el.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-vpc-route";
  root.style.cssText = "font-family: sans-serif; font-size: 13px; max-width: 900px";
  const controls = document.createElement("div");
  controls.style.cssText = "display: flex; gap: 10px; align-items: center; margin-bottom: 6px";
  const input = document.createElement("input");
  input.className = "dl-vpc-route-input";
  input.style.cssText = "font-family: monospace; width: 140px";
  input.setAttribute("aria-label", "destination address");
  const play = document.createElement("button");
  play.textContent = say(model, "play", "play");
  const stepButton = document.createElement("button");
  stepButton.textContent = say(model, "step", "step");
  controls.append("destination ", input, play, stepButton);
  const svg = svgEl("svg", { width: "100%", role: "img", "aria-label": "route lookup" });
  const caption = document.createElement("div");
  caption.className = "dl-vpc-route-caption";
  caption.style.cssText = "min-height: 2.6em; margin-top: 4px";
  root.append(controls, svg, caption);
  el.append(root);

  let shown = 0, playing = false, last = null, frame = null;
  const rowHeight = 30, cell = 12, bitsX = 250;

  const draw = () => {
    const data = model.get("data");
    const error = model.get("error");
    input.value = model.get("destination");
    caption.classList.toggle("dl-error-text", Boolean(error));
    if (error) { caption.textContent = error; return; }
    const rows = data.steps;
    const height = 40 + rowHeight * (rows.length + 1);
    svg.setAttribute("viewBox", `0 0 ${bitsX + 32 * cell + 60} ${height}`);
    svg.replaceChildren();
    const bitRow = (y, bits, colour) => bits.split("").forEach((bit, i) => {
      const x = bitsX + i * cell + Math.floor(i / 8) * 4;
      svg.append(svgEl("rect", { x, y, width: cell - 1, height: 18, fill: colour(i) }));
      svg.append(svgEl("text", { x: x + (cell - 1) / 2, y: y + 13, "text-anchor": "middle",
                                 "font-size": 10, "font-family": "monospace", class: "dl-on-colour" }, bit));
    });
    svg.append(svgEl("text", { x: 4, y: 24, "font-weight": "bold", "font-size": 12 },
                     `destination ${data.destination}`));
    bitRow(10, data.address_bits, () => "#e8f0fe");
    // A row not yet compared is a plain panel in the theme's colours; a compared row gets a
    // light tint that carries its meaning, with dark text on it in both themes.
    rows.forEach((step, index) => {
      const y = 40 + index * rowHeight;
      const visible = index < shown;
      const done = shown >= rows.length;
      const onTint = visible ? "dl-on-colour" : "";
      const fill = !visible ? "#fff" : step.winner && done ? "#ceead6" : step.matches ? "#e6f4ea" : "#f1f3f4";
      svg.append(svgEl("rect", { x: 0, y: y - 4, width: bitsX + 32 * cell + 60, height: rowHeight - 2,
                                 fill, stroke: step.winner && done ? "#188038" : "none", "stroke-width": 2,
                                 class: step.winner && done ? "dl-route-winner" : visible ? "dl-route-row" : "dl-route-row dl-panel" }));
      svg.append(svgEl("text", { x: 6, y: y + 13, "font-size": 12, "font-family": "monospace", class: onTint }, step.route));
      if (!visible) return;
      bitRow(y, step.network_bits.slice(0, step.prefixlen).padEnd(32, " "), (i) =>
        i >= step.prefixlen ? "#fff" : i < step.agreeing_bits ? "#a8dab5" : "#f6aea9");
      svg.append(svgEl("text", { x: bitsX + 32 * cell + 16, y: y + 13, "font-size": 11, class: onTint },
                       step.matches ? `/${step.prefixlen} ✓` : `/${step.prefixlen} ✗`));
    });
    if (shown === 0) caption.textContent = say(model, "hint", "Press play or step: each route's network bits are compared with the destination's.");
    else if (shown < rows.length) {
      const step = rows[shown - 1];
      caption.textContent = step.matches
        ? `${step.route}: all ${step.prefixlen} network bits agree, so it is a candidate.`
        : `${step.route}: bit ${step.agreeing_bits + 1} differs, so it does not match.`;
    } else caption.textContent = data.explanation;
  };
  const tick = (now) => {
    if (playing && (last === null || now - last > 700)) {
      last = now;
      shown += 1;
      draw();
      if (shown >= model.get("data").steps.length) { playing = false; play.textContent = say(model, "play", "play"); }
    }
    frame = playing ? requestAnimationFrame(tick) : null;
  };
  play.addEventListener("click", () => {
    if (shown >= model.get("data").steps.length) shown = 0;
    playing = !playing; play.textContent = playing ? say(model, "pause", "pause") : say(model, "play", "play"); last = null;
    if (playing && !frame) frame = requestAnimationFrame(tick);
  });
  stepButton.addEventListener("click", () => {
    const n = model.get("data").steps.length;
    shown = shown >= n ? 0 : shown + 1; draw();
  });
  presenterKeys(root, say(model, "keys", "route lookup: Space plays or pauses, → compares the next route"), {
    toggle: () => play.click(),
    step: () => stepButton.click(),
  });
  const commit = () => {
    if (input.value !== model.get("destination")) { model.set("destination", input.value); model.save_changes(); }
  };
  input.addEventListener("change", commit);
  // JupyterLab binds Enter and other keys to notebook commands: keep typing inside the box.
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") commit();
  });
  model.on("change:data", () => { shown = 0; draw(); });
  model.on("change:error", draw);
  draw();
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
