// Request-flow animation: nodes and links in SVG, one dot per hop, driven by
// requestAnimationFrame. Python only sends the topology and the list of steps; in live
// mode new steps are appended as the servers publish events.
// SVG, say, presenterKeys and svgEl come from shared.js (see deploylab.widgets.esm).
const COLOURS = { request: "#1a73e8", response: "#188038", hit: "#e8710a", refused: "#d93025", error: "#d93025" };
const FILL = { client: "#e6f4ea", proxy: "#fef7e0", internet: "#f1f3f4", server: "#e8f0fe" };
const BASE_MS = 900;

function htmlEl(name, className, text = null) {
  const node = document.createElement(name);
  if (className) node.className = className;
  if (text !== null) node.textContent = text;
  return node;
}

function render({ model, el: host }) {
  host.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = htmlEl("div", "dl-request-flow");
  root.style.cssText = "font-family: sans-serif; font-size: 13px; max-width: 980px";
  const title = htmlEl("div", "dl-rf-title");
  title.style.cssText = "font-weight: bold; margin-bottom: 4px";
  const layout = htmlEl("div", "dl-rf-layout");
  // The drawing shrinks with the page (never below 420 px) and the event list keeps at least
  // 240 px beside it; on a narrow page the list wraps under the drawing instead of shrinking.
  layout.style.cssText = "display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start";
  const svg = svgEl("svg", { viewBox: "0 0 700 300", width: "100%", role: "img",
                             class: "dl-rf-svg", "aria-label": "requests moving between clients, proxies and servers" });
  svg.style.cssText = "border: 1px solid var(--jp-border-color2, #ddd); border-radius: 6px; " +
    "background: var(--jp-layout-color0, #fff); flex: 2 1 420px; min-width: 0; max-width: 680px; height: auto";
  const events = htmlEl("ol", "dl-rf-events");
  events.style.cssText = "flex: 1 1 240px; min-width: 240px; height: 290px; overflow-y: auto; margin: 0; " +
    "position: relative; padding-left: 26px; font-size: 12px; border: 1px solid var(--jp-border-color2, #ddd); border-radius: 6px";
  events.setAttribute("aria-label", "the hops, in order (Tab to a hop, Enter to jump to it)");
  layout.append(svg, events);

  const controls = htmlEl("div", "dl-rf-controls");
  controls.style.cssText = "display: flex; gap: 6px; align-items: center; margin-top: 6px";
  const playButton = htmlEl("button", "dl-rf-play");
  const stepButton = htmlEl("button", "dl-rf-step", say(model, "step", "step ▸"));
  const resetButton = htmlEl("button", "dl-rf-reset", say(model, "restart", "restart"));
  const speedSelect = htmlEl("select", "dl-rf-speed");
  speedSelect.setAttribute("aria-label", "animation speed");
  for (const value of [0.25, 0.5, 1, 2, 4]) {
    const option = htmlEl("option", null, `${value}×`);
    option.value = String(value);
    speedSelect.append(option);
  }
  const modeBadge = htmlEl("span", "dl-rf-mode");
  modeBadge.style.cssText = "padding: 1px 6px; border-radius: 8px; font-size: 11px; color: #fff";
  const status = htmlEl("span", "dl-rf-status");
  controls.append(playButton, stepButton, resetButton, htmlEl("span", null, say(model, "speed", "speed")), speedSelect, modeBadge, status);
  root.append(title, layout, controls);
  host.append(root);

  // --- drawing the topology ---------------------------------------------------------------
  let nodes = new Map();
  const linkLayer = svgEl("g");
  const nodeLayer = svgEl("g");
  const dotLayer = svgEl("g");
  svg.append(linkLayer, nodeLayer, dotLayer);

  function drawTopology() {
    linkLayer.replaceChildren();
    nodeLayer.replaceChildren();
    nodes = new Map();
    const topology = model.get("topology") || { nodes: [], links: [] };
    for (const node of topology.nodes) nodes.set(node.id, node);
    for (const [a, b] of topology.links) {
      const p = nodes.get(a), q = nodes.get(b);
      if (!p || !q) continue;
      linkLayer.append(svgEl("line", { x1: p.x, y1: p.y, x2: q.x, y2: q.y, stroke: "#9aa0a6", "stroke-width": 2, class: "dl-rule" }));
    }
    for (const node of topology.nodes) {
      const group = svgEl("g", { class: "dl-rf-node", "data-node": node.id });
      const shape = node.kind === "internet"
        ? svgEl("ellipse", { cx: node.x, cy: node.y, rx: 58, ry: 30, fill: FILL.internet, stroke: "#80868b", "stroke-dasharray": "4 3" })
        : svgEl("rect", { x: node.x - 58, y: node.y - 22, width: 116, height: 44, rx: 8, fill: FILL[node.kind] || "#eee", stroke: "#5f6368" });
      group.append(shape, svgEl("text", { x: node.x, y: node.y + 4, "text-anchor": "middle", "font-size": 12, "font-weight": "bold", class: "dl-on-colour" }, node.label));
      const seen = svgEl("text", { x: node.x, y: node.y + 36, "text-anchor": "middle", "font-size": 10, fill: "#5f6368", class: "dl-rf-seen dl-muted" }, "");
      group.append(seen);
      node.seenText = seen;
      node.shape = shape;
      if (node.cache) {
        const cache = svgEl("rect", { x: node.x - 30, y: node.y + 44, width: 60, height: 20, rx: 4, fill: "#fff", stroke: "#e8710a", class: "dl-rf-cache" });
        const label = svgEl("text", { x: node.x, y: node.y + 58, "text-anchor": "middle", "font-size": 10, class: "dl-on-colour" }, "cache");
        group.append(cache, label);
        node.cacheBox = cache;
        seen.setAttribute("y", node.y + 78);
      }
      nodeLayer.append(group);
    }
  }

  // --- the event list -------------------------------------------------------------------------
  function drawEvents() {
    const steps = model.get("steps") || [];
    while (events.children.length > steps.length) events.lastChild.remove();
    for (let i = events.children.length; i < steps.length; i++) {
      const s = steps[i];
      const item = htmlEl("li", "dl-rf-event", `${s.src} → ${s.dst}: ${s.note || s.label}` + (s.addr ? `  [from ${s.addr}]` : ""));
      // the hop's colour marks the line; the text keeps the theme's colour so it stays readable
      item.style.borderLeft = `4px solid ${COLOURS[s.kind] || "#5f6368"}`;
      item.style.paddingLeft = "4px";
      item.style.cursor = "pointer";
      item.tabIndex = 0;
      item.setAttribute("role", "button");
      const jump = () => { index = i; progress = 0; model.set("playing", false); model.save_changes(); };
      item.addEventListener("click", jump);
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); jump(); }
      });
      events.append(item);
    }
  }

  function highlight() {
    [...events.children].forEach((item, i) => {
      item.classList.toggle("dl-selected-row", i === index);
      item.style.fontWeight = i === index ? "bold" : "normal";
    });
    const current = events.children[index];
    // Scroll the event list only, never the notebook: the learner may be reading elsewhere.
    if (current) {
      const top = current.offsetTop;  // events is position: relative
      if (top < events.scrollTop || top + current.offsetHeight > events.scrollTop + events.clientHeight) {
        events.scrollTop = Math.max(0, top - events.clientHeight / 2);
      }
    }
  }

  // --- the animation ----------------------------------------------------------------------------
  let index = 0, progress = 0, last = null, frame = null, holdUntil = 0;
  const dot = svgEl("circle", { r: 8, class: "dl-rf-dot", visibility: "hidden" });
  // The labels travel over the nodes' coloured fills, so each one sits on its own plate in the
  // theme's background colour (dl-panel) and keeps the theme's text colour: readable in light
  // and dark alike, whatever it passes over.
  const halo = { "stroke-width": 4, "paint-order": "stroke", "stroke-linejoin": "round" };
  const plate = (name) => svgEl("rect", { rx: 3, class: `dl-panel dl-rf-plate ${name}`, visibility: "hidden" });
  const labelPlate = plate("dl-rf-dot-label-plate");
  const addrPlate = plate("dl-rf-dot-addr-plate");
  const dotLabel = svgEl("text", { "font-size": 11, "text-anchor": "middle", "font-weight": "bold", ...halo, class: "dl-rf-dot-label dl-halo" });
  const dotAddr = svgEl("text", { "font-size": 10, "text-anchor": "middle", ...halo, class: "dl-rf-dot-addr dl-halo" });
  dotLayer.append(dot, labelPlate, dotLabel, addrPlate, dotAddr);

  function fitPlate(rect, text) {
    let box = null;
    try { box = text.textContent ? text.getBBox() : null; } catch (error) { box = null; }
    if (!box || box.width < 1) { rect.setAttribute("visibility", "hidden"); return; }
    rect.setAttribute("x", box.x - 3); rect.setAttribute("y", box.y - 1);
    rect.setAttribute("width", box.width + 6); rect.setAttribute("height", box.height + 2);
    rect.setAttribute("visibility", "visible");
  }
  // Labels near the drawing's edge (the "sees ..." of the rightmost node, a long "from" address)
  // are moved sideways to stay inside the drawing, which shrinks with the page.
  function keepInside(text) {
    let box = null;
    try { box = text.textContent ? text.getBBox() : null; } catch (error) { box = null; }
    if (!box || box.width < 1) return;
    const right = svg.viewBox.baseVal.width - 2;
    const dx = box.width > right - 2 || box.x < 2 ? 2 - box.x : box.x + box.width > right ? right - box.x - box.width : 0;
    if (!dx) return;
    for (const node of [text, ...text.querySelectorAll("tspan")]) {
      if (node.hasAttribute("x")) node.setAttribute("x", Number(node.getAttribute("x")) + dx);
    }
  }
  function hideLabels() {
    dotLabel.textContent = ""; dotAddr.textContent = "";
    labelPlate.setAttribute("visibility", "hidden"); addrPlate.setAttribute("visibility", "hidden");
  }

  function place(s, t) {
    const p = nodes.get(s.src), q = nodes.get(s.dst);
    if (!p || !q) { dot.setAttribute("visibility", "hidden"); hideLabels(); return; }
    // A cache hit goes into the proxy and turns back: draw it as out-and-back.
    let x, y;
    x = p.x + (q.x - p.x) * t;
    y = p.y + (q.y - p.y) * t;
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("fill", COLOURS[s.kind] || "#444");
    dot.setAttribute("visibility", "visible");
    dotLabel.setAttribute("x", x); dotLabel.setAttribute("y", y - 13); dotLabel.textContent = s.label;
    dotAddr.setAttribute("x", x); dotAddr.setAttribute("y", y + 22);
    dotAddr.textContent = s.addr ? say(model, "from", "from {addr}", { addr: s.addr }) : "";
    keepInside(dotLabel);
    keepInside(dotAddr);
    fitPlate(labelPlate, dotLabel);
    fitPlate(addrPlate, dotAddr);
  }

  function arrive(s) {
    const q = nodes.get(s.dst), p = nodes.get(s.src);
    if (q && q.seenText && s.addr) showSeen(q, s.addr);
    if (p && p.cacheBox && s.kind === "hit") {
      p.cacheBox.setAttribute("fill", "#fce8b2");
      setTimeout(() => p.cacheBox.setAttribute("fill", "#fff"), 600);
    }
    if (q && q.shape && (s.kind === "refused" || s.kind === "error")) {
      q.shape.setAttribute("stroke", "#d93025");
      setTimeout(() => q.shape.setAttribute("stroke", "#5f6368"), 800);
    }
  }

  function updateStatus() {
    const steps = model.get("steps") || [];
    status.textContent = steps.length ? say(model, "hop", "hop {n} / {total}", { n: Math.min(index + 1, steps.length), total: steps.length }) : say(model, "waiting", "waiting for requests…");
    const live = model.get("mode") === "live";
    modeBadge.textContent = live ? say(model, "live", "LIVE") : say(model, "scripted", "scripted");
    modeBadge.style.background = live ? "#d93025" : "#5f6368";
    playButton.textContent = model.get("playing") ? say(model, "pause", "pause ❚❚") : say(model, "play", "play ▶");
    speedSelect.value = String(model.get("speed"));
    title.textContent = model.get("title") || "";
    highlight();
  }

  function tick(now) {
    frame = requestAnimationFrame(tick);
    const steps = model.get("steps") || [];
    const dt = last === null ? 0 : now - last;
    last = now;
    if (!model.get("playing") || now < holdUntil) return;
    if (index >= steps.length) {
      dot.setAttribute("visibility", "hidden");
      hideLabels();
      if (model.get("mode") !== "live" && steps.length) { index = 0; progress = 0; holdUntil = now + 1500; clearSeen(); updateStatus(); }
      return;
    }
    // In live mode, a backlog plays faster so the picture keeps up with reality.
    const backlog = model.get("mode") === "live" ? Math.max(1, (steps.length - index) / 4) : 1;
    progress += dt * model.get("speed") * backlog / BASE_MS;
    if (progress >= 1) {
      arrive(steps[index]);
      index += 1; progress = 0;
      updateStatus();
      return;
    }
    place(steps[index], progress);
  }

  // "127.0.0.1 (X-Forwarded-For: 203.0.113.7)" is shown on two lines so it fits.
  function showSeen(node, addr) {
    const [first, ...rest] = addr.split(" (");
    node.seenText.replaceChildren();
    const x = node.x;
    node.seenText.setAttribute("x", x);
    node.seenText.append(svgEl("tspan", { x, dy: 0 }, `sees ${first}`));
    if (rest.length) node.seenText.append(svgEl("tspan", { x, dy: 12 }, rest.join(" (").replace(/\)$/, "")));
    keepInside(node.seenText);
  }

  function clearSeen() { for (const node of nodes.values()) if (node.seenText) node.seenText.replaceChildren(); }

  presenterKeys(root, say(model, "keys", "request animation: Space plays or pauses, → steps one hop"), {
    toggle: () => playButton.click(),
    step: () => stepButton.click(),
  });
  playButton.addEventListener("click", () => { model.set("playing", !model.get("playing")); model.save_changes(); });
  stepButton.addEventListener("click", () => {
    const steps = model.get("steps") || [];
    model.set("playing", false); model.save_changes();
    if (index < steps.length) { place(steps[index], 1); arrive(steps[index]); index += 1; progress = 0; }
    updateStatus();
  });
  resetButton.addEventListener("click", () => { index = 0; progress = 0; clearSeen(); updateStatus(); });
  speedSelect.addEventListener("change", () => { model.set("speed", Number(speedSelect.value)); model.save_changes(); });

  model.on("change:topology", () => { drawTopology(); index = 0; progress = 0; });
  let dropped = model.get("dropped") || 0;
  model.on("change:steps", () => {
    const steps = model.get("steps") || [];
    const newlyDropped = (model.get("dropped") || 0) - dropped;
    if (newlyDropped > 0) {
      // The oldest steps were trimmed in Python: shift our place and rebuild the list.
      dropped += newlyDropped;
      index = Math.max(0, index - newlyDropped);
      events.replaceChildren();
    }
    if (index > steps.length) index = steps.length;
    drawEvents(); updateStatus();
  });
  model.on("change:playing", updateStatus);
  model.on("change:speed", updateStatus);
  model.on("change:mode", updateStatus);
  model.on("change:title", updateStatus);

  drawTopology();
  drawEvents();
  updateStatus();
  frame = requestAnimationFrame(tick);
  return () => cancelAnimationFrame(frame);
}

export default { render };
