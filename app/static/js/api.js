// Calls to the service's HTTP API (relative URLs, so the dashboard works behind a path prefix), with the
// API key when one is set, and the job event stream read with fetch (EventSource cannot send headers).

import { askForKey, authHeaders } from "./auth.js";
import { sleep } from "./dom.js";

const RECONNECT_MS = 2000;

/** A 4xx/5xx answer: `detail` is the API's message (a string, or a list of {loc, msg} problems). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(Array.isArray(detail) ? detail.map((problem) => problem.msg).join("; ") : String(detail));
    this.status = status;
    this.detail = detail;
  }
}

async function detailOf(response) {
  try {
    return (await response.json()).detail ?? response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

/** fetch with the API key; on 401 asks for a key and tries again; other errors raise ApiError. */
export async function send(path, init = {}) {
  for (;;) {
    const response = await fetch(path, { ...init, headers: { ...init.headers, ...authHeaders() } });
    if (response.status === 401) {
      await askForKey(await detailOf(response));
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await detailOf(response));
    return response;
  }
}

/** GET a JSON resource. */
export async function get(path, signal) {
  return (await send(path, { signal })).json();
}

/** POST a JSON body (or a FormData as multipart) and read the JSON answer. */
export async function post(path, body) {
  const init =
    body instanceof FormData
      ? { method: "POST", body }
      : { method: "POST", body: JSON.stringify(body ?? {}), headers: { "Content-Type": "application/json" } };
  return (await send(path, init)).json();
}

/** PATCH a JSON body and read the JSON answer. */
export async function patch(path, body) {
  const init = { method: "PATCH", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } };
  return (await send(path, init)).json();
}

function save(blob, filename) {
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: filename });
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

/** Save a file the API serves (fetched with the key, then handed to the browser as a download). */
export async function download(path, filename) {
  save(await (await send(path)).blob(), filename);
}

/** POST a FormData and save the file the API answers (e.g. an anonymised image) as a download. */
export async function postAndDownload(path, form, filename) {
  save(await (await send(path, { method: "POST", body: form })).blob(), filename);
}

function parseEvent(block) {
  const event = { id: null, kind: "message", data: "" };
  for (const line of block.split("\n")) {
    const [field, ...rest] = line.split(":");
    const value = rest.join(":").replace(/^ /, "");
    if (field === "id") event.id = Number(value);
    else if (field === "event") event.kind = value;
    else if (field === "data") event.data += value;
  }
  return event;
}

/** Read one connection's events, moving `cursor.after` past each event handled, so a reconnect resumes there. */
async function readEvents(path, cursor, onEvent, signal) {
  const separator = path.includes("?") ? "&" : "?";
  const response = await send(`${path}${separator}after=${cursor.after}`, { signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event.data) {
        cursor.after = event.id ?? cursor.after;
        onEvent(event.kind, JSON.parse(event.data));
      }
    }
  }
}

/** Follow a server-sent event stream, calling onEvent(kind, event) for each event (a JobEventPublic), until the server ends it
 * (the job finished) or `signal` aborts; a dropped connection is resumed after the last event seen. */
export async function follow(path, onEvent, signal) {
  const cursor = { after: 0 };
  while (!signal.aborted) {
    try {
      await readEvents(path, cursor, onEvent, signal);
      return;
    } catch (error) {
      if (signal.aborted || error instanceof ApiError) throw error;
      await sleep(RECONNECT_MS, signal);
    }
  }
}
