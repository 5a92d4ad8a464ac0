// Sharing a conversation (docs/http.md, "Sharing"): the Share dialog (audience, people, expiry,
// a copyable link), the read-only view a link opens (`#share=<id>`) with "Continue this
// conversation", and the "Shared" list of the user's own shares with their views and a revoke.
// Text from the server goes in through textContent only (el), answers through the Markdown
// sanitizer (messageItem).

import { ApiError } from "./api.js";
import { titleText } from "./plaintext.js";
import { describeError, el, messageItem, shortTime } from "./ui.js";

const $ = (id) => document.getElementById(id);
const SHARES_PAGE = 50;

/** The link that opens a share in this client. */
export function shareLink(shareId) {
  return `${location.origin}${location.pathname}#share=${encodeURIComponent(shareId)}`;
}

/** The addresses typed in the people box: split on commas, semicolons and white space. */
export function parsePeople(text) {
  return text
    .split(/[\s,;]+/)
    .map((part) => part.trim())
    .filter(Boolean);
}

function describe(error) {
  return error instanceof ApiError ? describeError(error) : "Something went wrong. Try again.";
}

/**
 * Wire up sharing. `current()` is the open conversation (`{sessionId, title}` or null);
 * `onContinue(summary)` opens the new conversation a share was copied into; `onSignIn(error)`
 * handles a 401.
 */
