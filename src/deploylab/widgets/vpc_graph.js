// The VPC as a graph: AZ boxes grouping subnets (coloured public / private / VPN-only),
// gateways above, route tables below. Click a subnet to see its route table and where it
// leads; a highlighted path (from Python's reach()) is traced by a moving packet.
// say, svgEl, clickable come from shared.js (see deploylab.widgets.esm).
const FILL = { igw: "#fde293", vgw: "#fdd663", pcx: "#e6c9a8", route_table: "#f1f3f4",
               internet: "#e8f0fe", corporate: "#fce8e6", peer: "#e6f4ea" };

function render({ model, el }) {
  el.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-vpc-graph";
  root.style.cssText = "font-family: sans-serif; font-size: 13px; max-width: 980px";
  const svg = svgEl("svg", { width: "100%", role: "group", "aria-label": "the VPC as a graph" });
  const caption = document.createElement("div");
  caption.className = "dl-vpc-graph-caption";
  caption.style.cssText = "min-height: 2.6em; margin-top: 4px";
  caption.setAttribute("aria-live", "polite");
  const legend = document.createElement("div");
  legend.style.cssText = "display: flex; gap: 14px; font-size: 12px; margin-bottom: 4px";
  root.append(legend, svg, caption);
  el.append(root);
  let frame = null;

  const draw = () => {
    const data = model.get("layout_data");
    const highlight = new Set(model.get("highlight"));
    svg.setAttribute("viewBox", `0 0 ${data.width} ${data.height}`);
    svg.replaceChildren();
    legend.replaceChildren();
    for (const [kind, colour] of Object.entries(data.kind_colours)) {
      const item = document.createElement("span");
      item.innerHTML = `<span style="display:inline-block;width:12px;height:12px;background:${colour};vertical-align:middle"></span> ${kind}`;
      legend.append(item);
    }
    const byId = Object.fromEntries(data.nodes.map((n) => [n.id, n]));
    const centre = (n) => [n.x + n.w / 2, n.y + n.h / 2];
    for (const group of data.groups) {
      svg.append(svgEl("rect", { x: group.x, y: group.y, width: group.w, height: group.h, rx: 8,
                                 fill: group.kind === "vpc" ? "#fafafa" : "none", stroke: "#888",
                                 "stroke-dasharray": group.kind === "az" ? "6 4" : "none",
                                 class: `dl-group dl-group-${group.kind}${group.kind === "vpc" ? " dl-panel" : ""}` }));
      svg.append(svgEl("text", { x: group.x + 8, y: group.y + 16, "font-size": 12, class: "dl-muted" },
                       group.label));
    }
    const edgeLines = [];
    for (const edge of data.edges) {
      const a = byId[edge.source], b = byId[edge.target];
      if (!a || !b) continue;
      const [x1, y1] = centre(a), [x2, y2] = centre(b);
      const line = svgEl("line", { x1, y1, x2, y2, stroke: "#bdc1c6", "stroke-width": 1.2,
                                   "stroke-dasharray": edge.relation === "uses" ? "3 3" : "none",
                                   class: `dl-edge dl-edge-${edge.relation}` });
      svg.append(line);
      edgeLines.push({ edge, line });
    }
    const boxes = {};
    for (const node of data.nodes) {
      const group = svgEl("g", { class: `dl-node dl-node-${node.kind}`, "data-node": node.id,
                                 cursor: node.kind === "subnet" ? "pointer" : "default" });
      const fill = node.kind === "subnet" ? data.kind_colours[node.subnet_kind] : (FILL[node.kind] || "#eee");
      const box = svgEl("rect", { x: node.x, y: node.y, width: node.w, height: node.h, rx: 6, fill,
                                  stroke: highlight.has(node.id) ? "#d93025" : "#5f6368",
                                  "stroke-width": highlight.has(node.id) ? 3 : 1 });
      group.append(box);
      boxes[node.id] = box;
      const light = node.kind === "subnet";
      const lines = node.label.split("\n");
      if (node.kind === "subnet") lines[0] += ` · ${node.subnet_kind}`;
      const extra = node.kind === "subnet" ? (node.chips || []) : node.kind === "route_table" ? (node.routes || []) : [];
      [...lines, ...extra].forEach((line, i) => {
        group.append(svgEl("text", { x: node.x + 6, y: node.y + 15 + i * 14,
                                     "font-size": i < lines.length ? 12 : 10,
                                     "font-weight": i === 0 ? "bold" : "normal",
                                     class: light ? "dl-on-strong" : "dl-on-colour",
                                     "font-family": i < lines.length ? "sans-serif" : "monospace" }, line));
      });
      if (node.kind === "subnet") {
        clickable(group, `subnet ${node.id.slice(7)}: show its route table`, () => {
          const used = data.edges.filter((e) => e.source === node.id && e.relation === "uses").map((e) => e.target);
          const reached = data.edges.filter((e) => used.includes(e.source) && e.relation === "route");
          edgeLines.forEach(({ edge, line }) => {
            const on = (edge.source === node.id && edge.relation === "uses") || reached.includes(edge);
            line.setAttribute("stroke", on ? "#e8710a" : "#bdc1c6");
            line.setAttribute("stroke-width", on ? 3 : 1.2);
          });
          const table = byId[used[0]];
          caption.textContent = `${node.id.slice(7)} (${node.subnet_kind}, ${node.az}) uses ${table ? table.label : "?"}: ` +
            (table && table.routes ? table.routes.join("; ") : "");
          model.set("selected", node.id); model.save_changes();
        });
      }
      svg.append(group);
    }
    caption.textContent = model.get("caption") || say(model, "hint", "Click a subnet to see its route table and where its routes lead.");
    // A packet travels along the highlighted path, hop by hop.
    const path = model.get("highlight").map((id) => byId[id]).filter(Boolean).map(centre);
    if (frame) cancelAnimationFrame(frame);
    frame = null;
    if (path.length > 1) {
      const dot = svgEl("circle", { r: 7, fill: "#d93025", class: "dl-packet" });
      svg.append(dot);
      const secondsPerHop = 0.7;
      let started = null;
      const step = (now) => {
        if (started === null) started = now;
        const t = ((now - started) / 1000 / secondsPerHop) % (path.length - 1 + 1);
        const i = Math.min(Math.floor(t), path.length - 2), f = Math.min(t - i, 1);
        const [x1, y1] = path[i], [x2, y2] = path[i + 1];
        dot.setAttribute("cx", x1 + (x2 - x1) * f);
        dot.setAttribute("cy", y1 + (y2 - y1) * f);
        frame = requestAnimationFrame(step);
      };
      frame = requestAnimationFrame(step);
    }
  };
  model.on("change:layout_data", draw);
  model.on("change:highlight", draw);
  model.on("change:caption", () => { caption.textContent = model.get("caption"); });
  draw();
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
