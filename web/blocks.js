// Where the finished part of a Markdown text being written ends: the blocks (paragraphs,
// lists, quotes, code) that what comes next can no longer change. A streaming answer draws them
// once and redraws only what follows (answers.js). No DOM here: it is plain text in, an index
// out, so the rule is tested on its own (tests/web/test_blocks.py).

const FENCE = /^ {0,3}(`{3,}|~{3,})/;
const CLOSING_FENCE = /^ {0,3}(`{3,}|~{3,})[ \t]*$/;
// A line that surely begins a block of its own after a blank line: not indented (a list item's
// continuation, or code), not a list item or a quote (which a blank line does not end).
const FRESH_BLOCK = /^(?![ \t]|[-*+][ \t]|\d{1,9}[.)][ \t]|>)\S/;

/**
 * Where the blocks of `text` that can no longer change end (at or after `from`, itself such an
 * end): after the last blank line outside a code fence that a complete line beginning a fresh
 * block follows. Only the text after `from` is read, so a frame's work stays with the answer's
 * unfinished end.
 */
export function closedBlocksEnd(text, from) {
  let end = from;
  let fence = null; // the open fence's marker, inside a fenced code block
  let start = from;
  for (let newline = text.indexOf("\n", from); newline >= 0; newline = text.indexOf("\n", start)) {
    const line = text.slice(start, newline);
    if (fence) {
      // Closed by a bare fence of the same character, at least as long.
      const closing = CLOSING_FENCE.exec(line)?.[1];
      if (closing && closing[0] === fence[0] && closing.length >= fence.length) fence = null;
    } else if (FENCE.test(line)) {
      fence = FENCE.exec(line)[1];
    } else if (!line.trim()) {
      const nextEnd = text.indexOf("\n", newline + 1);
      if (nextEnd >= 0 && FRESH_BLOCK.test(text.slice(newline + 1, nextEnd))) end = newline + 1;
    }
    start = newline + 1;
  }
  return end;
}
