// Small DOM and formatting helpers shared by the pages.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(
    ...children.flat(Infinity).filter((child) => child !== undefined && child !== null && child !== false),
  );
  return element;
}

/** An HTML element: h("a", {href: "#/jobs"}, "Jobs"); attributes named on* become event listeners. */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, with the same calling convention as h(). */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A number for people: "–" when missing, thousands separated, at most `digits` significant digits. */
export function num(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Number.isInteger(value)) return value.toLocaleString("en-US");
  const magnitude = Math.abs(value);
  if (magnitude >= 10 ** digits) return Math.round(value).toLocaleString("en-US");
  if (magnitude !== 0 && magnitude < 1e-3) return value.toExponential(digits - 1);
  return String(Number(value.toPrecision(digits)));
}

/** A duration in seconds as "1 h 05 min", "3 min 12 s" or "8 s". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const total = Math.max(0, Math.round(seconds));
  const [hours, minutes, secs] = [Math.floor(total / 3600), Math.floor((total % 3600) / 60), total % 60];
  if (hours) return `${hours} h ${String(minutes).padStart(2, "0")} min`;
  if (minutes) return `${minutes} min ${String(secs).padStart(2, "0")} s`;
  return `${secs} s`;
}

/** A timestamp from the API in the browser's locale. */
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

/** A coloured pill with a job or dataset state. */
export function badge(status) {
  return h("span", { class: `badge status-${status}`, "data-status": status }, status);
}

/** A card: a titled section of a page. */
export function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}

/** A definition list of [term, value] pairs. */
export function facts(pairs) {
  return h("dl", { class: "facts" }, ...pairs.map(([term, value]) => [h("dt", {}, term), h("dd", {}, value)]));
}

/** A table with a header row; `rows` are arrays of cells (strings or elements); `empty` when there is none. */
export function table(headers, rows, empty = "nothing yet", attrs = {}) {
  const head = h(
    "tr",
    {},
    headers.map((label) => h("th", {}, label)),
  );
  const body = rows.length
    ? rows.map((cells) =>
        h(
          "tr",
          {},
          cells.map((cell) => h("td", {}, cell)),
        ),
      )
    : [h("tr", {}, h("td", { colspan: headers.length, class: "notice" }, empty))];
  return h("table", attrs, h("thead", {}, head), h("tbody", {}, body));
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Calls `refresh` every `ms` until it returns true or `signal` aborts (the page was left). */
export async function poll(signal, ms, refresh) {
  while (!signal.aborted) {
    if (await refresh()) return;
    await sleep(ms, signal);
  }
}
