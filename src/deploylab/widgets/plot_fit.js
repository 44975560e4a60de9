// bqplot lays a figure out again when its box changes size, but only while the figure is on
// screen: a figure scrolled out of view keeps the width it had, and its drawing then sticks
// out of a narrower page. This invisible view gives every bqplot figure of its chart a
// viewBox equal to the size of its last layout, so until bqplot lays it out again the drawing
// scales down with its box (width 100%) instead of overflowing.
function fit(figure) {
  const svgs = figure.querySelectorAll(":scope > svg.svg-figure, :scope > svg.svg-background");
  const background = figure.querySelector("rect.plotarea_background");
  if (!svgs.length || !background || figure.dlPlotFit) return;
  const remember = () => {
    const width = figure.clientWidth, height = figure.clientHeight;
    if (width < 1 || height < 1) return;
    for (const svg of svgs) {
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
      svg.style.maxWidth = "100%";
    }
  };
  // bqplot sets the plot area's size at every layout (and only then): that is the moment the
  // figure's box matches its drawing.
  const observer = new MutationObserver(remember);
  observer.observe(background, { attributes: true, attributeFilter: ["width", "height"] });
  figure.dlPlotFit = observer;
  if (background.hasAttribute("width")) remember();
}

function render({ el }) {
  el.classList.add("dl-widget");
  el.style.display = "none";
  const scope = el.closest(".jp-Notebook") || document.body;
  const fitAll = () => {
    for (const figure of scope.querySelectorAll(".dl-autoscale-chart .bqplot.figure")) fit(figure);
  };
  fitAll();
  const observer = new MutationObserver(fitAll);
  observer.observe(scope, { childList: true, subtree: true });
  return () => observer.disconnect();
}

export default { render };
