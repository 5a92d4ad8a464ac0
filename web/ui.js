// DOM helpers and renderers. Text from users and the server only ever goes in via textContent
// (never innerHTML), so nothing they write can become markup or script; the one exception is
// the model's Markdown, which goes through the sanitizer in markdown.js.

import { setMarkdown } from "./markdown.js";
import { titleText } from "./plaintext.js";
import { spentSentence } from "./usage.js";

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

/** One message of the conversation, as a list item of the message log. The model's answers
 * are Markdown (rendered through the sanitizer); what the user typed stays plain text. */
export function messageItem({ id, role, content, timestamp }) {
  const who = role === "user" ? "You" : "Parley";
  // dir="auto": each message takes the direction of its own first letters (Arabic or Hebrew
  // right to left, whatever the page's).
  const body = el("div", {
    className: role === "user" ? "content" : "content markdown",
    dir: "auto",
  });
  if (role === "user") body.textContent = content ?? "";
  else setMarkdown(body, content ?? "");
  return el(
    "li",
    {
      className: `message ${role === "user" ? "from-user" : "from-assistant"}`,
      "data-message-id": id ?? null,
    },
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

/**
 * One conversation in the side list: a link that opens it, and buttons that rename and delete
 * it. F2 on the link starts renaming too.
 */
export function sessionItem(summary, { current, onDelete, onRename, onPin }) {
  const title = titleText(summary.title);
  const link = el(
    "a",
    {
      className: "session-link",
      href: `#s=${encodeURIComponent(summary.sessionId)}`,
      title, // the whole title, when the list cuts it short
      "aria-current": current ? "page" : null,
      onkeydown: (event) => {
        if (event.key === "F2") {
          event.preventDefault();
          onRename(summary);
        }
      },
    },
    el("span", { className: "session-title", dir: "auto" }, title),
    el(
      "span",
      { className: "session-sub" },
      timeElement(summary.updatedAt),
      summary.messageCount != null
        ? el("span", {}, ` · ${summary.messageCount} message${summary.messageCount === 1 ? "" : "s"}`)
        : null,
    ),
  );
  const rename = el(
    "button",
    {
      type: "button",
      className: "icon-button session-rename",
      "aria-label": `Rename “${title}”`,
      title: "Rename",
      onclick: () => onRename(summary),
    },
    icon("pencil"),
  );
  const pinned = Boolean(summary.pinned);
  const pin = onPin
    ? el(
        "button",
        {
          type: "button",
          className: "icon-button session-pin",
          "aria-pressed": String(pinned),
          "aria-label": `${pinned ? "Unpin" : "Pin"} “${title}”`,
          title: pinned ? "Unpin" : "Pin to the top",
          onclick: () => onPin(summary, !pinned),
        },
        icon("pin"),
      )
    : null;
  const remove = el(
    "button",
    {
      type: "button",
      className: "icon-button session-delete",
      "aria-label": `Delete “${title}”`,
      title: "Delete",
      onclick: () => onDelete(summary),
    },
    icon("trash"),
  );
  return el(
    "li",
    { className: pinned ? "session pinned" : "session", "data-session-id": summary.sessionId },
    link,
    pin,
    rename,
    remove,
  );
}

let uniqueIds = 0;
/** An id for an element made here (a label's `for`, an `aria-describedby`). */
export function uniqueId(prefix) {
  uniqueIds += 1;
  return `${prefix}-${uniqueIds}`;
}

/**
 * An inline title editor. Enter (or the tick) calls `onSave(title)`, which resolves when saved
 * or rejects with an Error whose message is shown under the field; Escape (or the cross) calls
 * `onCancel()`. Returns the form; the caller puts it in place and calls `form.focusInput()`.
 */
export function renameForm(title, { onSave, onCancel }) {
  const inputId = uniqueId("rename");
  const errorId = `${inputId}-error`;
  const input = el("input", {
    id: inputId,
    className: "rename-input",
    type: "text",
    dir: "auto",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": errorId,
  });
  input.value = title;
  const error = el("p", { id: errorId, className: "field-error rename-error", "aria-live": "polite" });
  let busy = false;
  const form = el(
    "form",
    { className: "rename-form", novalidate: true },
    el("label", { for: inputId, className: "visually-hidden" }, "Title"),
    input,
    el(
      "button",
      { type: "submit", className: "icon-button", "aria-label": "Save title", title: "Save" },
      icon("check"),
    ),
    el(
      "button",
      {
        type: "button",
        className: "icon-button",
        "aria-label": "Cancel renaming",
        title: "Cancel",
        onclick: () => onCancel(),
      },
      icon("close"),
    ),
    error,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    busy = true;
    form.setAttribute("aria-busy", "true");
    try {
      await onSave(input.value);
    } catch (failure) {
      error.textContent = failure.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      busy = false;
      form.removeAttribute("aria-busy");
    }
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      // Only the editor closes (not the phone-width panel around it).
      event.preventDefault();
      event.stopPropagation();
      onCancel();
    }
  });
  form.focusInput = () => {
    input.focus();
    input.select();
  };
  return form;
}

