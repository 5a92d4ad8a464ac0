// An answer while it streams in: pieces of text arrive as fast as the server sends them, and
// the page shows them at most once per animation frame. Rendering Markdown again on every piece
// made the time to show an answer grow with the square of its length (a 15,000-character answer
// took about 25 s); once per frame, each render takes in all the pieces since the last one. And
// each frame renders only the answer's unfinished end: blocks that a blank line has closed are
// drawn once and kept, so a frame costs about the same early and late in a long answer. When
// the answer ends it is rendered whole, once, exactly as a stored answer is (docs/web.md,
// "Answers as they stream").

import { closedBlocksEnd } from "./blocks.js";
import { renderMarkdown, setMarkdown } from "./markdown.js";
import { el, setMessageTime } from "./ui.js";

/**
 * The answer shown in `item` (an assistant message item) while it streams. `keepInView(render)`
 * wraps each render (the caller keeps the log scrolled to its end if it was there); `append`,
 * `replace` and `finish` are all it takes.
 */
export class LiveAnswer {
  constructor(item, { keepInView = (render) => render() } = {}) {
    this.item = item;
    this.content = item.querySelector(".content");
    this.keepInView = keepInView;
    this.text = "";
    this.frame = 0;
    this.shown = null; // the text last rendered
    this.closedUpTo = 0; // the text before this is drawn for good, as closed blocks
    // The nodes drawn from the text after it, redrawn each frame: at first whatever the item
    // shows (a followed answer's stored text).
    this.tail = [...this.content.childNodes];
    item.classList.add("streaming");
    item.setAttribute("aria-busy", "true"); // read out once complete, not word by word
    showWaiting(item, true);
  }

  /** More of the answer. */
  append(piece) {
    this.text += piece;
    this.schedule();
  }

  /** The whole answer so far (a resumed stream starts from the stored text). */
  replace(text) {
    if (!text.startsWith(this.text.slice(0, this.closedUpTo))) this.restart();
    this.text = text;
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  render() {
    this.frame = 0;
    // Not on screen (another conversation is open): nothing to draw; finish() draws it whole.
    if (!this.item.isConnected || this.text === this.shown) return;
    this.shown = this.text;
    this.keepInView(() => {
      if (this.text) showWaiting(this.item, false);
      const closed = closedBlocksEnd(this.text, this.closedUpTo);
      if (closed > this.closedUpTo) {
        this.removeTail();
        this.content.append(renderMarkdown(this.text.slice(this.closedUpTo, closed)));
        this.closedUpTo = closed;
      }
      this.removeTail();
      const tail = renderMarkdown(this.text.slice(this.closedUpTo));
      this.tail = [...tail.childNodes];
      this.content.append(tail);
    });
  }

  removeTail() {
    for (const node of this.tail) node.remove();
    this.tail = [];
  }

  restart() {
    this.content.replaceChildren();
    this.closedUpTo = 0;
    this.tail = [];
    this.shown = null;
  }

  /** The answer is complete (or ended): draw its final text now, whole, and stop streaming. */
  finish(text = this.text) {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.text = text;
    if (this.item.isConnected) {
      this.keepInView(() => {
        if (this.text) showWaiting(this.item, false);
        setMarkdown(this.content, this.text);
      });
    } else {
      // Drawn whole when its conversation is opened again (from the stored answer).
      setMarkdown(this.content, this.text);
    }
    this.shown = this.text;
    this.end();
  }

  /** Stop without drawing (the answer is removed). */
  end() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    showWaiting(this.item, false);
    this.item.classList.remove("streaming");
    this.item.removeAttribute("aria-busy");
  }
}

/** "Thinking" dots in an answer before its first word, so a slow start never looks dead. */
function showWaiting(item, waiting) {
  const existing = item.querySelector(".waiting");
  if (!waiting) {
    existing?.remove();
    return;
  }
  if (existing) return;
  const dots = el(
    "span",
    { className: "waiting-dots", "aria-hidden": "true" },
    el("span", {}),
    el("span", {}),
    el("span", {}),
  );
  item.querySelector(".bubble").prepend(
    el("p", { className: "waiting" }, dots, el("span", { className: "waiting-text" }, "Thinking…")),
  );
}

