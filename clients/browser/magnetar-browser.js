// Magnetar's HTTP/JSON door from a browser: send a view of the page's item, then show the
// recommendations for the user with that item as context. Plain fetch, no dependency.
// Failures show the gateway's machine-readable reason (ErrorInfo.reason), e.g.
// ORIGIN_NOT_ALLOWED when this page's origin is not one of the tenant's allowed origins.
"use strict";

const settings = new URLSearchParams(window.location.search);
const door = (settings.get("door") || window.location.origin).replace(/\/$/, "");

class MagnetarError extends Error {
  constructor(error) {
    super(error.message);
    const info = (error.details || []).find((d) => d["@type"].endsWith("ErrorInfo"));
    this.status = error.status; // the gRPC code's name, e.g. PERMISSION_DENIED
    this.reason = info ? info.reason : error.status;
  }
}

// POST one request message in proto3 JSON; the answer's message, or a MagnetarError.
async function call(path, key, body) {
  const reply = await fetch(door + path, {
    method: "POST",
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await reply.json();
  if (!reply.ok) throw new MagnetarError(answer.error);
  return answer;
}

function eventId() {
  // getRandomValues works on plain http pages too (randomUUID needs a secure context).
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function sendView(user, item) {
  const view = {
    eventId: eventId(),
    userId: user,
    type: "EVENT_TYPE_VIEW",
    itemId: item,
    occurredAt: new Date().toISOString(),
  };
  const reply = await call("/v1/events:ingest", settings.get("ingestKey"), { events: [view] });
  if (reply.rejectedEvents) throw new Error(`view rejected: ${reply.rejectedEvents[0].message}`);
}

async function recommend(user, item) {
  const request = { userId: user, k: 5, contextItemIds: item ? [item] : [] };
  const reply = await call("/v1/recommendations:recommend", settings.get("readKey"), request);
  return reply.items || [];
}

function show(items) {
  const list = document.getElementById("recommendations");
  list.replaceChildren(
    ...items.map((item) => {
      const entry = document.createElement("li");
      entry.dataset.item = item.itemId;
      entry.textContent = item.reason && item.reason.text
        ? `${item.itemId} (${item.reason.text})`
        : item.itemId;
      return entry;
    }),
  );
}

function state(name, text) {
  const status = document.getElementById("status");
  status.dataset.state = name;
  status.textContent = text;
}

async function main() {
  const user = settings.get("user") || "anonymous";
  const item = settings.get("item");
  try {
    if (item) await sendView(user, item);
    const items = await recommend(user, item);
    show(items);
    state("done", `${items.length} recommendation(s)`);
  } catch (error) {
    state("error", error.reason ? `${error.reason}: ${error.message}` : String(error));
  }
}

main();
