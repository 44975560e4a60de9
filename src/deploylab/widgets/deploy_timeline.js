// Deployment replay: lanes of instances, a dot per request appearing as the play head passes.
// SVG, say, presenterKeys and svgEl come from shared.js (see deploylab.widgets.esm).
const colourOf = (lane) => lane === "failed" ? "#d93025" : lane.startsWith("v1") ? "#1a73e8" : "#188038";

function render({ model, el }) {
  el.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-deploy-timeline";
  root.style.fontFamily = "sans-serif";
  const title = document.createElement("div");
  title.style.cssText = "font-weight: bold; font-size: 13px";
  const controls = document.createElement("div");
  controls.style.cssText = "font-size: 12px; margin: 4px 0";
  const play = document.createElement("button");
  const speed = document.createElement("select");
  speed.setAttribute("aria-label", "replay speed");
  for (const value of [0.25, 0.5, 1, 2, 4]) {
    const option = document.createElement("option");
    option.value = value; option.textContent = `${value}×`;
    speed.append(option);
  }
  const counter = document.createElement("span");
  counter.style.marginLeft = "8px";
  controls.append(play, ` ${say(model, "speed", "speed")} `, speed, counter);
  const width = 900, laneHeight = 26, left = 60, top = 24;
  const svg = svgEl("svg", { width: "100%", role: "img",
                            "aria-label": "deployment timeline: one dot per request, in the lane of the instance that answered" });
  root.append(title, controls, svg);
  el.append(root);

  let dots = [], head = null, position = 0, playing = true, last = null, frame = null;
  const draw = () => {
    svg.replaceChildren();
    const lanes = model.get("lanes"), duration = model.get("duration") || 1;
    const height = top + lanes.length * laneHeight + 20;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const x = (t) => left + (t / duration) * (width - left - 10);
    lanes.forEach((lane, i) => {
      const y = top + i * laneHeight + laneHeight / 2;
      svg.append(svgEl("line", { x1: left, x2: width - 10, y1: y, y2: y, stroke: "#eee", class: "dl-rule" }));
      svg.append(svgEl("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11 }, lane));
    });
    for (const [at, label] of model.get("steps")) {
      svg.append(svgEl("line", { x1: x(at), x2: x(at), y1: top - 4, y2: height - 20, stroke: "#999", "stroke-dasharray": "4 3", class: "dl-rule" }));
      svg.append(svgEl("text", { x: x(at) + 3, y: top - 8, "font-size": 10, class: "dl-muted" }, label));
    }
    dots = model.get("points").map(([at, lane]) => {
      const dot = svgEl("circle", { cx: x(at), cy: top + lane * laneHeight + laneHeight / 2 + (Math.random() - 0.5) * 10,
                                   r: 2, fill: colourOf(lanes[lane]), class: "dl-request", visibility: "hidden" });
      svg.append(dot);
      return { at, dot, failed: lanes[lane] === "failed" };
    });
    head = svgEl("line", { y1: top - 4, y2: height - 20, stroke: "#e8710a", "stroke-width": 2, class: "dl-play-head" });
    svg.append(head);
    head.xOf = x;
    title.textContent = model.get("title");
  };
  const show = () => {
    let shown = 0, failed = 0;
    for (const entry of dots) {
      const visible = entry.at <= position;
      entry.dot.setAttribute("visibility", visible ? "visible" : "hidden");
      if (visible) { shown += 1; if (entry.failed) failed += 1; }
    }
    head.setAttribute("x1", head.xOf(position)); head.setAttribute("x2", head.xOf(position));
    counter.textContent = say(model, "counter", "t={t} s  requests {n}, failed {failed}", { t: position.toFixed(2), n: shown, failed });
  };
  const tick = (now) => {
    if (playing && last !== null) {
      position += ((now - last) / 1000) * Number(speed.value);
      if (position > model.get("duration")) { position = model.get("duration"); playing = false; play.textContent = say(model, "replay", "replay"); }
      show();
    }
    last = now;
    frame = requestAnimationFrame(tick);
  };
  play.addEventListener("click", () => {
    if (position >= model.get("duration")) position = 0;
    playing = !playing;
    play.textContent = playing ? say(model, "pause", "pause") : say(model, "play", "play");
  });
  presenterKeys(root, say(model, "keys", "deployment replay: Space plays or pauses, → moves on a twentieth"), {
    toggle: () => play.click(),
    step: () => {
      playing = false;
      play.textContent = say(model, "play", "play");
      position = Math.min(model.get("duration"), position + model.get("duration") / 20);
      show();
    },
  });
  speed.value = String(model.get("speed"));
  speed.addEventListener("change", () => { model.set("speed", Number(speed.value)); model.save_changes(); });
  play.textContent = say(model, "pause", "pause");
  for (const name of ["points", "lanes", "steps", "duration", "title"]) model.on(`change:${name}`, () => { draw(); position = 0; show(); });
  draw(); show();
  frame = requestAnimationFrame(tick);
  return () => cancelAnimationFrame(frame);
}
export default { render };