const BADGES = {
  stopped: { text: "Stopped", title: "You stopped this answer: the text so far is kept." },
  interrupted: {
    text: "Interrupted",
    title: "This answer broke off before it was complete: the text so far is kept.",
  },
};

/** The answer's status beside its name: "Stopped" or "Interrupted"; nothing when complete. */
export function setStatusBadge(item, status) {
  item.querySelector(".status-badge")?.remove();
  const badge = BADGES[status];
  if (!badge) return;
  item
    .querySelector(".meta")
    .append(el("span", { className: `status-badge status-${status}`, title: badge.title }, badge.text));
}

/**
 * What can be done with one message: "Branch from here" on any; on an answer, "Regenerate"
 * (shown on the conversation's last answer only: the stylesheet hides the others, as the API
 * only regenerates the last) and, once it has several versions, "‹ 2/2 ›" to read the earlier
 * ones. `loadVersions()` resolves to the API's versions, oldest first, the current one last.
 */
export function messageActions(message, { onBranch, onRegenerate, loadVersions }) {
  const bar = el("div", { className: "message-actions" });
  if (message.role === "assistant" && message.versions > 1) {
    bar.append(versionPager(message, loadVersions));
  }
  if (onRegenerate) {
    bar.append(
      el(
        "button",
        {
          type: "button",
          className: "link-button regenerate",
          title: "Write a new answer to the last question (this one is kept as a version)",
          onclick: () => onRegenerate(),
        },
        "Regenerate",
      ),
    );
  }
  const branch = el(
    "button",
    {
      type: "button",
      className: "link-button branch",
      title: "A new conversation with the messages up to this one",
      onclick: () => {
        if (branch.getAttribute("aria-disabled") !== "true") onBranch(branch);
      },
    },
    "Branch from here",
  );
  bar.append(branch);
  return bar;
}

/** "‹ 2/2 ›": earlier versions of an answer, read in place; the last is the current one. */
function versionPager(message, loadVersions) {
  const total = message.versions;
  let index = total - 1; // the current version
  let versions = null; // loaded on first use
  const label = el("span", { className: "version-label", "aria-live": "polite" });
  const previous = el(
    "button",
    { type: "button", className: "icon-button version-previous", "aria-label": "Previous version" },
    "‹",
  );
  const next = el(
    "button",
    { type: "button", className: "icon-button version-next", "aria-label": "Next version" },
    "›",
  );
  const error = el("span", { className: "field-error version-error", role: "alert" });
  const pager = el(
    "span",
    { className: "versions", role: "group", "aria-label": "Versions of this answer" },
    previous,
    label,
    next,
    error,
  );

  function update() {
    label.textContent = `${index + 1}/${total}`;
    label.setAttribute("aria-label", `Version ${index + 1} of ${total}`);
    previous.disabled = index === 0;
    next.disabled = index === total - 1;
  }

  async function go(step) {
    const target = index + step;
    if (target < 0 || target >= total) return;
    error.textContent = "";
    try {
      versions ??= await loadVersions();
    } catch {
      error.textContent = "Earlier versions could not be loaded. Try again.";
      return;
    }
    const version = versions[Math.min(target, versions.length - 1)];
    if (!version) return;
    index = target;
    const item = pager.closest(".message");
    setMarkdown(item.querySelector(".content"), version.content);
    setMessageTime(item, version.timestamp);
    // Feedback and Regenerate belong to the current version: hidden while an earlier one shows.
    item.classList.toggle("earlier-version", index !== total - 1);
    update();
  }

  previous.addEventListener("click", () => go(-1));
  next.addEventListener("click", () => go(1));
  update();
  return pager;
}
