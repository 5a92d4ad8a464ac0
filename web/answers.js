// An answer while it streams in: pieces of text arrive as fast as the server sends them, and
// the page shows them at most once per animation frame. Rendering Markdown again on every piece
// made the time to show an answer grow with the square of its length (a 15,000-character answer
// took about 25 s); once per frame, each render takes in all the pieces since the last one, so
// the total grows in proportion to the length (docs/web.md, "Streaming").

import { setMarkdown } from "./markdown.js";
import { el } from "./ui.js";

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
      setMarkdown(this.content, this.text);
    });
  }

  /** The answer is complete (or ended): draw its final text now, and stop streaming. */
  finish(text = this.text) {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.text = text;
    this.render();
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
