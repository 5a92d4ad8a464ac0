// Search over the caller's conversations (GET /api/search): a box above the list that searches
// gently (from 3 characters, 400 ms after the last key or at once on Enter, one request in
// flight per box, a stale one cancelled), results with the matching words marked (as text
// nodes, never HTML), and "More results".

import { ApiError } from "./api.js";
import { plainText, titleText } from "./plaintext.js";
import { describeError, el, highlighted, shortTime } from "./ui.js";

// Fewer than 3 characters finds too much to be worth a request; 400 ms is a pause, not a
// keystroke gap, so a word typed at any usual speed sends one search, not one per key.
export const SEARCH_MIN_CHARS = 3;
const DEBOUNCE_MS = 400;
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);

/**
 * Wire up the search box. `isArchived()` says which list is shown (search follows it);
 * `onActiveChange(active)` is told when results replace the list, or the list comes back;
 * `onChoose(href)` opens a result (a `#s=<id>&m=<messageId>` link).
 * Returns `{refresh, clear}`: search again (the archived view changed), or leave search.
 */
export function setupSearch({ api, isArchived, onActiveChange, onChoose }) {
  const input = $("search-input");
  const panel = $("search-panel");
  const results = $("search-results");
  const more = $("search-more");
  const status = $("search-status");
  const errorBox = $("search-error");

  let timer = null;
  let controller = null; // the request in flight (at most one), to cancel when stale
  let pending = ""; // its phrase (a first page), so Enter does not ask for it twice
  let query = ""; // the phrase the results shown are for
  let token = null;
  let found = 0;
  let active = false;

  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (q.length < SEARCH_MIN_CHARS) {
      stop();
      return;
    }
    timer = setTimeout(() => run(q), DEBOUNCE_MS);
  });

  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    const q = input.value.trim();
    if (q.length >= SEARCH_MIN_CHARS && !(controller && pending === q)) run(q);
  });

  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && input.value) {
      // Escape empties the box and brings the list back (and closes nothing else).
      event.preventDefault();
      event.stopPropagation();
      clear();
    }
  });

  more.addEventListener("click", () => run(query, { more: true }));

  function setActive(next) {
    if (active === next) return;
    active = next;
    panel.hidden = !next;
    onActiveChange(next);
  }

  function stop() {
    controller?.abort();
    controller = null;
    pending = "";
    query = "";
    token = null;
    results.replaceChildren();
    setError("");
    setActive(false);
  }

  function clear() {
    clearTimeout(timer);
    input.value = "";
    stop();
  }

  async function run(q, { more: next = false } = {}) {
    controller?.abort();
    const mine = new AbortController();
    controller = mine;
    pending = next ? "" : q;
    setActive(true);
    setError("");
    if (!next) {
      token = null;
      found = 0;
      results.replaceChildren();
    }
    query = q;
    results.setAttribute("aria-busy", "true");
    more.disabled = true;
    status.textContent = "Searching…";
    try {
      const page = await api.search({
        q,
        limit: PAGE_SIZE,
        continuationToken: next ? token : null,
        archived: isArchived(),
        signal: mine.signal,
      });
      if (controller !== mine) return; // a newer search took over
      for (const result of page.results) results.append(resultItem(result, q));
      found += page.results.length;
      token = page.continuationToken;
      const kind = isArchived() ? "archived conversation" : "conversation";
      status.textContent = found
        ? `${found} ${kind}${found === 1 ? "" : "s"} found for “${q}”` +
          (token ? ": more below." : ".")
        : `No ${kind}s match “${q}”.`;
    } catch (error) {
      if (error?.name === "AbortError" || controller !== mine) return;
      status.textContent = "";
      setError(describeError(error instanceof ApiError ? error : new ApiError(0, "internal", "")));
    } finally {
      if (controller === mine) {
        controller = null;
        pending = "";
        results.setAttribute("aria-busy", "false");
        more.disabled = false;
        more.hidden = !token;
      }
    }
  }

  function setError(text) {
    errorBox.textContent = text;
    errorBox.classList.toggle("shown", Boolean(text));
  }

  function resultItem(result, q) {
    const target = (messageId) =>
      `#s=${encodeURIComponent(result.sessionId)}` +
      (messageId ? `&m=${encodeURIComponent(messageId)}` : "");
    const choose = (event) => {
      event.preventDefault();
      onChoose(event.currentTarget.getAttribute("href"));
    };
    const title = el(
      "a",
      { className: "result-link", href: target(result.matches[0]?.messageId), onclick: choose },
      el("span", { className: "session-title", dir: "auto" }, highlighted(titleText(result.title), q)),
      el(
        "span",
        { className: "session-sub" },
        el("time", { datetime: result.updatedAt }, shortTime(result.updatedAt)),
        result.archived ? " · Archived" : "",
      ),
    );
    const matches = result.matches.map((match) =>
      el(
        "li",
        {},
        el(
          "a",
          { className: "match-link", href: target(match.messageId), onclick: choose },
          el("span", { className: "match-role" }, match.role === "user" ? "You: " : "Parley: "),
          el("span", { dir: "auto" }, highlighted(plainText(match.snippet), q)),
        ),
      ),
    );
    return el(
      "li",
      { className: "result", "data-session-id": result.sessionId },
      title,
      matches.length ? el("ul", { className: "matches" }, ...matches) : null,
    );
  }

  return {
    refresh() {
      if (active && query) run(query);
    },
    clear,
  };
}
