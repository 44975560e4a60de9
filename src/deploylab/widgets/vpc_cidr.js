// CIDR explorer: 32 bits coloured network/host, a prefix slider and the block's facts.
// Python (deploylab.vpc) computes every fact; this file only draws and animates the bits.
// say, svgEl come from shared.js (see deploylab.widgets.esm).
const NETWORK = [26, 115, 232], HOST = [232, 234, 237];

function mix(a, b, t) {
  return a.map((v, i) => Math.round(v + (b[i] - v) * t));
}

// Relative luminance (WCAG) of an [r, g, b] colour, to pick the text colour for a bit's fill.
function luminance(rgb) {
  const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * channel(rgb[0]) + 0.7152 * channel(rgb[1]) + 0.0722 * channel(rgb[2]);
}

function render({ model, el }) {
  el.classList.add("dl-widget");  // theme.css: follow JupyterLab's light or dark theme
  const root = document.createElement("div");
  root.className = "dl-vpc-cidr";
  root.style.cssText = "font-family: sans-serif; font-size: 13px; max-width: 760px";
  const controls = document.createElement("div");
  controls.style.cssText = "display: flex; gap: 12px; align-items: center; margin-bottom: 6px";
  const input = document.createElement("input");
  input.className = "dl-vpc-cidr-input";
  input.style.cssText = "font-family: monospace; width: 170px";
  input.setAttribute("aria-label", "CIDR block");
  const slider = document.createElement("input");
  slider.type = "range"; slider.min = 0; slider.max = 32; slider.style.width = "260px";
  slider.className = "dl-vpc-cidr-slider";
  slider.setAttribute("aria-label", "prefix length");
  const prefixLabel = document.createElement("span");
  controls.append("block ", input, "prefix ", slider, prefixLabel);

  const cell = 20, gap = 6;
  const width = 32 * cell + 3 * gap + 4;
  const svg = svgEl("svg", { viewBox: `0 0 ${width} 52`, width: "100%", role: "img",
                             "aria-label": "the 32 bits of the address" });
  const rects = [], texts = [];
  for (let i = 0; i < 32; i++) {
    const x = 2 + i * cell + Math.floor(i / 8) * gap;
    const rect = svgEl("rect", { x, y: 4, width: cell - 2, height: 28, rx: 3, class: "dl-bit" });
    const text = svgEl("text", { x: x + (cell - 2) / 2, y: 23, "text-anchor": "middle",
                                 "font-family": "monospace", "font-size": 13, class: "dl-bit-text dl-on-colour" }, "0");
    svg.append(rect, text);
    rects.push(rect); texts.push(text);
  }
  const legend = svgEl("text", { x: 2, y: 48, "font-size": 11, class: "dl-muted" }, "");
  svg.append(legend);
  const facts = document.createElement("div");
  facts.className = "dl-vpc-cidr-facts";
  facts.style.cssText = "display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin-top: 6px";
  const message = document.createElement("div");
  message.style.cssText = "min-height: 1.3em; margin-top: 4px";
  root.append(controls, svg, facts, message);
  el.append(root);

  // Each bit eases towards its colour: level 1 = network, 0 = host.
  const level = new Array(32).fill(0), target = new Array(32).fill(0);
  let frame = null;
  const animate = () => {
    let moving = false;
    for (let i = 0; i < 32; i++) {
      const delta = target[i] - level[i];
      if (Math.abs(delta) > 0.01) { level[i] += delta * 0.25; moving = true; } else level[i] = target[i];
      const fill = mix(HOST, NETWORK, level[i]);
      rects[i].setAttribute("fill", `rgb(${fill.join(",")})`);
      // The bit's fill keeps its meaning (blue network, grey host) in both themes, so its text
      // is chosen for the fill, not for the theme: white on dark fills, near-black on light ones.
      // (1.05 / (L + 0.05) against white versus (L + 0.05) / 0.0645 against #202124.)
      const onStrong = 1.05 / (luminance(fill) + 0.05) > (luminance(fill) + 0.05) / 0.0645;
      texts[i].classList.toggle("dl-on-strong", onStrong);
      texts[i].classList.toggle("dl-on-colour", !onStrong);
    }
    frame = moving ? requestAnimationFrame(animate) : null;
  };
  const setPrefix = (prefix) => {
    // a ripple: bits change one after another, left to right
    for (let i = 0; i < 32; i++) {
      const wanted = i < prefix ? 1 : 0;
      if (target[i] !== wanted) setTimeout(() => { target[i] = wanted; if (!frame) frame = requestAnimationFrame(animate); }, Math.abs(i - prefix) * 12);
    }
    prefixLabel.textContent = `/${prefix}`;
    legend.textContent = say(model, "legend", "{network} network bits (blue) | {host} host bits (grey)", { network: prefix, host: 32 - prefix });
  };

  const row = (label, value) => {
    const a = document.createElement("span"); a.textContent = label; a.className = "dl-muted-text";
    const b = document.createElement("span"); b.textContent = value; b.style.fontFamily = "monospace";
    facts.append(a, b);
  };
  const show = () => {
    const f = model.get("facts");
    input.value = model.get("text");
    slider.value = model.get("prefixlen");
    facts.replaceChildren();
    if (f.error) {
      message.textContent = f.error; message.className = "dl-vpc-cidr-message dl-error-text";
      return;
    }
    f.bits.split("").forEach((bit, i) => { texts[i].textContent = bit; });
    setPrefix(f.prefixlen);
    row("block", f.block);
    row("netmask / wildcard", `${f.netmask} / ${f.wildcard}`);
    row("network / broadcast", `${f.network} / ${f.broadcast}`);
    row("addresses", f.total.toLocaleString("en"));
    row("usable (classic)", `${f.usable_classic.toLocaleString("en")}  (total - 2; /31 and /32 are special)`);
    row("usable (AWS)", f.aws_usable === null ? "AWS only accepts /16 to /28"
                                              : `${f.aws_usable.toLocaleString("en")}  (total - 5)`);
    row("class", `${f.address_class}${f.classful_prefix ? ` (classful /${f.classful_prefix})` : " (no network/host split)"}`);
    row("kind", f.kind);
    message.textContent = f.note; message.className = "dl-vpc-cidr-message dl-warn-text";
  };
  const commit = () => {
    if (input.value !== model.get("text")) { model.set("text", input.value); model.save_changes(); }
  };
  input.addEventListener("change", commit);
  // JupyterLab binds Enter and other keys to notebook commands: keep typing inside the box.
  input.addEventListener("keydown", (event) => {
    event.stopPropagation();
    if (event.key === "Enter") commit();
  });
  slider.addEventListener("input", () => {
    setPrefix(Number(slider.value));  // instant feedback; the facts follow from Python
    model.set("prefixlen", Number(slider.value)); model.save_changes();
  });
  model.on("change:facts", show);
  model.on("change:prefixlen", () => { slider.value = model.get("prefixlen"); });
  show();
  return () => { if (frame) cancelAnimationFrame(frame); };
}

export default { render };
