// ipywidgets 8 draws a slider's handle (role="slider") without an accessible name: its
// description label is not linked to it. This invisible view names every such handle in its
// notebook after the slider's description, now and whenever the page changes.
function nameSliders(scope) {
  for (const handle of scope.querySelectorAll(".noUi-handle[role='slider']:not([aria-label])")) {
    const slider = handle.closest(".widget-slider");
    const label = slider && slider.querySelector(".widget-label");
    const text = label && label.textContent.trim();
    if (text) handle.setAttribute("aria-label", text);
  }
}

function render({ el }) {
  el.classList.add("dl-widget");
  el.style.display = "none";
  const scope = el.closest(".jp-Notebook") || document.body;
  nameSliders(scope);
  const observer = new MutationObserver(() => nameSliders(scope));
  observer.observe(scope, { childList: true, subtree: true });
  return () => observer.disconnect();
}

export default { render };
