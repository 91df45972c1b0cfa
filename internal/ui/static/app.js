// agentplane dashboard. Polls the gateway's admin API and renders with DOM APIs only:
// every value from the API is set with textContent or as a plain attribute, never as HTML.
"use strict";

(function () {
  const POLL_MS = 1000;
  const TICK_MS = 250;            // live durations (running tasks) move on this often
  const AUDIT_EVERY = 5;          // polls between audit reads
  const STARTING_GRACE_MS = 10000; // a replica starting longer than this counts as unhealthy
  const STALE_EXIT_MS = 10 * 60 * 1000; // a last exit this long before a healthy run is history
  const LOG_TAIL = 500;           // lines of a replica's log shown when it opens
  const LOG_MAX_CHARS = 512 * 1024; // what the log view keeps, newest last
  const KEY_STORE = "agentplane.apiKey";
  const api = {
    agents: "../api/v1/agents",
    replicas: "../api/v1/replicas",
    tasks: "../api/v1/tasks?limit=50",
    audit: "../api/v1/audit?limit=50",
    fleet: "../api/v1/fleet",
    task: (id) => "../api/v1/tasks/" + encodeURIComponent(id),
    log: (replica) => "../api/v1/logs/" + encodeURIComponent(replica) + "?tail=" + LOG_TAIL + "&follow=true",
  };

  const $ = (id) => document.getElementById(id);

  // el builds an element. props: className, text, title, attrs (plain attributes), dataset.
  function el(tag, props, children) {
    const n = document.createElement(tag);
    if (props) {
      if (props.className) n.className = props.className;
      if (props.text !== undefined && props.text !== null) n.textContent = String(props.text);
      if (props.title) n.title = String(props.title);
      if (props.attrs) for (const k in props.attrs) n.setAttribute(k, String(props.attrs[k]));
      if (props.dataset) for (const k in props.dataset) n.dataset[k] = String(props.dataset[k]);
    }
    if (children) for (const c of children) if (c) n.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    return n;
  }

  // --- formatting ---------------------------------------------------------------------------
  function fmtDuration(ms) {
    if (ms === undefined || ms === null || isNaN(ms)) return "—";
    if (ms < 1000) return Math.round(ms) + " ms";
    const s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + String(Math.floor(s % 60)).padStart(2, "0") + "s";
    return Math.floor(m / 60) + "h " + String(m % 60).padStart(2, "0") + "m";
  }
  function parseTime(t) {
    if (!t) return null;
    const d = new Date(t);
    return isNaN(d.getTime()) || d.getFullYear() < 2000 ? null : d;
  }
  function fmtAgo(t) {
    const d = parseTime(t);
    if (!d) return "—";
    const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
    if (s < 60) return Math.floor(s) + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 86400) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }
  function fmtClock(t) {
    const d = parseTime(t);
    return d ? d.toLocaleTimeString([], { hour12: false }) : "—";
  }
  function shortID(id) {
    id = String(id || "");
    return id.length > 13 ? "…" + id.slice(-12) : id;
  }
  function num(v) { const n = Number(v); return isFinite(n) ? n : 0; }

  // health is what a replica tile says, most severe first.
  function health(r) {
    if (r.state === "CrashLoopBackOff") return { text: "CrashLoopBackOff", cls: "h-crash" };
    if (r.ejected) return { text: "Ejected", cls: "h-ejected" };
    if (r.ready) return { text: "Ready", cls: "h-ready" };
    switch (r.state) {
      case "Starting": case "Pending": return { text: r.state, cls: "h-starting" };
      case "Terminating": case "Stopped": return { text: r.state, cls: "h-down" };
      case "Running": return { text: "Not ready", cls: "h-notready" };
    }
    return { text: r.state || "Unknown", cls: "h-down" };
  }

  // Task states that end a task's clock: it ended, or it waits for its client.
  const SETTLED = new Set(["completed", "failed", "canceled", "rejected", "input-required", "auth-required"]);

  // The gateway's clock minus this browser's, from the last GET /api/v1/tasks: running times
  // are measured by the gateway's clock, which started them.
  let clockSkew = 0;
  function serverNow() { return Date.now() + clockSkew; }

  function sinceMs(t) {
    const d = parseTime(t);
    return d ? Math.max(0, serverNow() - d.getTime()) : null;
  }

  // unhealthy says why a replica that should take tasks cannot, or null when it can (or is on
  // its way out, or has only just started). Reason and message, when the supervisor reports
  // them (the probe's error, the tail of the replica's output), are shown as they are.
  function unhealthy(r) {
    const extra = [r.reason, r.message].filter((x) => typeof x === "string" && x.trim()).map((x) => x.trim());
    const withExtra = (why) => extra.length ? why + " — " + extra.join(" — ") : why;
    const age = sinceMs(r.since);
    const forAge = age !== null ? " for " + fmtDuration(age) : "";
    switch (r.state) {
      case "CrashLoopBackOff": {
        const parts = [];
        if (r.lastExit) parts.push("last exit: " + r.lastExit);
        if (num(r.restarts)) parts.push("restarts: " + num(r.restarts));
        return withExtra("crash-looping" + (parts.length ? " (" + parts.join(", ") + ")" : ""));
      }
      case "Starting": case "Pending":
        if (age !== null && age < STARTING_GRACE_MS) return null;
        return withExtra((r.state === "Pending" ? "not started" : "starting, startup probe not passed") + forAge +
          (r.lastExit ? " (last exit: " + r.lastExit + ")" : ""));
      case "Terminating": case "Stopped":
        return null;
      case "Running":
        if (!r.ready) return withExtra("running but failing its readiness probe" + forAge);
    }
    if (r.ejected) return withExtra("ejected by the gateway after failing tasks");
    return extra.length && !r.ready ? extra.join(" — ") : null;
  }

  // staleExit reports whether a replica's last exit is history: it has run ready since, for long.
  function staleExit(r) {
    const age = sinceMs(r.since);
    return r.state === "Running" && !!r.ready && !r.ejected && age !== null && age >= STALE_EXIT_MS;
  }

  function stateClass(state) {
    return "s-" + String(state || "").toLowerCase().replace(/[^a-z-]/g, "");
  }

  function bar(used, cap, label) {
    const frac = cap > 0 ? Math.min(1, used / cap) : 0;
    const fill = el("span");
    fill.style.width = (frac * 100).toFixed(1) + "%"; // CSSOM, allowed by the CSP
    const b = el("div", { className: "bar" + (cap > 0 && used >= cap ? " full" : ""), attrs: { "aria-hidden": "true" } }, [fill]);
    return el("div", { className: "load" }, [b, el("span", { text: label })]);
  }

  // --- fetching -----------------------------------------------------------------------------
  function authHeaders() {
    let key = null;
    try { key = sessionStorage.getItem(KEY_STORE); } catch (e) { /* storage disabled */ }
    return key ? { Authorization: "Bearer " + key } : {};
  }

  // get returns {status, body}; body is null unless the answer is 200 JSON.
  async function get(url) {
    const resp = await fetch(url, { headers: Object.assign({ Accept: "application/json" }, authHeaders()), cache: "no-store", credentials: "same-origin" });
    let body = null;
    if (resp.status === 200) body = await resp.json();
    return { status: resp.status, body: body };
  }

  // --- rendering ----------------------------------------------------------------------------
  const last = {};
  // changed reports whether a section's data differs from the last render (or a 10s tick
  // passed, so that relative times move on).
  function changed(name, data) {
    const key = JSON.stringify(data) + "|" + Math.floor(Date.now() / 10000);
    if (last[name] === key) return false;
    last[name] = key;
    return true;
  }

  function renderSummary(agents, replicas, tasks) {
    const ready = replicas.filter((r) => r.ready && !r.ejected && r.state !== "CrashLoopBackOff").length;
    const crash = replicas.filter((r) => r.state === "CrashLoopBackOff").length;
    const sick = replicas.filter((r) => unhealthy(r) !== null);
    const inFlight = agents.reduce((a, x) => a + num(x.inFlight), 0);
    const capacity = replicas.reduce((a, r) => a + (r.ready ? num(agentCap(agents, r.agent)) : 0), 0);
    const queued = agents.reduce((a, x) => a + num(x.queued), 0);
    const restarts = replicas.reduce((a, r) => a + num(r.restarts), 0);
    const failed = tasks ? tasks.filter((t) => t.state === "failed").length : null;
    const tiles = [
      ["Agents", String(agents.length), "", "tile-agents"],
      ["Replicas ready", String(ready), " / " + replicas.length, sick.length ? "t-warn" : ""],
      ["Unhealthy", String(sick.length), crash ? " " + crash + " crashing" : "", crash ? "t-bad" : (sick.length ? "t-warn" : "")],
      ["Tasks in flight", String(inFlight), capacity ? " / " + capacity + " slots" : "", ""],
      ["Queued", String(queued), "", queued > 0 ? "t-warn" : ""],
      ["Restarts", String(restarts), "", restarts > 0 ? "t-warn" : ""],
    ];
    if (failed !== null) tiles.push(["Failed (recent 50)", String(failed), "", failed > 0 ? "t-bad" : ""]);
    const root = $("summary");
    root.replaceChildren(...tiles.map(([label, value, small, cls]) =>
      el("div", { className: "tile " + cls }, [
        el("dt", { text: label }),
        el("dd", { dataset: { metric: label } }, [value, small ? el("small", { text: small }) : null]),
      ])));
    renderUnhealthy(sick);
  }

  // renderUnhealthy lists every replica that cannot take tasks, with why and a link to its log.
  function renderUnhealthy(sick) {
    const section = $("unhealthy-section");
    section.hidden = !sick.length;
    $("unhealthy").replaceChildren(...sick.map((r) => el("li", { dataset: { unhealthy: r.name } }, [
      el("span", { className: "badge " + health(r).cls, text: health(r).text }),
      " ",
      el("b", { className: "mono", text: r.name }),
      " ",
      el("span", { className: "why", text: unhealthy(r) }),
      " ",
      logLink(r.name),
    ])));
  }

  // logLink is a link that opens a replica's log in the panel.
  function logLink(replica) {
    return el("a", { className: "log-link", text: "log", attrs: { href: "#log=" + encodeURIComponent(replica) },
      title: "Follow the log of " + replica, dataset: { log: replica } });
  }

  function agentCap(agents, name) {
    const a = agents.find((x) => x.name === name);
    return a ? a.maxConcurrency : 0;
  }

  function renderAgents(agents, replicas) {
    const root = $("agents");
    if (!agents.length) {
      root.replaceChildren(el("p", { className: "empty", text: "No agents behind this gateway." }));
      return;
    }
    const byAgent = new Map();
    for (const r of replicas) {
      if (!byAgent.has(r.agent)) byAgent.set(r.agent, []);
      byAgent.get(r.agent).push(r);
    }
    root.replaceChildren(...agents.map((a) => renderAgent(a, byAgent.get(a.name) || [])));
  }

  function renderAgent(a, reps) {
    const cap = num(a.maxConcurrency);
    const ready = num(a.ready), desired = num(a.desired);
    const crash = reps.filter((r) => r.state === "CrashLoopBackOff").length;
    const as = a.autoscaling;
    // An autoscaled agent starting replicas for waiting tasks is scaling, not down.
    const status = ready === 0 && desired > 0 && !as ? "down" : (ready < desired || crash ? "degraded" : "ok");
    const readyBadge = el("span", {
      className: "badge " + (status === "ok" ? "h-ready" : status === "down" ? "h-crash" : "h-ejected"),
      text: ready + "/" + desired + " ready",
    });
    const head = el("div", { className: "agent-head" }, [
      el("h3", { text: a.name }),
      readyBadge,
      el("span", { className: "kind", text: (a.state || "stateless") + " · max " + cap + " per replica" }),
    ]);
    const totalCap = cap * reps.filter((r) => r.ready).length;
    const queued = num(a.queued);
    const restarts = num(a.restarts);
    const stats = el("div", { className: "agent-stats" }, [
      el("div", { className: "stat" }, ["In flight ", el("b", { text: num(a.inFlight) })]),
      bar(num(a.inFlight), totalCap, num(a.inFlight) + " / " + totalCap + " slots"),
      el("div", { className: "stat" + (queued > 0 ? " warn" : "") }, ["Queued ", el("b", { text: a.queued === undefined ? "—" : queued, dataset: { queued: a.name } })]),
      el("div", { className: "stat" + (restarts > 0 ? " warn" : "") }, ["Restarts ", el("b", { text: restarts })]),
    ]);
    const body = [head];
    if (a.description) body.push(el("p", { className: "desc", text: a.description }));
    body.push(stats);
    if (as) {
      // Desired vs actual, and why: the autoscaler's last decision.
      let why = as.reason || "no change yet";
      if (as.scaledAt) why += " (" + fmtAgo(as.scaledAt) + ")";
      body.push(el("p", { className: "autoscale muted", dataset: { autoscale: a.name } }, [
        "Autoscaling " + num(as.minReplicas) + "–" + num(as.maxReplicas) + " on task load · ",
        el("b", { text: desired + " desired, " + ready + " ready" }),
        " · " + why,
      ]));
    }

    // group by site, then zone, in name order
    const sites = new Map();
    for (const r of reps) {
      const s = r.site || "", z = r.zone || "";
      if (!sites.has(s)) sites.set(s, new Map());
      const zones = sites.get(s);
      if (!zones.has(z)) zones.set(z, []);
      zones.get(z).push(r);
    }
    const siteNames = [...sites.keys()].sort();
    for (const s of siteNames) {
      const zones = sites.get(s);
      const all = [...zones.values()].flat();
      const sReady = all.filter((r) => r.ready && !r.ejected).length;
      const siteEl = el("div", { className: "site", dataset: { site: s } }, [
        el("div", { className: "site-head" }, [
          el("h4", { text: s ? "Site " + s : "Local" }),
          el("span", { className: "muted", text: sReady + " of " + all.length + " ready" }),
        ]),
      ]);
      const zonesEl = el("div", { className: "zones" });
      for (const z of [...zones.keys()].sort()) {
        const list = zones.get(z).slice().sort((x, y) => num(x.index) - num(y.index) || String(x.name).localeCompare(String(y.name)));
        const zoneEl = el("div", { className: "zone" }, [
          z ? el("h5", { text: "Zone " + z }) : null,
          el("ul", { className: "replicas", attrs: { "aria-label": "Replicas of " + a.name + (s ? " in " + s : "") + (z ? "/" + z : "") } },
            list.map((r) => renderReplica(r, cap))),
        ]);
        zonesEl.appendChild(zoneEl);
      }
      siteEl.appendChild(zonesEl);
      body.push(siteEl);
    }
    if (!reps.length) body.push(el("p", { className: "empty", text: "No replicas." }));
    return el("article", { className: "agent a-" + status, dataset: { agent: a.name }, attrs: { "aria-label": "Agent " + a.name } }, body);
  }

  function renderReplica(r, cap) {
    const h = health(r);
    const meta = ["restarts " + num(r.restarts)];
    if (r.pid) meta.push("pid " + r.pid);
    const since = parseTime(r.since);
    if (since) meta.push((r.state === "Running" ? "up " : "since ") + fmtAgo(r.since).replace(" ago", ""));
    const parts = [
      el("div", { className: "replica-head" }, [
        el("span", { className: "replica-name", text: r.name, title: r.url || r.name }),
        el("span", { className: "badge " + h.cls, text: h.text, dataset: { role: "health" } }),
      ]),
      bar(num(r.inFlight), cap, num(r.inFlight) + " / " + cap + " in flight"),
      el("div", { className: "meta", text: meta.join(" · ") }),
    ];
    if (r.state === "CrashLoopBackOff" && parseTime(r.nextStart)) {
      const s = Math.max(0, Math.round((parseTime(r.nextStart).getTime() - Date.now()) / 1000));
      parts.push(el("div", { className: "meta", text: "next start in " + s + "s" }));
    }
    const why = unhealthy(r);
    if (why) parts.push(el("div", { className: "why", text: why, dataset: { role: "why" } }));
    if (r.lastExit && (r.state === "CrashLoopBackOff" || num(r.restarts) > 0) && !(why && why.includes(r.lastExit))) {
      const stale = staleExit(r);
      parts.push(el("div", { className: "exit" + (stale ? " stale" : ""), text: "last exit: " + r.lastExit,
        title: stale ? "running ready since " + fmtAgo(r.since) : "", dataset: { role: "exit", stale: stale } }));
    }
    parts.push(el("div", { className: "replica-links" }, [logLink(r.name)]));
    return el("li", {
      className: "replica " + h.cls,
      dataset: { replica: r.agent + "/" + r.name, health: h.text, ready: !!r.ready, state: r.state || "" },
      attrs: { "aria-label": r.name + ": " + h.text + ", " + num(r.inFlight) + " of " + cap + " in flight, " + num(r.restarts) + " restarts" },
    }, parts);
  }

  function renderTasks(res) {
    const tbody = $("tasks").tBodies[0];
    const note = $("tasks-note");
    if (res.status !== 200) {
      note.textContent = res.status === 404 ? "This gateway does not list tasks." : "Task list unavailable (HTTP " + res.status + ").";
      tbody.replaceChildren(el("tr", null, [el("td", { className: "empty", text: "—", attrs: { colspan: 8 } })]));
      return [];
    }
    const tasks = Array.isArray(res.body && res.body.tasks) ? res.body.tasks : [];
    note.textContent = tasks.length ? "Last " + tasks.length + ", newest first." : "";
    if (!tasks.length) {
      tbody.replaceChildren(el("tr", null, [el("td", { className: "empty", text: "No tasks yet.", attrs: { colspan: 8 } })]));
      return tasks;
    }
    tbody.replaceChildren(...tasks.map((t) => {
      const attempts = num(t.attempts);
      return el("tr", { dataset: { task: t.id, state: t.state || "" } }, [
        el("td", { className: "id" }, [el("a", { text: shortID(t.id), title: "Open task " + t.id,
          attrs: { href: "#task=" + encodeURIComponent(t.id) }, dataset: { openTask: t.id } })]),
        el("td", { text: t.agent }),
        el("td", null, [el("span", { className: "badge " + stateClass(t.state), text: t.state || "—" })]),
        el("td", { className: "mono" }, [t.replica ? el("a", { text: t.replica, title: "Follow the log of " + t.replica,
          attrs: { href: "#log=" + encodeURIComponent(t.replica) } }) : "—"]),
        el("td", { className: "num" + (attempts > 1 ? " redispatched" : ""), text: attempts > 1 ? attempts + " (↻" + (attempts - 1) + ")" : String(attempts),
          title: attempts > 1 ? "re-dispatched " + (attempts - 1) + " time(s)" : "" }),
        durationCell(t),
        el("td", { text: fmtAgo(t.updatedAt), title: t.updatedAt || "" }),
        el("td", { className: "reason", text: t.reason || "" }),
      ]);
    }));
    return tasks;
  }

  // durationCell is a task's time: how long it took, or, while it runs, how long it has been
  // running, ticking.
  function durationCell(t) {
    if (!SETTLED.has(t.state) && parseTime(t.createdAt)) {
      return el("td", { className: "num live", text: fmtDuration(sinceMs(t.createdAt)), title: "running; since " + t.createdAt,
        dataset: { liveSince: t.createdAt } });
    }
    return el("td", { className: "num", text: fmtDuration(t.latencyMs) });
  }

  // tick moves every running time on the page.
  function tick() {
    for (const n of document.querySelectorAll("[data-live-since]")) {
      const ms = sinceMs(n.dataset.liveSince);
      if (ms !== null) n.textContent = fmtDuration(ms);
    }
  }

  function renderAudit(res) {
    const section = $("audit-section");
    if (res.status !== 200 || !res.body) { section.hidden = true; return; }
    section.hidden = false;
    const recs = Array.isArray(res.body.records) ? res.body.records.filter((r) => !r.kind) : [];
    recs.sort((x, y) => num(y.seq) - num(x.seq));
    const tbody = $("audit").tBodies[0];
    if (!recs.length) {
      tbody.replaceChildren(el("tr", null, [el("td", { className: "empty", text: "No records yet.", attrs: { colspan: 10 } })]));
      return;
    }
    tbody.replaceChildren(...recs.map((r) => el("tr", { dataset: { seq: r.seq } }, [
      el("td", { text: fmtClock(r.time), title: r.time || "" }),
      el("td", { className: "num", text: r.seq }),
      el("td", { text: (r.subject || "—") + (r.tenant ? " (" + r.tenant + ")" : "") }),
      el("td", { text: r.agent || "—" }),
      el("td", { text: r.method || "—" }),
      el("td", { className: "id", text: shortID(r.taskId) || "—", title: r.taskId || "" }),
      el("td", null, [el("span", { className: "badge " + (r.outcome === "ok" ? "s-completed" : r.outcome ? "s-failed" : ""), text: r.outcome || "—" })]),
      el("td", { className: "num", text: r.httpStatus || "—" }),
      el("td", { className: "num", text: r.latencyMs !== undefined ? fmtDuration(r.latencyMs) : "—" }),
      el("td", { className: "mono", text: (r.replica || "—") + (r.site ? " @" + r.site : "") }),
    ])));
  }

  // renderFleet shows the gateways of the fleet; the section stays hidden outside a fleet.
  function renderFleet(res) {
    const section = $("fleet-section");
    const members = res && res.status === 200 && res.body && Array.isArray(res.body.members) ? res.body.members : [];
    if (!members.length) { section.hidden = true; return; }
    section.hidden = false;
    $("fleet").tBodies[0].replaceChildren(...members.map((m) => {
      let ready = 0, slots = 0, inFlight = 0, queued = 0;
      const agents = m.agents && typeof m.agents === "object" ? m.agents : {};
      for (const k in agents) {
        const l = agents[k] || {};
        ready += num(l.ready); slots += num(l.slots); inFlight += num(l.inFlight); queued += num(l.queued);
      }
      const name = (m.id || "—") + (m.self ? " (this)" : "") + (m.draining ? " (draining)" : "");
      return el("tr", { dataset: { gateway: m.id || "" } }, [
        el("td", { className: "mono", text: name }),
        el("td", { text: m.site || "—" }),
        el("td", { className: "mono", text: m.url || "—" }),
        el("td", { text: Object.keys(agents).sort().join(", ") || "—" }),
        el("td", { className: "num", text: ready }),
        el("td", { className: "num", text: inFlight + " / " + slots }),
        el("td", { className: "num", text: queued }),
        el("td", { className: "num", text: m.self || !m.rtt ? "—" : fmtDuration(m.rtt / 1e6) }),
        el("td", { text: m.lastSeen ? fmtAgo(m.lastSeen) : "—" }),
      ]);
    }));
  }

  // --- connection state & auth --------------------------------------------------------------
  let lastOK = 0;
  function setConn(ok, msg) {
    const c = $("conn");
    c.className = "conn " + (ok ? "conn-live" : "conn-stale");
    $("conn-text").textContent = msg;
  }

  function needAuth(show, status) {
    $("auth").hidden = !show;
    if (show) {
      $("auth-msg").textContent = status === 403
        ? "This API key may not read the gateway's status; an administrator's key is needed."
        : "This gateway needs an API key to show its status.";
    }
  }

  $("auth-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("auth-key").value.trim();
    try {
      if (v) sessionStorage.setItem(KEY_STORE, v); else sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled */ }
    $("auth-key").value = "";
    poll();
  });


  // --- the panel: a replica's log, or one task -------------------------------------------------
  // It opens from links (#log=REPLICA, #task=ID), so that a view can be linked and the back
  // button closes it.
  let panelAbort = null, panelTimer = null, panelHash = "";

  function stopPanel() {
    if (panelAbort) panelAbort.abort();
    panelAbort = null;
    clearTimeout(panelTimer);
  }

  function closePanel() {
    stopPanel();
    const d = $("panel");
    if (d.open) d.close();
  }

  function openPanel(title) {
    stopPanel();
    panelHash = location.hash;
    $("panel-title").textContent = title;
    $("panel-status").textContent = "";
    $("panel-body").replaceChildren();
    const d = $("panel");
    if (!d.open) d.showModal();
    panelAbort = new AbortController();
    return panelAbort.signal;
  }

  function route() {
    const h = location.hash.slice(1);
    const eq = h.indexOf("=");
    const kind = eq > 0 ? h.slice(0, eq) : "";
    let arg = "";
    try { arg = decodeURIComponent(h.slice(eq + 1)); } catch (e) { arg = ""; }
    if (kind === "log" && arg) return openLog(arg);
    if (kind === "task" && arg) return openTask(arg);
    closePanel();
  }

  // openLog follows a replica's log: its last lines, then lines as they are written, streamed
  // from GET /api/v1/logs/{replica}?follow=true until the panel closes.
  async function openLog(replica) {
    const signal = openPanel("Log of " + replica);
    const pre = el("pre", { className: "log", attrs: { tabindex: "0", "aria-label": "Log of " + replica, "aria-live": "off" } });
    $("panel-body").replaceChildren(pre);
    $("panel").dataset.view = "log";
    $("panel").dataset.replica = replica;
    const status = $("panel-status");
    status.textContent = "Connecting…";
    try {
      const resp = await fetch(api.log(replica), { headers: authHeaders(), cache: "no-store", credentials: "same-origin", signal: signal });
      if (resp.status !== 200) {
        let msg = "HTTP " + resp.status;
        try { const b = await resp.json(); if (b && b.error) msg = b.error; } catch (e) { /* not JSON */ }
        status.textContent = resp.status === 404 && !msg.includes("replica")
          ? "This gateway does not serve replica logs (only agentplane up does)."
          : "Cannot read the log: " + msg;
        return;
      }
      status.textContent = "Following · newest at the bottom";
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        let text = pre.textContent + dec.decode(value, { stream: true });
        if (text.length > LOG_MAX_CHARS) text = text.slice(text.indexOf("\n", text.length - LOG_MAX_CHARS) + 1);
        pre.textContent = text;
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
      status.textContent = "The log stream ended.";
    } catch (e) {
      if (!signal.aborted) status.textContent = "The log stream broke: " + (e && e.message ? e.message : e);
    }
  }

  // openTask shows one task: its attempts, replicas, timings and state changes (never its
  // messages), refreshed while it runs.
  async function openTask(id) {
    const signal = openPanel("Task " + id);
    $("panel").dataset.view = "task";
    $("panel").dataset.task = id;
    const load = async () => {
      let res;
      try {
        res = await get(api.task(id));
      } catch (e) {
        if (!signal.aborted) $("panel-status").textContent = "Gateway unreachable.";
        res = null;
      }
      if (signal.aborted) return;
      if (res && res.status === 200 && res.body) {
        renderTask(res.body);
        if (SETTLED.has(res.body.state)) return;
      } else if (res) {
        $("panel-status").textContent = res.status === 404 ? "No such task in the journal (it may have expired)." : "Cannot read the task (HTTP " + res.status + ").";
        if (res.status === 404) return;
      }
      panelTimer = setTimeout(load, POLL_MS);
    };
    await load();
  }

  function renderTask(t) {
    const created = parseTime(t.createdAt);
    const settled = SETTLED.has(t.state);
    const at = (x) => { const d = parseTime(x); return d && created ? d.getTime() - created.getTime() : null; };
    const hist = Array.isArray(t.history) ? t.history : [];
    // Attempts: each from its first event to the next attempt's, or to the task's end.
    const attempts = [];
    for (const e of hist) {
      const n = num(e.attempt);
      if (n < 1) continue;
      const last = attempts[attempts.length - 1];
      if (!last || last.n !== n) attempts.push({ n: n, replica: e.replica || "", start: at(e.at), startAt: e.at, end: null, state: e.state });
      else last.state = e.state;
    }
    for (let i = 0; i < attempts.length; i++) {
      attempts[i].end = i + 1 < attempts.length ? attempts[i + 1].start : (settled ? at(t.updatedAt) : null);
    }
    const total = settled ? num(t.latencyMs) : sinceMs(t.createdAt);
    const field = (k, v) => [el("dt", { text: k }), el("dd", null, [v])];
    const totalEl = settled ? el("span", { text: fmtDuration(total) })
      : el("span", { className: "live", text: fmtDuration(total), dataset: { liveSince: t.createdAt, role: "elapsed" } });
    const info = el("dl", { className: "task-fields" }, [
      ...field("State", el("span", { className: "badge " + stateClass(t.state), text: t.state || "—", dataset: { role: "task-state" } })),
      ...field("Agent", t.agent || "—"),
      ...field("Method", t.method || "—"),
      ...field("Attempts", String(num(t.attempts))),
      ...field("Replica", t.replica ? el("span", { className: "mono" }, [t.replica + " ", logLink(t.replica)]) : "—"),
      ...field(settled ? "Took" : "Running for", totalEl),
      ...field("Waited for a replica", attempts.length && attempts[0].start !== null ? fmtDuration(attempts[0].start) : (settled ? "—" : "still waiting")),
      ...field("Created", fmtClock(t.createdAt) + " (" + fmtAgo(t.createdAt) + ")"),
      ...field("Updated", fmtClock(t.updatedAt) + " (" + fmtAgo(t.updatedAt) + ")"),
    ]);
    if (t.subject || t.tenant) info.append(...field("Asked by", (t.subject || "—") + (t.tenant ? " (" + t.tenant + ")" : "")));
    if (t.priority) info.append(...field("Priority", t.priority));
    if (t.owner) info.append(...field("Gateway", t.owner + (t.origin ? " (forwarded by " + t.origin + ")" : "")));
    if (t.reason) info.append(...field("Reason", el("span", { className: "reason", text: t.reason })));

    const attemptRows = attempts.map((a) => el("tr", { dataset: { attempt: a.n } }, [
      el("td", { className: "num", text: a.n }),
      el("td", { className: "mono" }, [a.replica ? el("span", null, [a.replica + " ", logLink(a.replica)]) : "—"]),
      el("td", { className: "num", text: "+" + fmtDuration(a.start) }),
      a.end === null ? el("td", { className: "num live", text: fmtDuration(sinceMs(a.startAt)), dataset: { liveSince: a.startAt } })
        : el("td", { className: "num", text: fmtDuration(a.end - a.start) }),
      el("td", null, [el("span", { className: "badge " + stateClass(a.state), text: a.state })]),
    ]));
    const histRows = hist.map((e) => el("tr", { dataset: { event: e.state || "" } }, [
      el("td", { text: fmtClock(e.at), title: e.at || "" }),
      el("td", { className: "num", text: "+" + fmtDuration(at(e.at)) }),
      el("td", null, [el("span", { className: "badge " + stateClass(e.state), text: e.state || "—" })]),
      el("td", { className: "mono", text: e.replica || "—" }),
      el("td", { className: "num", text: num(e.attempt) || "—" }),
      el("td", { className: "reason", text: e.reason || "" }),
    ]));
    const table = (cls, heads, rows, empty) => el("div", { className: "table-wrap" }, [el("table", { className: "data " + cls }, [
      el("thead", null, [el("tr", null, heads.map((h) => el("th", { text: h, attrs: { scope: "col" } })))]),
      el("tbody", null, rows.length ? rows : [el("tr", null, [el("td", { className: "empty", text: empty, attrs: { colspan: heads.length } })])]),
    ])]);
    $("panel-status").textContent = settled ? "" : "Running · updates every second";
    $("panel-body").replaceChildren(...[
      info,
      el("h3", { text: "Attempts" }),
      table("attempts", ["#", "Replica", "Sent at", "Took", "Last state"], attemptRows, "Not sent to a replica yet."),
      el("h3", { text: "State changes" }),
      table("history", ["Time", "After", "State", "Replica", "Attempt", "Reason"], histRows,
        "This gateway has not seen this task change since it started: the journal keeps only where it is now."),
      t.historyTruncated ? el("p", { className: "muted", text: "Some changes in the middle are left out." }) : null,
    ].filter(Boolean));
  }

  $("panel-close").addEventListener("click", closePanel);
  $("panel").addEventListener("close", () => {
    // The event comes after the fact: the panel may have been opened again since.
    if ($("panel").open) return;
    stopPanel();
    // Forget the view's address, unless a link to another view was followed meanwhile.
    if (location.hash && location.hash === panelHash) history.replaceState(null, "", location.pathname + location.search);
  });
  window.addEventListener("hashchange", route);

  // --- loop ---------------------------------------------------------------------------------
  let n = 0, running = false, timer = null;
  async function poll() {
    if (running) return;
    running = true;
    clearTimeout(timer);
    try {
      const wantAudit = n % AUDIT_EVERY === 0;
      n++;
      const asked = Date.now();
      const [ar, rr, tr, au, fr] = await Promise.all([
        get(api.agents), get(api.replicas), get(api.tasks).catch(() => ({ status: 0 })),
        wantAudit ? get(api.audit).catch(() => ({ status: 0 })) : Promise.resolve(null),
        get(api.fleet).catch(() => ({ status: 0 })),
      ]);
      for (const st of [ar.status, rr.status]) {
        if (st === 401 || st === 403) {
          needAuth(true, st);
          throw new Error(st === 401 ? "the gateway asks for an API key" : "this key may not read the status");
        }
      }
      if (ar.status !== 200 || rr.status !== 200) throw new Error("HTTP " + (ar.status !== 200 ? ar.status : rr.status));
      needAuth(false);
      const gwNow = tr && tr.status === 200 && tr.body ? parseTime(tr.body.now) : null;
      if (gwNow) clockSkew = gwNow.getTime() - (asked + Date.now()) / 2;
      const agents = Array.isArray(ar.body.agents) ? ar.body.agents : [];
      const replicas = Array.isArray(rr.body.replicas) ? rr.body.replicas : [];
      const sick = replicas.map((r) => unhealthy(r) !== null);
      if (changed("agents", [agents, replicas, sick])) renderAgents(agents, replicas);
      let tasks = null;
      if (changed("tasks", [tr.status, tr.body && tr.body.tasks])) tasks = renderTasks(tr); else tasks = tr.status === 200 && tr.body && Array.isArray(tr.body.tasks) ? tr.body.tasks : null;
      if (changed("summary", [agents, replicas, tasks, sick])) renderSummary(agents, replicas, tasks);
      if (au && changed("audit", au)) renderAudit(au);
      if (changed("fleet", fr)) renderFleet(fr);
      lastOK = Date.now();
      setConn(true, "Live · updated " + new Date(lastOK).toLocaleTimeString([], { hour12: false }));
    } catch (e) {
      const ago = lastOK ? " · last update " + fmtAgo(new Date(lastOK).toISOString()) : "";
      setConn(false, "Not updating: " + (e && e.message ? e.message : "gateway unreachable") + ago);
    } finally {
      running = false;
      if (!document.hidden) timer = setTimeout(poll, POLL_MS);
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  setInterval(tick, TICK_MS);
  poll();
  route();
})();
