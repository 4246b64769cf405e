// The console's script: live updates over the server-sent events of /api/v1/events,
// "tick all" and a confirmation before deleting. Plain JavaScript, no build step.
"use strict";

function liveState(on) {
  const badge = document.getElementById("live-state");
  if (!badge) return;
  badge.classList.toggle("on", on);
  badge.classList.toggle("off", !on);
  badge.textContent = on ? "live" : "reconnecting…";
}

function listen(names, handler) {
  const source = new EventSource("/api/v1/events");
  source.onopen = () => liveState(true);
  source.onerror = () => liveState(false);
  for (const name of names) {
    source.addEventListener(name, (message) => handler(name, message.data));
  }
  return source;
}

// Dashboard: the figures are fetched again (at most every two seconds) when mail moves.
function dashboard() {
  const live = document.getElementById("live");
  if (!live) return;
  let timer = null;
  const refresh = async () => {
    timer = null;
    const answer = await fetch(live.dataset.src, { credentials: "same-origin" });
    if (answer.ok) live.innerHTML = await answer.text();
  };
  const names = ["queued", "delivered", "deferred", "failed", "reject", "removed", "connect"];
  listen(names, () => { if (timer === null) timer = setTimeout(refresh, 2000); });
  setInterval(refresh, 60000);  // the plots move on with the clock, too
}

// Events: each event at the top of the table, the oldest rows dropped.
function events() {
  const table = document.getElementById("events");
  if (!table) return;
  const body = table.tBodies[0];
  const keep = Number(table.dataset.keep) || 300;
  const filter = document.getElementById("event-filter");
  const shown = (row) => !filter.value || row.textContent.toLowerCase().includes(filter.value.toLowerCase());
  filter.addEventListener("input", () => {
    for (const row of body.rows) row.hidden = !shown(row);
  });
  listen(JSON.parse(table.dataset.names), (name, data) => {
    const record = JSON.parse(data);
    const row = body.insertRow(0);
    row.className = "ev fresh " + name;
    const when = new Date(record.ts * 1000);
    const ms = String(when.getMilliseconds()).padStart(3, "0");
    const details = Object.entries(record)
      .filter(([key, value]) => key !== "ts" && key !== "event" && value !== "" && value !== null
        && !(Array.isArray(value) && value.length === 0))
      .map(([key, value]) => key + "=" + value).join(" ");
    for (const [text, mono] of [[when.toLocaleTimeString([], { hour12: false }) + "." + ms, true], [name, false], [details, true]]) {
      const cell = row.insertCell();
      cell.textContent = text;  // never markup: clients chose much of this text
      if (mono) cell.className = "mono";
    }
    row.hidden = !shown(row);
    setTimeout(() => row.classList.remove("fresh"), 3000);
    while (body.rows.length > keep) body.deleteRow(body.rows.length - 1);
  });
}

function forms() {
  const all = document.getElementById("all");
  if (all) {
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll('input[name="queue_id"]')) box.checked = all.checked;
    });
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (click) => {
      if (!window.confirm(button.dataset.confirm)) click.preventDefault();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  forms();
  dashboard();
  events();
});
