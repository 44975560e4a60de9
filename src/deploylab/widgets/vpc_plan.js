// Subnet plan: the VPC's address space as a bar, subnets coloured by AZ, free gaps hatched.
// Segments grow into place (requestAnimationFrame) when the plan changes.
// say, svgEl, clickable come from shared.js (see deploylab.widgets.esm).

function render({ model, el }) {
  el.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-vpc-plan";
  root.style.cssText = "font-family: sans-serif; font-size: 13px; max-width: 900px";
  const title = document.createElement("div");
  const svg = svgEl("svg", { viewBox: "0 0 1000 120", width: "100%", role: "group",
                             "aria-label": "the VPC address space with its subnets" });
  const caption = document.createElement("div");
  caption.className = "dl-vpc-plan-caption";
  caption.style.cssText = "min-height: 1.3em; margin-top: 4px";
  caption.setAttribute("aria-live", "polite");
  root.append(title, svg, caption);
  el.append(root);
  let frame = null;

  const draw = () => {
    const data = model.get("layout_data");
    title.textContent = say(model, "title", "{space}: {total} addresses", { space: data.space, total: data.total.toLocaleString("en") });
    svg.replaceChildren();
    const defs = svgEl("defs");
    const pattern = svgEl("pattern", { id: "dl-free-hatch", width: 8, height: 8,
                                       patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
    pattern.append(svgEl("line", { x1: 0, y1: 0, x2: 0, y2: 8, stroke: "#bbb", "stroke-width": 3 }));
    defs.append(pattern);
    svg.append(defs);
    const items = data.segments.map((segment) => {
      const x = 10 + (segment.start / data.total) * 980;
      const width = (segment.size / data.total) * 980;
      const colour = segment.free ? "url(#dl-free-hatch)" : (data.az_colours[segment.az] || "#9e9e9e");
      const group = svgEl("g", { class: segment.free ? "dl-plan-free" : "dl-plan-subnet", cursor: "pointer" });
      const rect = svgEl("rect", { x, y: 20, width: 0, height: 56, fill: colour, stroke: "#555",
                                   "stroke-width": 0.8 });
      group.append(rect);
      if (width > 46) {
        group.append(svgEl("text", { x: x + width / 2, y: 44, "text-anchor": "middle", "font-size": 12,
                                     class: segment.free ? "" : "dl-on-strong", "font-weight": "bold" },
                           segment.free ? "free" : segment.name));
        group.append(svgEl("text", { x: x + width / 2, y: 62, "text-anchor": "middle", "font-size": 10,
                                     class: segment.free ? "" : "dl-on-strong" }, segment.cidr));
      }
      group.append(svgEl("title", {}, segment.cidr));
      const label = segment.free ? `free block ${segment.cidr}` : `subnet ${segment.name} ${segment.cidr}`;
      clickable(group, label, () => {
        caption.textContent = segment.free
          ? `${segment.cidr} is free: ${segment.size.toLocaleString("en")} addresses not used by any subnet`
          : `${segment.name}: ${segment.cidr} in ${segment.az || "no AZ"}, ${segment.size} addresses, ` +
            `${segment.aws_usable ?? "-"} usable in AWS`;
        model.set("selected", segment.cidr); model.save_changes();
      });
      svg.append(group);
      return { rect, width };
    });
    Object.entries(data.az_colours).forEach(([az, colour], i) => {
      svg.append(svgEl("rect", { x: 10 + i * 170, y: 92, width: 14, height: 14, fill: colour }));
      svg.append(svgEl("text", { x: 30 + i * 170, y: 104, "font-size": 12 }, az));
    });
    caption.textContent = say(model, "hint", "Click a subnet or a gap.");
    const started = performance.now();
    const grow = (now) => {
      const t = Math.max(0, Math.min(1, (now - started) / 700));
      const eased = 1 - Math.pow(1 - t, 3);
      items.forEach(({ rect, width }) => rect.setAttribute("width", width * eased));
      frame = t < 1 ? requestAnimationFrame(grow) : null;
    };
    if (frame) cancelAnimationFrame(frame);
    frame = requestAnimationFrame(grow);
  };
  model.on("change:layout_data", draw);
  draw();
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
