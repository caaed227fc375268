// The web device: the protocol of services/stc/PROTOCOL.md in a browser page served by STC.
// Credentials live in localStorage per app key; each msg id is shown once and acknowledged.
"use strict";

const appKey = new URLSearchParams(location.search).get("app_key") || "";
const storeKey = "pushgrid.device." + appKey;
const seenKey = "pushgrid.seen." + appKey;
const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/v1/device";
const ACKS_PER_FRAME = 100;
// Msg ids are 63-bit: a JavaScript Number keeps only 53 bits, so ids travel as digit strings here,
// taken from the frame's text and written back into the ack's text as they came.
const MSG_ID = /"msg_id"\s*:\s*(\d+)/;

let attempt = 0;
let seen = JSON.parse(localStorage.getItem(seenKey) || "[]");
const seenSet = new Set(seen);

function $(id) { return document.getElementById(id); }
function status(text) { $("status").textContent = text; }
function credentials() { return JSON.parse(localStorage.getItem(storeKey) || "null"); }

function later(fn, code) {
  // 1012: STC restarting, at once; anything else: 1 s doubling to 60 s, with jitter
  const delay = code === 1012 ? 0 : Math.min(60000, 1000 * 2 ** attempt++) * (0.5 + Math.random() / 2);
  setTimeout(fn, delay);
}

function register() {
  status("registering");
  const ws = new WebSocket(wsUrl);
  ws.onopen = () => ws.send(JSON.stringify({op: "register", app_key: appKey, platform: "web"}));
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    if (f.op === "registered") {
      localStorage.setItem(storeKey, JSON.stringify({registration_id: f.registration_id, device_token: f.device_token}));
    }
  };
  ws.onclose = (ev) => {
    if (credentials()) { connect(); }
    else { status("registration failed (" + ev.code + " " + ev.reason + ")"); if (ev.code !== 4001) later(register, ev.code); }
  };
}

function connect() {
  const creds = credentials();
  $("rid").textContent = creds.registration_id;
  status("connecting");
  const ws = new WebSocket(wsUrl);
  let pinger = null, acks = [], ackTimer = null;

  function flushAcks() {
    ackTimer = null;
    while (acks.length && ws.readyState === WebSocket.OPEN) {
      const batch = acks.splice(0, ACKS_PER_FRAME);
      ws.send('{"op":"ack","msg_ids":[' + batch.join(",") + "]}");
      for (const id of batch) {
        const li = document.querySelector('#messages li[data-msg-id="' + id + '"]');
        if (li) { li.classList.add("acked"); li.dataset.acked = "1"; }
      }
    }
  }

  function show(f, key) {
    if (!seenSet.has(key)) {
      seenSet.add(key); seen.push(key);
      if (seen.length > 500) seenSet.delete(seen.shift());
      localStorage.setItem(seenKey, JSON.stringify(seen));
      const li = document.createElement("li");
      li.dataset.msgId = key;
      const n = f.notification || {}, m = f.message || {};
      li.textContent = [n.title, n.alert, m.title, m.content].filter(Boolean).join(" — ") || "(empty)";
      if (f.replay) { const s = document.createElement("span"); s.className = "replay"; s.textContent = " (replay)"; li.append(s); }
      $("messages").prepend(li);
    }
    acks.push(key);  // duplicates are acknowledged too, or STC would replay them again
    if (acks.length >= ACKS_PER_FRAME) flushAcks();
    else if (!ackTimer) ackTimer = setTimeout(flushAcks, 50);
  }

  ws.onopen = () => ws.send(JSON.stringify({op: "hello", app_key: appKey, registration_id: creds.registration_id,
                                            device_token: creds.device_token, sdk: "pushgrid-web/1"}));
  ws.onmessage = (ev) => {
    const f = JSON.parse(ev.data);
    const id = MSG_ID.exec(ev.data);
    if (f.op === "welcome") {
      attempt = 0;
      status("connected");
      $("stc").textContent = f.stc;
      pinger = setInterval(() => ws.send('{"op":"ping"}'), f.heartbeat * 1000);
    } else if (f.op === "msg" && id) {
      show(f, id[1]);
    }
  };
  ws.onclose = (ev) => {
    clearInterval(pinger);
    status("disconnected (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")");
    if (ev.code === 4004) return;  // a newer connection of this device took over
    if (ev.code === 4001) { localStorage.removeItem(storeKey); later(register, ev.code); return; }
    later(connect, ev.code);
  };
}

$("app").textContent = appKey;
if (!/^[0-9a-f]{24}$/.test(appKey)) status("no app key: open this page as /?app_key=<24 hex>");
else if (credentials()) connect();
else register();
