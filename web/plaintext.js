// Markdown as the plain text it reads as, for places that show one line of it: conversation
// titles (the first message, or what the model wrote) and search snippets. "# **Plan** for
// `v2`" shows as "Plan for v2". Only text comes out (never HTML): callers put it in the page
// with textContent, so nothing here can become markup whatever the input.

import { Lexer } from "./vendor/marked.esm.js";

const ENTITIES = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0" };

/** A conversation's title as shown: its plain text, else as stored, else "Untitled". */
export function titleText(title) {
  return plainText(title) || (title ?? "").trim() || "Untitled";
}

/** `text` (Markdown) without its syntax, on one line. */
export function plainText(text) {
  if (!text) return "";
  let tokens;
  try {
    tokens = Lexer.lex(String(text), { gfm: true });
  } catch {
    return collapse(String(text));
  }
  const parts = [];
  walk(tokens, parts);
  return collapse(parts.join(""));
}

function walk(tokens, parts) {
  for (const token of tokens ?? []) {
    switch (token.type) {
      case "space":
      case "hr":
      case "def":
        parts.push(" ");
        break;
      case "code":
      case "codespan":
        parts.push(token.text);
        break;
      case "escape":
        parts.push(token.text);
        break;
      case "br":
        parts.push(" ");
        break;
      case "html":
        // Raw HTML is shown as the text it is (as in answers), never as markup.
        parts.push(token.text);
        break;
      case "image":
        parts.push(token.text);
        break;
      case "text":
        if (token.tokens) walk(token.tokens, parts);
        else parts.push(leftovers(decode(token.text)));
        break;
      case "list":
        // "1. Intro" keeps its number: a title that begins with one meant it.
        token.items.forEach((item, index) => {
          if (token.ordered) parts.push(`${(Number(token.start) || 1) + index}. `);
          walk(item.tokens, parts);
          parts.push(" ");
        });
        break;
      case "table":
        for (const row of [token.header, ...token.rows]) {
          for (const cell of row) {
            walk(cell.tokens, parts);
            parts.push(" ");
          }
        }
        break;
      default:
        // Headings, paragraphs, quotes, emphasis, links...: their text.
        if (token.tokens) walk(token.tokens, parts);
        else if (typeof token.text === "string") parts.push(decode(token.text));
        if (isBlock(token)) parts.push(" ");
    }
  }
}

const BLOCKS = new Set(["heading", "paragraph", "blockquote", "list_item"]);
function isBlock(token) {
  return BLOCKS.has(token.type);
}

/** A snippet may cut a Markdown pair in half ("…said **yes"): the half left is not text. */
function leftovers(text) {
  return text.replace(/\*\*|__|~~|`+/g, "");
}

function decode(text) {
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (whole, name) => {
    if (name[0] === "#") {
      const hex = name[1] === "x" || name[1] === "X";
      const code = hex ? parseInt(name.slice(2), 16) : Number(name.slice(1));
      return code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole;
    }
    return ENTITIES[name.toLowerCase()] ?? whole;
  });
}

function collapse(text) {
  return text.replace(/\s+/g, " ").trim();
}
