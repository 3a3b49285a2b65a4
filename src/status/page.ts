/**
 * `GET /`: a page for a person at the device or on its network. Plain HTML and one inline script, no
 * external assets and no build step: it polls `status` (relative, so it also works behind a path prefix)
 * every STATUS_PAGE_REFRESH_MS and draws it. It holds no data itself, so the server hands it out without
 * the token; when `status` answers 401 the page asks for the token, keeps it in sessionStorage (or takes it
 * from `#token=…` in the address, which browsers never send to the server) and sends it as
 * `Authorization: Bearer`. Every value from the document is set as text, never as HTML: app names, reasons
 * and service names come from configs and registries.
 */

/** How often the page asks again; the ETag makes an unchanged answer cost a 304. */
export const STATUS_PAGE_REFRESH_MS = 2000;

/** The whole page `GET /` serves: static, no data inside; its script asks /status (with the token, if one is needed). */
export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>berth status</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 60em; }
  h1 { font-size: 1.3em; margin: 0 0 .5em; }
  table { border-collapse: collapse; margin: .5em 0 1em; }
  th, td { text-align: left; padding: .15em .8em .15em 0; vertical-align: top; }
  th { font-weight: 600; color: #555; }
  code { font-size: .95em; }
  progress { width: 16em; vertical-align: middle; }
  .app { border: 1px solid #ccc; border-radius: 4px; padding: .5em .8em; margin: .6em 0; }
  .state { font-weight: 600; }
  .state.running, .state.installed, .state.fetched { color: #176b2c; }
  .state.failed, .state.blocked, .state.stalled { color: #a31515; }
  .reason { color: #a31515; }
  .muted { color: #777; }
  #error { color: #a31515; }
  [hidden] { display: none; }
</style>
</head>
<body>
<h1>berth</h1>
<p id="error" hidden></p>
<form id="login" hidden>
  <p>This agent needs its status token (<code>status.token</code> in its config).</p>
  <label>Token <input id="token" type="password" autocomplete="off" required></label>
  <button type="submit">Show status</button>
</form>
<div id="status"><p class="muted" id="loading">loading…</p></div>
<script>
"use strict";
const REFRESH_MS = ${STATUS_PAGE_REFRESH_MS};
const TOKEN_KEY = "berth-status-token";
const fromHash = /^#token=(.+)$/.exec(location.hash);
if (fromHash) {
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(fromHash[1]));
  history.replaceState(null, "", location.pathname + location.search); // keep it out of the address bar
}
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child === undefined || child === null ? "" : child);
  return node;
}
function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? n + " B" : value.toFixed(1) + " " + units[unit];
}
const short = (digest) => digest ? digest.slice(0, 19) : "–";
function row(label, ...value) { return el("tr", {}, el("th", {}, label), el("td", {}, ...value)); }
function appCard(app) {
  const card = el("div", { class: "app", "data-app": app.name });
  card.append(el("div", {}, el("strong", { class: "name" }, app.name), " ",
    el("span", { class: "state " + app.state }, app.state), " ", el("code", { class: "muted" }, app.ref)));
  const table = el("table");
  table.append(row("current", el("code", {}, short(app.currentDigest))));
  if (app.desiredDigest && app.desiredDigest !== app.currentDigest) {
    table.append(row("desired", el("code", {}, short(app.desiredDigest))));
  }
  if (app.reason) {
    table.append(row("reason", el("span", { class: "reason" }, app.reason.code + ": " + app.reason.message)));
  }
  const p = app.progress;
  if (p) {
    const percent = p.bytesTotal > 0 ? Math.floor(p.bytesDone / p.bytesTotal * 100) : 100;
    table.append(row("progress",
      el("progress", { max: String(p.bytesTotal || 1), value: String(p.bytesDone) }), " ",
      el("span", { class: "percent" }, percent + "%"), " ",
      bytes(p.bytesDone) + " of " + bytes(p.bytesTotal) + ", " + p.blobsDone + "/" + p.blobsTotal + " blobs, " +
        bytes(p.bytesPerSecond) + "/s"));
  }
  if (app.services.length) {
    const list = el("ul", { class: "services" });
    for (const service of app.services) {
      let text = service.name + ": " + service.state;
      if (service.health) text += " (" + service.health + ")";
      if (service.state === "exited" && service.exitCode !== undefined) text += ", exit " + service.exitCode;
      if (service.restartCount) text += ", " + service.restartCount + " restarts";
      list.append(el("li", {}, text));
    }
    table.append(row("services", list));
  }
  card.append(table);
  return card;
}
function render(status) {
  const view = el("div", { id: "status" });
  const a = status.agent, e = status.engine, s = status.store;
  view.append(el("table", {},
    row("agent", "berth " + a.version + ", ", el("span", { id: "agent-state", class: "state" }, a.state),
      ", started " + new Date(a.startedAt).toLocaleString()),
    row("engine", e.reachable ? "docker " + (e.version || "?") : el("span", { class: "reason" },
      "unreachable" + (e.error ? ": " + e.error : ""))),
    row("store", bytes(s.bytesUsed) + " in " + s.blobs + " blobs, " + bytes(s.reclaimableBytes) +
      " reclaimable, " + (s.freeBytes === undefined ? "free space unknown" : bytes(s.freeBytes) + " free")),
    row("offline restore", el("span", { id: "offline" }, status.canRestoreOffline ? "yes" : "no")),
    ...(status.registryHosts || []).map((h) => row(h.mirror ? "mirror" : "registry", el("span", { class: "host" },
      h.host + ": " + bytes(h.bytesServed) + " served, " + h.errors + " errors" +
      (h.backoffUntil ? ", skipped until " + new Date(h.backoffUntil).toLocaleTimeString() : "")))),
  ));
  if (status.lastError) {
    view.append(el("p", { class: "reason" }, "last error: " + (status.lastError.app ? status.lastError.app + ": " : "") +
      status.lastError.code + ": " + status.lastError.message));
  }
  if (status.apps.length === 0) view.append(el("p", { class: "muted" }, "no apps configured"));
  for (const app of status.apps) view.append(appCard(app));
  $("status").replaceWith(view);
}
async function refresh() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  try {
    const response = await fetch("status", {
      cache: "no-cache", // revalidate with the ETag: an unchanged status costs a 304
      headers: token ? { Authorization: "Bearer " + token } : {},
    });
    if (response.status === 401) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      $("login").hidden = false;
      $("error").hidden = !token;
      $("error").textContent = token ? "That token was refused." : "";
      return; // wait for the form
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    $("login").hidden = true;
    $("error").hidden = true;
    render(await response.json());
  } catch (error) {
    $("error").hidden = false;
    $("error").textContent = "The agent does not answer (" + error.message + "); showing the last status.";
  }
  setTimeout(refresh, REFRESH_MS);
}
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  refresh();
});
refresh();
</script>
</body>
</html>
`;
