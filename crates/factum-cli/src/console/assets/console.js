// factum console: the live log's feed and the overview's refresh. Rows come
// from the server already escaped; this script only places them.
"use strict";

function followLog(rows) {
  const status = document.getElementById("live-status");
  const show = (state, text) => {
    status.dataset.state = state;
    status.textContent = text;
  };
  const feed = new EventSource(rows.dataset.source);
  feed.onopen = () => show("live", "live");
  feed.onerror = () => show("connecting", "reconnecting…");
  feed.addEventListener("event", (message) => {
    const holder = document.createElement("tbody");
    holder.innerHTML = message.data;
    const row = holder.firstElementChild;
    if (!row) return;
    row.classList.add("fresh");
    rows.prepend(row);
    while (rows.rows.length > 500) rows.deleteRow(-1);
  });
  feed.addEventListener("failed", (message) => {
    show("failed", "stopped: " + message.data);
    feed.close();
  });
}

function refreshFigures() {
  const refresh = async () => {
    try {
      const response = await fetch("/overview.json", { credentials: "same-origin" });
      if (!response.ok) return;
      const figures = await response.json();
      for (const element of document.querySelectorAll("[data-figure]")) {
        const value = figures[element.dataset.figure];
        if (value !== undefined) element.textContent = value;
      }
    } catch (_) {
      // The next tick tries again.
    }
  };
  setInterval(refresh, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  const rows = document.getElementById("live-rows");
  if (rows) followLog(rows);
  if (document.body.dataset.page === "overview") refreshFigures();
});