/**
 * `text` with each whole, case-insensitive occurrence of a word of `phrase` in a <mark>: built
 * from text nodes, so nothing in either can become markup.
 */
export function highlighted(text, phrase) {
  const fragment = document.createDocumentFragment();
  // The words a search matches by (docs/design.md, "Search, export, erasure"): runs of letters
  // and digits, each marked where it stands whole, in any order.
  const words = [...new Set(phrase.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [])];
  if (!words.length) {
    fragment.append(text);
    return fragment;
  }
  const pattern = new RegExp(
    `(?<![\\p{L}\\p{N}])(?:${words.join("|")})(?![\\p{L}\\p{N}])`,
    "giu",
  );
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    if (match.index > last) fragment.append(text.slice(last, match.index));
    fragment.append(el("mark", {}, match[0]));
    last = match.index + match[0].length;
  }
  if (last < text.length) fragment.append(text.slice(last));
  return fragment;
}

const ICONS = {
  pin: "M16 3v2h-1v6l2 3v2h-4.2v5l-.8 1-.8-1v-5H7v-2l2-3V5H8V3h8z",
  trash: "M9 3h6l1 2h4v2H4V5h4l1-2zm-3 6h12l-1 12H7L6 9zm4 2v8h2v-8h-2zm4 0v8h2v-8h-2z",
  pencil:
    "M3 17.25V21h3.75L17.81 9.94l-3.75-3.75L3 17.25zM20.71 7.04a1 1 0 0 0 0-1.41l-2.34-2.34" +
    "a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z",
  check: "M9 16.17 4.83 12l-1.42 1.41L9 19 21 7l-1.41-1.41z",
  close:
    "M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 " +
    "17.59 13.41 12z",
  up:
    "M1 21h4V9H1v12zm22-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 " +
    "7.59 7.59C7.22 7.95 7 8.45 7 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-" +
    ".23.14-.47.14-.73v-2z",
  down:
    "M15 3H6c-.83 0-1.54.5-1.84 1.22l-3.02 7.05c-.09.23-.14.47-.14.73v2c0 1.1.9 2 2 2h6.31l-.95 " +
    "4.57-.03.32c0 .41.17.79.44 1.06L9.83 23l6.59-6.59c.36-.36.58-.86.58-1.41V5c0-1.1-.9-2-2-2z" +
    "m4 0v12h4V3h-4z",
};

/** A decorative icon: the button around it carries the name. */
export function icon(name) {
  // Built with DOM calls, like everything else here, rather than parsed from a string.
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
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
    case "forbidden":
      // The address is bound to another account (docs/security.md, "Accounts"): only an
      // operator can change that, so the page says whom to ask.
      return "This email address belongs to another account. Ask your support team to move or release it.";
    case "not_found":
      return "This conversation no longer exists; it may have been deleted. Start a new chat.";
    case "payload_too_large":
      return "Your message is too long to send. Shorten it and try again.";
    case "rate_limited":
      return `Too many requests right now. Wait a little and try again ${later}.`;
    case "quota_exceeded": {
      // The server's message names the budget ("daily"/"monthly"); Retry-After, its reset.
      if (!error.retryAfterSeconds) return error.message;
      const period = /monthly/i.test(error.message) ? "month" : "day";
      const reset = new Date(Date.now() + error.retryAfterSeconds * 1000).toISOString();
      return spentSentence(period, reset);
    }
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