export function setupSharing({ api, current, onContinue, onSignIn }) {
  const dialog = $("share-dialog");
  const people = $("share-people");
  const create = $("share-create");
  let openShareId = null;
  let reading = 0;

  // ---- the Share dialog

  $("share-chat").addEventListener("click", () => {
    const session = current();
    if (!session) return;
    $("share-dialog-title").textContent = `Share “${titleText(session.title)}”`;
    $("share-form-error").textContent = "";
    $("share-result").hidden = true;
    $("share-copied").textContent = "";
    create.hidden = false;
    create.disabled = false;
    dialog.showModal();
    people.focus();
  });

  for (const radio of dialog.querySelectorAll('input[name="audience"]')) {
    radio.addEventListener("change", syncAudience);
  }

  function audience() {
    return dialog.querySelector('input[name="audience"]:checked').value;
  }

  function syncAudience() {
    people.disabled = audience() !== "people";
  }

  create.addEventListener("click", async () => {
    const session = current();
    if (!session) return;
    const request = { audience: audience(), expiresInDays: Number($("share-days").value) };
    if (request.audience === "people") {
      request.people = parsePeople(people.value);
      if (request.people.length === 0) {
        $("share-form-error").textContent = "Name at least one person, or choose anyone who can sign in.";
        people.setAttribute("aria-invalid", "true");
        people.focus();
        return;
      }
    }
    people.removeAttribute("aria-invalid");
    $("share-form-error").textContent = "";
    create.disabled = true;
    try {
      const share = await api.createShare(session.sessionId, request);
      $("share-link").value = shareLink(share.shareId);
      $("share-result").hidden = false;
      create.hidden = true;
      $("share-link").focus();
      $("share-link").select();
      refresh();
    } catch (error) {
      if (onSignIn(error)) return;
      $("share-form-error").textContent = describe(error);
      create.disabled = false;
    }
  });

  $("copy-share-link").addEventListener("click", async () => {
    const link = $("share-link").value;
    try {
      await navigator.clipboard.writeText(link);
      $("share-copied").textContent = "Link copied.";
    } catch {
      $("share-link").select();
      $("share-copied").textContent = "Select the link and copy it.";
    }
  });

  // ---- the read-only view of a share

  async function open(shareId) {
    openShareId = shareId;
    const mine = ++reading;
    $("chat").hidden = true;
    $("shared-view").hidden = false;
    $("shared-title").textContent = "Loading…";
    $("shared-meta").textContent = "";
    $("shared-error").textContent = "";
    $("shared-messages").replaceChildren();
    $("continue-share").hidden = true;
    try {
      const shared = await api.getShare(shareId);
      if (mine !== reading) return;
      $("shared-title").textContent = titleText(shared.title);
      $("shared-meta").textContent =
        `Shared by ${shared.sharedBy.name} (${shared.sharedBy.email}) · ` +
        `link works until ${new Date(shared.expiresAt).toLocaleDateString()}`;
      $("shared-messages").replaceChildren(
        ...shared.messages.map((message) => {
          const item = messageItem(message);
          // The questions are the sharer's, not the reader's.
          if (message.role === "user") item.querySelector(".who").textContent = shared.sharedBy.name;
          return item;
        }),
      );
      $("continue-share").hidden = false;
      $("shared-title").focus();
    } catch (error) {
      if (mine !== reading) return;
      if (onSignIn(error)) return;
      $("shared-title").textContent = "Shared conversation";
      $("shared-error").textContent =
        error instanceof ApiError && error.code === "not_found"
          ? "This link does not work: it may have expired or been revoked, or it was not shared with you."
          : describe(error);
    }
  }

  function close() {
    reading += 1;
    openShareId = null;
    $("shared-view").hidden = true;
    $("chat").hidden = false;
  }

  $("continue-share").addEventListener("click", async () => {
    if (!openShareId) return;
    const button = $("continue-share");
    button.disabled = true;
    try {
      const summary = await api.continueShare(openShareId);
      onContinue(summary);
    } catch (error) {
      if (!onSignIn(error)) $("shared-error").textContent = describe(error);
    } finally {
      button.disabled = false;
    }
  });

  // ---- the user's own shares

  async function refresh() {
    const list = $("share-list");
    $("share-list-error").textContent = "";
    try {
      const page = await api.listShares({ limit: SHARES_PAGE });
      list.replaceChildren(...page.shares.map(shareEntry));
      $("share-list-empty").hidden = page.shares.length > 0;
    } catch (error) {
      if (!onSignIn(error)) $("share-list-error").textContent = describe(error);
    }
  }

  function shareEntry(share) {
    const who =
      share.audience === "people" ? share.people.join(", ") : "anyone who can sign in";
    const views = el("ul", { className: "share-views", hidden: true });
    const viewsButton = el(
      "button",
      {
        type: "button",
        className: "link-button",
        "aria-expanded": "false",
        onclick: () => toggleViews(share.shareId, views, viewsButton),
      },
      `${share.views} view${share.views === 1 ? "" : "s"}`,
    );
    const revoke = el(
      "button",
      {
        type: "button",
        className: "link-button danger-text",
        "aria-label": `Revoke the link to “${titleText(share.title)}”`,
        onclick: async () => {
          revoke.disabled = true;
          try {
            await api.revokeShare(share.shareId);
            item.remove();
            $("share-list-empty").hidden = $("share-list").children.length > 0;
          } catch (error) {
            revoke.disabled = false;
            if (!onSignIn(error)) $("share-list-error").textContent = describe(error);
          }
        },
      },
      "Revoke",
    );
    const item = el(
      "li",
      { className: "share-entry", "data-share-id": share.shareId },
      el("a", { href: `#share=${encodeURIComponent(share.shareId)}`, className: "share-title", dir: "auto" }, titleText(share.title)),
      el(
        "p",
        { className: "muted share-about" },
        `With ${who} · until ${shortTime(share.expiresAt)}`,
      ),
      el("div", { className: "share-actions" }, viewsButton, revoke),
      views,
    );
    return item;
  }

  async function toggleViews(shareId, list, button) {
    const opening = list.hidden;
    button.setAttribute("aria-expanded", String(opening));
    list.hidden = !opening;
    if (!opening) return;
    list.replaceChildren(el("li", { className: "muted" }, "Loading…"));
    try {
      const { views } = await api.shareViews(shareId);
      list.replaceChildren(
        ...(views.length
          ? views.map((view) =>
              el(
                "li",
                {},
                `${view.email} · `,
                el("time", { datetime: view.viewedAt }, new Date(view.viewedAt).toLocaleString()),
              ),
            )
          : [el("li", { className: "muted" }, "Nobody has opened it yet.")]),
      );
    } catch (error) {
      if (!onSignIn(error)) list.replaceChildren(el("li", { className: "alert" }, describe(error)));
    }
  }

  syncAudience();
  return { open, close, refresh, isOpen: () => openShareId !== null };
}
