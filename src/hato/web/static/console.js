// The console's script: live updates over the server-sent events of /api/v1/events,
// "tick all" and a confirmation before deleting, hato test's steps as they stream in,
// and a test address's analysis once mail arrives. Plain JavaScript, no build step.
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
  const source = listen(JSON.parse(table.dataset.names), (name, data) => {
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
  // A reconnect replays what was missed (Last-Event-ID); this says when some is gone.
  source.addEventListener("missed", (message) => {
    const notice = JSON.parse(message.data);
    const cell = body.insertRow(0).insertCell();
    cell.colSpan = 3;
    cell.className = "empty";
    cell.textContent = (notice.missed === null ? "Some events" : notice.missed + " events")
      + " went by while the page was disconnected (" + notice.why + ").";
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

// An element with its text (never markup: servers and clients chose much of it).
function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function findingList(findings) {
  const list = el("ul", "findings");
  for (const item of findings) {
    const entry = el("li", item.severity);
    entry.append(el("strong", "", item.severity.toUpperCase() + ": " + item.title));
    if (item.host) entry.append(el("small", "", " (" + item.host + ")"));
    entry.append(el("p", "", item.explanation));
    entry.append(el("p", "next", "Next: " + item.next_steps));
    list.append(entry);
  }
  return list;
}

function seconds(value) {
  return value === null || value === undefined ? "-" : (value * 1000).toFixed(0) + " ms";
}

// The server-sent events of a POST's streamed body (EventSource only does GET).
async function readEvents(response, handler) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) handler(name, JSON.parse(data.join("\n")));
    }
  }
}

// Test: the form as /api/v1/diagnostics's options; each step a row as it arrives.
function diagnostics() {
  const form = document.getElementById("diag-form");
  if (!form) return;
  const status = document.getElementById("diag-status");
  const table = document.getElementById("diag-steps");
  const report = document.getElementById("diag-report");
  const button = document.getElementById("diag-run");
  const say = (text, className) => { status.textContent = text; status.className = className; };
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const body = {};
    for (const name of ["target", "server", "from", "to", "auth_user", "auth_password"]) {
      const value = form.elements[name].value.trim();
      if (value) body[name] = value;
    }
    body.tls = form.elements.tls.value;
    if (form.elements.timeout.value) body.timeout = Number(form.elements.timeout.value);
    for (const name of ["all_mx", "send", "dsn", "relay_test"]) body[name] = form.elements[name].checked;
    table.tBodies[0].replaceChildren();
    report.replaceChildren();
    table.hidden = true;
    button.disabled = true;
    say("Starting…", "running");
    try {
      const response = await fetch("/api/v1/diagnostics", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        let message = response.status + " " + response.statusText;
        try { message = (await response.json()).error; } catch (error) { /* not JSON */ }
        say(message, "problem");
        return;
      }
      await readEvents(response, (name, data) => {
        if (name === "start") {
          say("Testing " + data.target + " (stops after " + data.limit + " s at most)…", "running");
        } else if (name === "step") {
          table.hidden = false;
          const row = table.tBodies[0].insertRow();
          row.className = "step " + data.status;
          const cells = [
            [data.host + " [" + data.address + "]:" + data.port, "mono"], [data.name, ""],
            [null, ""], [seconds(data.started), "num"],
            [seconds(data.duration), "num"], [data.detail, "mono reply"],
          ];
          for (const [text, className] of cells) {
            const cell = row.insertCell();
            cell.className = className;
            if (text === null) cell.append(el("span", "status " + data.status, data.status));
            else cell.textContent = text;
          }
        } else if (name === "report") {
          say("Done: " + data.target, "");
          const verdict = el("p", "verdict " + (data.passed ? "pass" : "fail"), data.verdict);
          verdict.id = "diag-verdict";
          report.append(verdict);
          const findings = [...(data.dns ? data.dns.findings : []), ...data.findings];
          for (const host of data.hosts) findings.push(...host.findings);
          if (findings.length) report.append(findingList(findings));
        } else if (name === "error") {
          say(data.error, "problem");
        }
      });
    } catch (error) {
      say("The test stopped: " + error, "problem");
    } finally {
      button.disabled = false;
    }
  });
}

function analysis(item) {
  const part = el("article", "analysis");
  const envelope = item.envelope || {}, session = item.session || {};
  const when = new Date((item.analysed || 0) * 1000).toLocaleString();
  part.append(el("h2", "", "Message from <" + (envelope.sender || "") + "> at " + when));
  const facts = el("dl", "facts");
  const tls = session.tls_version ? session.tls_version + " " + (session.tls_cipher || "") : "none";
  const rows = [
    ["Client", "[" + session.client_ip + "]" + (session.client_name ? " " + session.client_name : "")],
    ["HELO", session.helo || "(none)"], ["TLS", tls], ["Protocol", session.protocol],
    ["Subject", envelope.subject || "-"], ["Size", envelope.size + " octets"],
  ];
  if (session.auth) rows.push(["AUTH", session.auth]);
  if (session.seconds !== null && session.seconds !== undefined) {
    rows.push(["MAIL to end of data", session.seconds.toFixed(3) + " s"]);
  }
  for (const [key, value] of rows) facts.append(el("dt", "", key), el("dd", "", value));
  part.append(facts);
  const table = el("table", "list checks");
  const head = table.createTHead().insertRow();
  for (const title of ["Check", "Result", "What it found"]) head.append(el("th", "", title));
  const body = table.createTBody();
  const findings = [];
  for (const check of item.checks || []) {
    const row = body.insertRow();
    row.dataset.check = check.name;
    row.insertCell().textContent = check.name;
    const cell = row.insertCell();
    cell.append(el("span", "status " + check.status, check.status));
    row.insertCell().textContent = check.summary;
    findings.push(...(check.findings || []));
  }
  part.append(table);
  if (findings.length) part.append(findingList(findings));
  else part.append(el("p", "verdict pass", "No problems found."));
  return part;
}

// Test address: the record polled until mail arrives (and on, while it takes mail).
function probe() {
  const section = document.getElementById("probe");
  if (!section) return;
  const state = document.getElementById("probe-state");
  const list = document.getElementById("probe-analyses");
  let shown = -1;
  const words = {
    waiting: "waiting for a message…", received: "a message arrived", expired: "expired: make a new one",
  };
  const poll = async () => {
    let record = null;
    try {
      const answer = await fetch("/api/v1/probes/" + encodeURIComponent(section.dataset.address),
        { credentials: "same-origin" });
      if (answer.ok) record = await answer.json();
    } catch (error) { /* tried again below */ }
    if (record) {
      section.dataset.state = record.state;
      state.textContent = words[record.state] || record.state;
      state.className = "live " + (record.state === "received" ? "on" : record.state === "expired" ? "off" : "");
      if (record.analyses.length !== shown) {
        shown = record.analyses.length;
        list.replaceChildren(...record.analyses.map(analysis));
      }
      if (record.state === "expired") return;
    }
    setTimeout(poll, 1500);
  };
  poll();
}

document.addEventListener("DOMContentLoaded", () => {
  forms();
  dashboard();
  events();
  diagnostics();
  probe();
});
