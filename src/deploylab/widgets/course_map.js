// Course map: stops drawn as boxes in SVG, a request dot travelling along them.
// Animation runs in the browser (requestAnimationFrame); Python only sends the stops.
// SVG, say, presenterKeys, svgEl and clickable come from shared.js (see deploylab.widgets.esm).

function render({ model, el: host }) {
  host.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const stops = model.get("stops");
  const boxWidth = 118, gap = 22, height = 100;
  const width = stops.length * (boxWidth + gap);
  const root = document.createElement("div");
  root.className = "dl-course-map";
  root.style.fontFamily = "sans-serif";
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "group",
                          "aria-label": say(model, "aria", "the path of a request, one stop per lesson") });
  const centre = (i) => i * (boxWidth + gap) + boxWidth / 2 + gap / 2;
  const boxes = [];
  stops.forEach((stop, i) => {
    const x = i * (boxWidth + gap) + gap / 2;
    if (i > 0) {
      svg.append(svgEl("line", { x1: x - gap, y1: 50, x2: x, y2: 50, stroke: "#888",
                              "stroke-width": 2, class: "dl-rule" }));
    }
    const group = svgEl("g", { class: "dl-stop", "data-stop": stop.name, cursor: "pointer" });
    const box = svgEl("rect", { x, y: 25, width: boxWidth, height: 50, rx: 8,
                             fill: "#e8f0fe", stroke: "#3367d6" });
    group.append(box,
      svgEl("text", { x: x + boxWidth / 2, y: 47, "text-anchor": "middle", "font-size": 12,
                   "font-weight": "bold", class: "dl-on-colour" }, say(model, `stop:${stop.name}`, stop.name)),
      svgEl("text", { x: x + boxWidth / 2, y: 64, "text-anchor": "middle", "font-size": 10,
                   class: "dl-on-colour" }, stop.lesson));
    group.append(svgEl("title", {}, say(model, `summary:${stop.name}`, stop.summary)));
    clickable(group, say(model, "stop_button", "{name} (lesson {lesson})",
                         { name: say(model, `stop:${stop.name}`, stop.name), lesson: stop.lesson }), () => {
      model.set("selected", stop.name);
      model.save_changes();
    });
    svg.append(group);
    boxes.push(box);
  });
  const dot = svgEl("circle", { r: 7, cy: 50, cx: centre(0), fill: "#e8710a", class: "dl-request-dot" });
  svg.append(dot);
  const caption = document.createElement("div");
  caption.className = "dl-course-map-caption";
  caption.style.cssText = "font-size: 13px; min-height: 1.4em; margin-top: 4px";
  caption.setAttribute("aria-live", "polite");
  const button = document.createElement("button");
  button.className = "dl-course-map-toggle";
  button.style.marginTop = "4px";
  root.append(svg, caption, button);
  host.append(root);

  const showSelected = () => {
    const name = model.get("selected");
    boxes.forEach((box, i) => box.setAttribute("fill", stops[i].name === name ? "#fce8b2" : "#e8f0fe"));
    const stop = stops.find((s) => s.name === name);
    caption.textContent = stop
      ? say(model, "selected", "{name}: {summary} (lesson {lesson})", {
          name: say(model, `stop:${stop.name}`, stop.name),
          summary: say(model, `summary:${stop.name}`, stop.summary), lesson: stop.lesson })
      : say(model, "hint", "Click a stop to see what it does and which lesson teaches it.");
  };
  const showPlaying = () => { button.textContent = model.get("playing") ? say(model, "pause", "pause") : say(model, "play", "play"); };
  button.addEventListener("click", () => { model.set("playing", !model.get("playing")); model.save_changes(); });
  model.on("change:selected", showSelected);
  model.on("change:playing", showPlaying);
  presenterKeys(root, say(model, "keys", "course map: Space plays or pauses the request"), {
    toggle: () => button.click(),
  });
  showSelected();
  showPlaying();

  const secondsPerTrip = 6;
  let position = 0, last = null, frame = null;
  const step = (now) => {
    if (last !== null && model.get("playing")) {
      position += (now - last) / 1000 / secondsPerTrip;
      if (position >= 1) {
        position -= 1;
        model.set("trips", model.get("trips") + 1);
        model.save_changes();
      }
      dot.setAttribute("cx", centre(0) + position * (centre(stops.length - 1) - centre(0)));
    }
    last = now;
    frame = requestAnimationFrame(step);
  };
  frame = requestAnimationFrame(step);
  return () => cancelAnimationFrame(frame);
}

export default { render };
