// Markdown for the model's answers. `marked` turns the text into HTML, DOMPurify keeps only the
// elements and attributes listed below, and the result arrives as DOM nodes: this is the one
// place in the client where anything is parsed as HTML. User messages never come here.
//
// Both libraries are vendored from node_modules into web/vendor/ by `make vendor` (docs/web.md).

import { Marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.js";

import { el } from "./dom.js";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const markdown = new Marked({
  gfm: true,
  breaks: true, // a line break in a chat answer is meant as one
  renderer: {
    // Raw HTML in an answer is shown as the text it is, never used as markup.
    html({ text, block }) {
      const escaped = escapeHtml(text);
      return block ? `<p>${escaped.replace(/\n/g, "<br>")}</p>\n` : escaped;
    },
    // The page's h1 is the conversation's title: an answer's headings rank below it.
    heading({ tokens, depth }) {
      const level = Math.min(depth + 1, 6);
      return `<h${level}>${this.parser.parseInline(tokens)}</h${level}>\n`;
    },
    // An image would load from wherever the answer points (a tracker, or a URL carrying data
    // out): it becomes a link that the user may choose to follow.
    image({ href, text, tokens }) {
      const alt = tokens ? this.parser.parseInline(tokens, this.parser.textRenderer) : text;
      return `<a href="${escapeHtml(href ?? "")}">${escapeHtml(alt || href || "image")}</a>`;
    },
    // A task list's box, as text rather than a form control.
    checkbox({ checked }) {
      return checked ? "☑ " : "☐ ";
    },
  },
});

const SANITIZE = {
  ALLOWED_TAGS: [
    "a", "blockquote", "br", "code", "del", "em", "h2", "h3", "h4", "h5", "h6", "hr", "li",
    "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ],
  ALLOWED_ATTR: ["href", "title", "class", "start", "align"],
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  // Web and mail links only: no javascript:, data:, relative or other schemes.
  ALLOWED_URI_REGEXP: /^(?:https?:|mailto:)/i,
  RETURN_DOM_FRAGMENT: true,
};

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  // A class only names a code block's language; never one of the page's own classes.
  const className = node.getAttribute?.("class");
  if (typeof className === "string" && !/^language-[\w.+#-]{1,40}$/.test(className)) {
    node.removeAttribute("class");
  }
  if (node.nodeName === "A" && node.hasAttribute("href")) {
    // Opens apart from this page, which it can neither see nor navigate.
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer nofollow");
  }
});

/** The Markdown `text` as safe DOM nodes. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(markdown.parse(text ?? ""), SANITIZE);
  // The parser's newlines between blocks are not content.
  for (const node of [...fragment.childNodes]) {
    if (node.nodeType === Node.TEXT_NODE && !node.textContent.trim()) node.remove();
  }
  for (const link of fragment.querySelectorAll("a[href]")) {
    link.append(el("span", { className: "visually-hidden" }, " (opens in a new tab)"));
  }
  for (const table of fragment.querySelectorAll("table")) {
    // Wide tables scroll on their own, not the page; the keyboard can scroll them too.
    const wrap = el("div", {
      className: "table-scroll",
      tabindex: "0",
      role: "region",
      "aria-label": "Table",
    });
    table.replaceWith(wrap);
    wrap.append(table);
  }
  for (const pre of fragment.querySelectorAll("pre")) addCopyButton(pre);
  return fragment;
}

/** Replace `container`'s content with the Markdown `text`. */
export function setMarkdown(container, text) {
  container.replaceChildren(renderMarkdown(text));
}

/** Put a code block in a frame with its language and a Copy button. */
function addCopyButton(pre) {
  const code = pre.querySelector("code") ?? pre;
  const language = /^language-(.+)$/.exec(code.getAttribute("class") ?? "")?.[1] ?? "";
  pre.setAttribute("tabindex", "0"); // scrollable sideways: reachable by keyboard
  const status = el("span", { className: "copy-status", role: "status" });
  const button = el(
    "button",
    {
      type: "button",
      className: "copy-code",
      "aria-label": language ? `Copy ${language} code` : "Copy code",
    },
    "Copy",
  );
  button.addEventListener("click", () => copy(code, button, status));
  const frame = el("div", { className: "code-block" });
  pre.replaceWith(frame);
  frame.append(
    el(
      "div",
      { className: "code-bar" },
      el("span", { className: "code-lang" }, language),
      status,
      button,
    ),
    pre,
  );
}

async function copy(code, button, status) {
  const text = code.textContent.replace(/\n$/, "");
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // No clipboard access (an insecure context, or refused): select the code for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(code);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }
  button.textContent = copied ? "Copied" : "Copy";
  status.textContent = copied
    ? "Code copied."
    : "Could not copy: the code is selected, press Ctrl+C.";
  clearTimeout(button.resetTimer);
  button.resetTimer = setTimeout(() => {
    button.textContent = "Copy";
    status.textContent = "";
  }, 2000);
}
