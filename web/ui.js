// DOM helpers and renderers. Text from users and the model only ever goes in via textContent
// (never innerHTML), so nothing they write can become markup or script.

/** Create an element: `attrs` are attributes (or `on*` listeners); children are nodes or text. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "className") {
      node.className = value;
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/** A short local time: the hour today, the day otherwise. */
export function shortTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? timeFormat.format(date)
    : dateFormat.format(date);
}

function timeElement(iso) {
  return iso ? el("time", { datetime: iso, title: new Date(iso).toLocaleString() }, shortTime(iso)) : null;
}

/** One message of the conversation, as a list item of the message log. */
export function messageItem({ role, content, timestamp }) {
  const who = role === "user" ? "You" : "Parley";
  const body = el("div", { className: "content" }, content ?? "");
  return el(
    "li",
    { className: `message ${role === "user" ? "from-user" : "from-assistant"}` },
    el("div", { className: "meta" }, el("span", { className: "who" }, who), timeElement(timestamp)),
    el("div", { className: "bubble" }, body),
  );
}

/** Fill in a message item's time once the server has given it. */
export function setMessageTime(item, iso) {
  const meta = item.querySelector(".meta");
  meta.querySelector("time")?.remove();
  const time = timeElement(iso);
  if (time) meta.append(time);
}

/** One conversation in the side list: a link that opens it and a button that deletes it. */
export function sessionItem(summary, { current, onDelete }) {
  const title = summary.title || "Untitled";
  const link = el(
    "a",
    {
      className: "session-link",
      href: `#s=${encodeURIComponent(summary.sessionId)}`,
      "aria-current": current ? "page" : null,
    },
    el("span", { className: "session-title" }, title),
    el(
      "span",
      { className: "session-sub" },
      timeElement(summary.updatedAt),
      summary.messageCount != null
        ? el("span", {}, ` · ${summary.messageCount} message${summary.messageCount === 1 ? "" : "s"}`)
        : null,
    ),
  );
  const remove = el(
    "button",
    {
      type: "button",
      className: "icon-button session-delete",
      "aria-label": `Delete “${title}”`,
      title: "Delete",
      onclick: () => onDelete(summary),
    },
    trashIcon(),
  );
  return el("li", { className: "session", "data-session-id": summary.sessionId }, link, remove);
}

function trashIcon() {
  // Built with DOM calls, like everything else here, rather than parsed from a string.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute(
    "d",
    "M9 3h6l1 2h4v2H4V5h4l1-2zm-3 6h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z",
  );
  svg.append(path);
  return svg;
}

function seconds(n) {
  return `${n} second${n === 1 ? "" : "s"}`;
}

/** A clear, human sentence for an ApiError, chosen by its `code` (openapi.yaml's error codes). */
export function describeError(error) {
  const later = error.retryAfterSeconds ? `in ${seconds(error.retryAfterSeconds)}` : "in a moment";
  switch (error.code) {
    case "unauthenticated":
      return "You are signed out, or your sign-in has expired. Sign in again to continue.";
    case "not_found":
      return "This conversation no longer exists; it may have been deleted. Start a new chat.";
    case "payload_too_large":
      return "Your message is too long to send. Shorten it and try again.";
    case "rate_limited":
      return `Too many requests right now. Wait a little and try again ${later}.`;
    case "model_error":
      return "The model could not answer just now. Your message is saved: send it again to retry.";
    case "storage_unavailable":
      return `Conversation storage is busy or unreachable. Try again ${later}.`;
    case "network_error":
      return "Parley could not be reached. Check your connection and try again.";
    case "invalid_request":
    case "unsupported_media_type":
      // The API's messages are written to be shown to anybody (docs/http.md, "Errors and
      // Retry-After").
      return `That request was not accepted: ${error.message}`;
    case "conflict":
      return "Another change to this conversation happened at the same time. Try again.";
    default:
      return "Something went wrong on our side. Try again.";
  }
}
