// Load-balancing widget: one column per algorithm, a balancer on top, servers below.
// Python sends the whole scenario (computed by deploylab.balancer.core); the animation
// runs here with requestAnimationFrame. Buttons fail/recover a server from the current step.
// SVG, say, presenterKeys and svgEl come from shared.js (see deploylab.widgets.esm).
const COLOURS = ["#4285f4", "#ea4335", "#f9ab00", "#34a853", "#9334e6", "#ff6d01"];

function fmt(x) {
  return Number.isInteger(x) ? String(x) : x.toFixed(1);
}

function render({ model, el: host }) {
  host.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-balancer";
  root.style.fontFamily = "sans-serif";
  const svg = svgEl("svg", { width: "100%", role: "img",
                          "aria-label": "requests spreading over servers" });
  svg.style.maxWidth = "100%";
  const caption = document.createElement("div");
  caption.className = "dl-balancer-caption";
  caption.style.cssText = "font-size: 13px; min-height: 1.4em; margin: 4px 0";
  caption.setAttribute("aria-live", "polite");
  const controls = document.createElement("div");
  controls.className = "dl-balancer-controls";
  root.append(svg, caption, controls);
  host.append(root);
  presenterKeys(root, say(model, "keys", "load-balancing animation: Space plays or pauses, → shows the next request"), {
    toggle: () => controls.querySelector(".dl-balancer-play")?.click(),
    step: () => {
      if (model.get("live") || step >= lastStep()) return;
      playing = false;
      step += 1; show(true); buildControls();
    },
  });

  const colWidth = 300, height = 250, lbY = 40, serverY = 170;
  let step = 0, playing = true, last = null, sinceStep = 0, frame = null;
  let flights = [];            // {dot, x0, y0, x1, y1, t}
  let columns = [];            // per column: {servers: [{box, count, detail}], lbText}
  let liveSeen = 0;

  const serverX = (c, i, n) => c * colWidth + (colWidth / (n + 1)) * (i + 1);

  function build() {
    svg.textContent = "";
    flights = [];
    columns = [];
    const live = model.get("live");
    const names = live ? model.get("live_servers") : model.get("scenario").servers;
    const titles = live ? ["live balancer"] : model.get("scenario").columns.map((c) => c.algorithm);
    const weights = live ? names.map(() => null) : model.get("scenario").weights;
    svg.setAttribute("viewBox", `0 0 ${titles.length * colWidth} ${height}`);
    titles.forEach((title, c) => {
      const cx = c * colWidth + colWidth / 2;
      svg.append(svgEl("text", { x: cx, y: 14, "text-anchor": "middle", "font-size": 13,
                              "font-weight": "bold" }, title));
      svg.append(svgEl("rect", { x: cx - 55, y: lbY - 16, width: 110, height: 32, rx: 6,
                              fill: "#f1f3f4", stroke: "#5f6368", class: "dl-lb-balancer dl-panel-alt" }));
      const lbText = svgEl("text", { x: cx, y: lbY + 4, "text-anchor": "middle", "font-size": 10 },
                        "balancer");
      svg.append(lbText);
      const servers = names.map((name, i) => {
        const x = serverX(c, i, names.length);
        svg.append(svgEl("line", { x1: cx, y1: lbY + 16, x2: x, y2: serverY - 20, stroke: "#dadce0",
                                class: "dl-rule" }));
        const box = svgEl("rect", { x: x - 31, y: serverY - 20, width: 62, height: 58, rx: 6,
                                 fill: "#fff", stroke: COLOURS[i % COLOURS.length],
                                 "stroke-width": 2, class: "dl-lb-server dl-panel", "data-server": name });
        const label = svgEl("text", { x, y: serverY - 5, "text-anchor": "middle", "font-size": 11,
                                   "font-weight": "bold" },
                         weights[i] ? `${name} w=${weights[i]}` : name.slice(-10));
        const count = svgEl("text", { x, y: serverY + 11, "text-anchor": "middle", "font-size": 12,
                                   class: "dl-lb-count" }, "0");
        const detail = svgEl("text", { x, y: serverY + 28, "text-anchor": "middle", "font-size": 9,
                                    fill: "#5f6368", class: "dl-muted" }, "");
        svg.append(box, label, count, detail);
        return { box, count, detail, x };
      });
      columns.push({ servers, lbText, cx, title });
    });
    buildControls();
  }

  function buildControls() {
    controls.textContent = "";
    const play = document.createElement("button");
    play.className = "dl-balancer-play";
    const playLabel = () => (playing ? say(model, "pause", "pause") : say(model, "play", "play"));
    play.textContent = playLabel();
    play.addEventListener("click", () => { playing = !playing; play.textContent = playLabel(); });
    controls.append(play);
    if (model.get("live")) return;
    const restart = document.createElement("button");
    restart.textContent = say(model, "restart", "restart");
    restart.addEventListener("click", () => { step = 0; show(); });
    controls.append(restart);
    model.get("scenario").servers.forEach((name, i) => {
      const button = document.createElement("button");
      button.className = "dl-balancer-toggle";
      const shown = model.get("scenario").columns[0].steps[Math.min(step, lastStep())];
      button.textContent = shown && shown.down[i] ? say(model, "recover", "recover {name}", { name }) : say(model, "fail", "fail {name}", { name });
      button.style.marginLeft = "6px";
      button.addEventListener("click", () => {
        model.set("toggle", { step, server: i, at: Date.now() });
        model.save_changes();
      });
      controls.append(button);
    });
  }

  const lastStep = () => model.get("scenario").columns[0].steps.length - 1;

  function launch(c, server, colour) {
    const col = columns[c];
    if (!col || server < 0 || server >= col.servers.length) return;
    const dot = svgEl("circle", { r: 6, cx: col.cx, cy: lbY, fill: colour, class: "dl-lb-dot" });
    svg.append(dot);
    flights.push({ dot, x0: col.cx, y0: lbY, x1: col.servers[server].x, y1: serverY - 24, t: 0 });
  }

  function show(animate = false) {
    if (model.get("live")) return;
    const scenario = model.get("scenario");
    scenario.columns.forEach((column, c) => {
      const s = column.steps[Math.min(step, column.steps.length - 1)];
      if (!s) return;
      const col = columns[c];
      col.servers.forEach((server, i) => {
        server.count.textContent = say(model, "requests", "{n} req", { n: s.counts[i] });
        server.box.classList.toggle("dl-down", Boolean(s.down[i]));
        server.box.setAttribute("stroke-dasharray", s.down[i] ? "4 3" : "");
        if (column.algorithm === "round_robin") server.detail.textContent = `cw ${fmt(s.current_weights[i])}`;
        else if (column.algorithm === "least_conn") server.detail.textContent = say(model, "open", "{n} open", { n: s.conns[i] });
        else server.detail.textContent = s.down[i] ? say(model, "down", "down") : "";
      });
      if (column.algorithm === "ip_hash") col.lbText.textContent = say(model, "slot", "{client} → slot {hash}", s);
      else col.lbText.textContent = s.server < 0 ? say(model, "no_upstream", "502: no live upstreams") : say(model, "request", "request {n}", { n: s.request + 1 });
      if (animate) launch(c, s.server, s.server < 0 ? "#000" : COLOURS[s.server % COLOURS.length]);
    });
    caption.textContent = say(model, "caption", "request {n} of {total} — each column runs nginx's algorithm on the same requests", { n: step + 1, total: lastStep() + 1 });
  }

  function showLive() {
    const counts = model.get("live_counts");
    const states = model.get("live_states");
    const col = columns[0];
    if (!col) return;
    col.servers.forEach((server, i) => {
      server.count.textContent = say(model, "requests", "{n} req", { n: counts[i] ?? 0 });
      server.detail.textContent = states[i] ?? "";
      const up = (states[i] ?? "up") === "up";
      server.box.classList.toggle("dl-down", !up);
      server.box.setAttribute("stroke-dasharray", up ? "" : "4 3");
    });
    caption.textContent = say(model, "live_caption", "live: each dot is a request the running balancer forwarded");
  }

  function onLiveRequests() {
    if (!model.get("live")) return;
    if (columns.length === 0 || columns[0].servers.length !== model.get("live_servers").length) build();
    for (const request of model.get("live_requests")) {
      if (request.id <= liveSeen) continue;
      liveSeen = request.id;
      if (flights.length < 40) launch(0, request.server, request.status >= 500 ? "#000" : COLOURS[request.server % COLOURS.length]);
    }
    showLive();
  }

  const tick = (now) => {
    const dt = last === null ? 0 : (now - last) / 1000;
    last = now;
    if (playing && !model.get("live")) {
      sinceStep += dt;
      if (sinceStep >= 1 / Math.max(0.1, model.get("speed"))) {
        sinceStep = 0;
        if (step < lastStep()) { step += 1; show(true); buildControls(); }
      }
    }
    flights = flights.filter((f) => {
      f.t += dt / 0.45;
      const t = Math.min(1, f.t);
      f.dot.setAttribute("cx", f.x0 + (f.x1 - f.x0) * t);
      f.dot.setAttribute("cy", f.y0 + (f.y1 - f.y0) * t);
      if (t >= 1) { f.dot.remove(); return false; }
      return true;
    });
    frame = requestAnimationFrame(tick);
  };

  model.on("change:scenario", () => { build(); show(); });
  model.on("change:live", () => { build(); model.get("live") ? showLive() : show(); });
  model.on("change:live_servers", () => { build(); showLive(); });
  model.on("change:live_requests", onLiveRequests);
  model.on("change:live_counts", showLive);
  model.on("change:live_states", showLive);
  build();
  model.get("live") ? showLive() : show(true);
  frame = requestAnimationFrame(tick);
  return () => cancelAnimationFrame(frame);
}

export default { render };
