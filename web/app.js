// The Parley reference client: sign-in, the conversation list (rename, delete, search), a
// streaming chat view (Markdown answers, feedback, older messages on scroll), groups
// (groups.js) and data rights.

import { ApiError, createClient, newClientMessageId } from "./api.js";
import { resolveAuth } from "./auth.js";
import { setupDataRights } from "./data.js";
import { feedbackControls } from "./feedback.js";
import { setupGroups } from "./groups.js";
import { setupSearch } from "./search.js";
import { setupSharing } from "./sharing.js";
import { setupActivity } from "./activity.js";
import { LiveAnswer, messageActions, setStatusBadge } from "./answers.js";
import { titleText } from "./plaintext.js";
import { adoptNewChatDraft, clearDrafts, getDraft, setDraft } from "./drafts.js";
import { setupUsage } from "./usage.js";
import {
  describeError,
  el,
  messageItem,
  renameForm,
  sessionItem,
  setMessageTime,
} from "./ui.js";

const PAGE_SIZE = 20;
const OLDER_PAGE = 50; // older messages per page while scrolling up
const JUMP_PAGE = 200; // ... and while looking for a search result's message (the API's most)
const FLASH_MS = 3000;
// A conversation opened with a question this recent at its end may have its answer still in its
// first moments: the page asks to follow it. Older ones are answered or unanswered for good (a
// clock off by more only makes the page look once for nothing, or not look).
const RECENT = 5 * 60 * 1000; // ms
const $ = (id) => document.getElementById(id);

const auth = resolveAuth(window.parleyConfig ?? {});
const api = createClient({
  apiBase: auth.apiBase,
  headers: () => auth.headers(),
  credentials: auth.credentials,
});

const state = {
  archived: false, // which list is shown
  continuationToken: null,
  sessions: new Map(), // sessionId -> summary, for the list shown
  sessionId: null, // the open conversation; null for a new chat
  view: 0, // bumped whenever another conversation is opened, so late answers land nowhere
  loaded: null, // a promise: the open conversation's first page is shown
  title: "", // the open conversation's title, as stored
  archivedOpen: false, // whether the open conversation is archived
  hasMoreMessages: false, // older messages exist than the oldest shown
  oldestId: null, // the oldest message shown
  loadingOlder: null, // the page of older messages being fetched, as a promise
  olderFailed: false, // the last page failed: wait for the button rather than retry on scroll
  // The last message that got no answer: resending the same text reuses its clientMessageId,
  // so the server stores it once and only asks the model again.
  failed: null, // {text, clientMessageId, sessionId, item}
};

// ---------------------------------------------------------------- sign-in

function showSignIn() {
  $("app-view").hidden = true;
  $("account").hidden = true;
  $("nav-toggle").hidden = true;
  $("signin-view").hidden = false;
  $("signin-dev").hidden = auth.mode !== "dev";
  $("signin-remote").hidden = auth.mode === "dev";
  (auth.mode === "dev" ? $("signin-email") : $("signin-form").querySelector("button")).focus();
}

function showApp() {
  $("signin-view").hidden = true;
  $("app-view").hidden = false;
  $("nav-toggle").hidden = false;
  $("account").hidden = false;
  $("account-name").textContent = auth.email() ?? "";
  // Token mode can only sign out if the page says how.
  $("sign-out").hidden = auth.mode === "token" && !window.parleyConfig?.signOut;
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("signin-email");
  if (auth.mode === "dev") {
    const email = input.value.trim();
    if (!input.checkValidity() || !email) {
      $("signin-error").textContent = "Enter an email address, like alice@example.com.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    input.removeAttribute("aria-invalid");
    $("signin-error").textContent = "";
    auth.signIn(email);
    start();
  } else {
    auth.signIn();
  }
});

$("sign-out").addEventListener("click", async () => {
  if (await auth.signOut()) {
    clearDrafts(); // the next person at this tab does not see them
    search.clear();
    groups.stop();
    $("data-status").textContent = "";
    resetChat();
    history.replaceState(null, "", location.pathname + location.search);
    showSignIn();
  }
});

/** A 401 anywhere: the way back is signing in again. */
function needsSignIn(error) {
  return error instanceof ApiError && error.code === "unauthenticated";
}

// ---------------------------------------------------------------- the conversation list

function setListView(archived) {
  state.archived = archived;
  $("show-active").setAttribute("aria-pressed", String(!archived));
  $("show-archived").setAttribute("aria-pressed", String(archived));
  $("list-heading").textContent = archived ? "Archived chats" : "Chats";
  $("list-empty").textContent = archived ? "No archived conversations." : "No conversations yet.";
  loadSessions({ reset: true });
  search.refresh();
}

async function loadSessions({ reset }) {
  const list = $("session-list");
  const more = $("load-more");
  if (reset) {
    state.sessions.clear();
    state.continuationToken = null;
    list.replaceChildren();
  }
  setListError("");
  list.setAttribute("aria-busy", "true");
  more.disabled = true;
  try {
    const page = await api.listSessions({
      limit: PAGE_SIZE,
      continuationToken: state.continuationToken,
      archived: state.archived,
    });
    for (const summary of page.sessions) {
      if (state.sessions.has(summary.sessionId)) continue; // moved up since the last page
      state.sessions.set(summary.sessionId, summary);
      list.append(renderSession(summary));
    }
    state.continuationToken = page.continuationToken;
  } catch (error) {
    setListError(describeError(asApiError(error)));
    if (needsSignIn(error)) offerSignIn($("list-error"));
  } finally {
    list.setAttribute("aria-busy", "false");
    more.disabled = false;
    more.hidden = !state.continuationToken;
    $("list-empty").hidden = state.sessions.size > 0 || $("list-error").classList.contains("shown");
  }
}

function setListError(text) {
  $("list-error").textContent = text;
  $("list-error").classList.toggle("shown", Boolean(text));
}

function renderSession(summary) {
  return sessionItem(summary, {
    current: summary.sessionId === state.sessionId,
    onDelete: confirmDelete,
    onRename: renameInList,
    onPin: pinInList,
  });
}

/** Pin or unpin, then list again from the top: the server's order (pinned first) is the one. */
async function pinInList(summary, pinned) {
  setListError("");
  try {
    await api.pinSession(summary.sessionId, pinned);
  } catch (error) {
    setListError(describeError(asApiError(error)));
    return;
  }
  await loadSessions({ reset: true });
  listItem(summary.sessionId)?.querySelector(".session-pin")?.focus();
}

function listItem(sessionId) {
  return $("session-list").querySelector(`[data-session-id="${CSS.escape(sessionId)}"]`);
}

/** After a turn: the conversation goes to the top of the active list, with its new title. */
function upsertSession(summary) {
  const list = $("session-list");
  listItem(summary.sessionId)?.remove();
  if (state.archived) {
    // A message brings an archived conversation back: it is no longer in this view.
    state.sessions.delete(summary.sessionId);
  } else {
    // A turn keeps the pin it had; an unpinned conversation goes just below the pinned ones.
    const pinned = state.sessions.get(summary.sessionId)?.pinned ?? summary.pinned ?? false;
    const updated = { ...summary, pinned };
    state.sessions.set(summary.sessionId, updated);
    const firstUnpinned = pinned ? null : list.querySelector(".session:not(.pinned)");
    if (pinned || !firstUnpinned) {
      if (pinned) list.prepend(renderSession(updated));
      else list.append(renderSession(updated));
    } else {
      firstUnpinned.before(renderSession(updated));
    }
  }
  $("list-empty").hidden = state.sessions.size > 0;
}

/** A new title (renamed, or written by the model): in the list and, if open, the header. */
function showNewTitle(sessionId, title) {
  const summary = state.sessions.get(sessionId);
  if (summary) {
    const updated = { ...summary, title };
    state.sessions.set(sessionId, updated);
    const item = listItem(sessionId);
    // An entry being renamed keeps its editor; the rename's own answer comes next.
    if (item && !item.classList.contains("editing")) {
      const controls = [...item.querySelectorAll("a, button")];
      const focused = controls.indexOf(document.activeElement);
      const fresh = renderSession(updated);
      item.replaceWith(fresh);
      // Keep the keyboard where it was, on the new entry's same control.
      if (focused >= 0) fresh.querySelectorAll("a, button")[focused]?.focus();
    }
  }
  if (sessionId === state.sessionId) {
    state.title = title;
    if (!$("chat-header").classList.contains("editing")) showTitle(title, state.archivedOpen);
  }
}

function markCurrentInList() {
  for (const link of $("session-list").querySelectorAll(".session-link")) {
    const id = link.closest(".session").dataset.sessionId;
    if (id === state.sessionId) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

$("show-active").addEventListener("click", () => setListView(false));
$("show-archived").addEventListener("click", () => setListView(true));
$("load-more").addEventListener("click", () => loadSessions({ reset: false }));

// ---------------------------------------------------------------- rename in place

/** Save a title: resolves when stored; rejects with the reason, in words. */
async function saveTitle(sessionId, title) {
  try {
    const summary = await api.renameSession(sessionId, title);
    showNewTitle(sessionId, summary.title);
    return summary;
  } catch (error) {
    const apiError = asApiError(error);
    if (apiError.code === "invalid_request") {
      throw new Error("A title needs 1 to 100 characters on one line.");
    }
    if (apiError.code === "not_found") {
      throw new Error("This conversation no longer exists; it may have been deleted.");
    }
    throw new Error(describeError(apiError));
  }
}

function renameInList(summary) {
  const item = listItem(summary.sessionId);
  if (!item || item.classList.contains("editing")) return;
  const current = state.sessions.get(summary.sessionId) ?? summary;
  const done = (focusSelector) => {
    const fresh = renderSession(state.sessions.get(summary.sessionId) ?? current);
    item.replaceWith(fresh);
    fresh.querySelector(focusSelector)?.focus();
  };
  const form = renameForm(current.title, {
    async onSave(value) {
      if (value.trim() === current.title) return done(".session-rename");
      await saveTitle(summary.sessionId, value);
      done(".session-rename");
    },
    onCancel: () => done(".session-rename"),
  });
  item.classList.add("editing");
  item.append(form);
  form.focusInput();
}

function renameInHeader() {
  const header = $("chat-header");
  const sessionId = state.sessionId;
  if (!sessionId || header.classList.contains("editing")) return;
  const done = () => {
    form.remove();
    header.classList.remove("editing");
    showTitle(state.title, state.archivedOpen);
    $("rename-chat").focus();
  };
  const form = renameForm(state.title, {
    async onSave(value) {
      if (value.trim() !== state.title) await saveTitle(sessionId, value);
      done();
    },
    onCancel: done,
  });
  form.classList.add("rename-title");
  header.classList.add("editing");
  $("chat-title-row").after(form);
  form.focusInput();
}

$("rename-chat").addEventListener("click", renameInHeader);

// ---------------------------------------------------------------- delete, with confirmation

function confirmDelete(summary) {
  const dialog = $("confirm-delete");
  $("confirm-text").textContent =
    `“${titleText(summary.title)}” and all of its messages will be deleted for good.`;
  const opener = document.activeElement;
  dialog.returnValue = "";
  dialog.addEventListener(
    "close",
    async () => {
      if (dialog.returnValue !== "delete") {
        opener?.focus();
        return;
      }
      await deleteSession(summary.sessionId);
    },
    { once: true },
  );
  dialog.showModal();
}

async function deleteSession(sessionId) {
  const item = $("session-list").querySelector(`[data-session-id="${CSS.escape(sessionId)}"]`);
  const next = item?.nextElementSibling ?? item?.previousElementSibling;
  try {
    await api.deleteSession(sessionId);
  } catch (error) {
    // Already gone is what was asked for.
    if (!(error instanceof ApiError && error.code === "not_found")) {
      setListError(describeError(asApiError(error)));
      return;
    }
  }
  item?.remove();
  state.sessions.delete(sessionId);
  $("list-empty").hidden = state.sessions.size > 0;
  sharing.refresh(); // its shares went with it
  if (state.sessionId === sessionId) openNewChat();
  // Keep the keyboard where it was: on a neighbour, or on "New chat".
  (next?.querySelector(".session-link") ?? $("new-chat")).focus();
}

// ---------------------------------------------------------------- the chat view

function resetChat() {
  state.view += 1;
  state.sessionId = null;
  state.failed = null;
  state.loaded = null;
  state.title = "";
  state.archivedOpen = false;
  state.hasMoreMessages = false;
  state.oldestId = null;
  state.loadingOlder = null;
  state.olderFailed = false;
  $("chat-header").querySelector(".rename-form")?.remove();
  $("chat-header").classList.remove("editing");
  $("messages").replaceChildren();
  $("chat-title").textContent = "New chat";
  $("chat-meta").textContent = "";
  $("rename-chat").hidden = true;
  $("share-chat").hidden = true;
  $("chat-empty").hidden = false;
  updateOlder();
  clearError();
  showDraft();
  updateComposer();
}

/** The open conversation's draft in the message box (each conversation keeps its own). */
function showDraft() {
  input.value = getDraft(state.sessionId);
  autoGrow();
}

function openNewChat() {
  if (groups.isOpen()) groups.close();
  resetChat();
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
  markCurrentInList();
}

function openSession(sessionId, { messageId = null } = {}) {
  resetChat();
  state.sessionId = sessionId;
  showDraft();
  updateComposer();
  markCurrentInList();
  state.loaded = loadSession(sessionId, state.view, messageId);
}

async function loadSession(sessionId, view, messageId) {
  $("chat-title").textContent = "Loading…";
  $("chat-empty").hidden = true;
  try {
    const session = await api.getSession(sessionId);
    if (view !== state.view) return;
    state.archivedOpen = session.archived;
    state.title = session.title;
    showTitle(session.title, session.archived);
    $("rename-chat").hidden = false;
    $("share-chat").hidden = false;
    // An answer this page is streaming into this conversation (sent here, then another
    // conversation opened meanwhile) comes back as its own items, still growing.
    const flight = flights.get(sessionId);
    const messages = flight ? withoutFlight(session.messages, flight) : session.messages;
    const items = messages.map(renderMessage);
    if (flight) {
      items.push(...[flight.userItem, flight.answerItem].filter(Boolean));
      flight.live.schedule();
    }
    $("messages").replaceChildren(...items);
    state.oldestId = session.messages[0]?.id ?? null;
    state.hasMoreMessages = Boolean(session.hasMoreMessages) && state.oldestId !== null;
    $("chat-empty").hidden = session.messages.length > 0;
    scrollToEnd(true);
    updateOlder();
    // An answer being generated (before a reload, on another device or instance): follow it.
    const last = messages.at(-1);
    if (!flight && last?.role === "assistant" && last.status === "streaming") {
      followAnswer(sessionId, items.at(-1), last);
    } else if (!flight && last?.role === "user" && Date.now() - Date.parse(last.timestamp) < RECENT) {
      // A question just asked (the page reloaded right after sending it): its answer may not
      // be stored yet.
      followAnswer(sessionId);
    }
    if (messageId) await revealMessage(messageId, view);
  } catch (error) {
    if (view !== state.view) return;
    $("chat-title").textContent = "New chat";
    $("chat-empty").hidden = false;
    showError(asApiError(error));
    if (error instanceof ApiError && error.code === "not_found") {
      // Nothing to restore: continue as a new chat rather than send into a missing one.
      state.sessionId = null;
      history.replaceState(null, "", location.pathname + location.search);
      markCurrentInList();
    }
  }
}

function showTitle(title, archived) {
  $("chat-title").textContent = titleText(title);
  $("rename-chat").setAttribute("aria-label", `Rename “${titleText(title)}”`);
  $("chat-meta").textContent = archived
    ? "Archived. Sending a message brings it back to your chats."
    : "";
}

/** `#s=<sessionId>` opens a conversation; `&m=<messageId>` also goes to one of its messages. */
function routeFromHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  // `#g=<groupId>`: a group conversation (groups.js).
  const groupId = params.get("g");
  if (groupId) {
    if (groupId === groups.openId()) return;
    if (sharing.isOpen()) sharing.close();
    resetChat();
    markCurrentInList();
    groups.open(groupId);
    return;
  }
  if (groups.isOpen()) groups.close();
  // `#share=<shareId>`: a shared conversation, read-only (sharing.js).
  const shareId = params.get("share");
  if (shareId) {
    resetChat();
    markCurrentInList();
    sharing.open(shareId);
    return;
  }
  if (sharing.isOpen()) sharing.close();
  const sessionId = params.get("s");
  const messageId = params.get("m");
  if (sessionId !== null && sessionId === state.sessionId) {
    if (messageId) {
      const view = state.view;
      Promise.resolve(state.loaded).then(() => revealMessage(messageId, view));
    }
    return;
  }
  if (sessionId) openSession(sessionId, { messageId });
  else resetChat();
  markCurrentInList();
}

window.addEventListener("hashchange", () => {
  routeFromHash();
  closeNavOnPhone();
});

$("new-chat").addEventListener("click", () => {
  openNewChat();
  closeNavOnPhone();
  $("composer-input").focus();
});

// Opening a conversation from the list puts the keyboard in the message box.
$("session-list").addEventListener("click", (event) => {
  if (event.target.closest(".session-link")) {
    queueMicrotask(() => $("composer-input").focus());
  }
});

function showError(error, { onRetry, sentence = null } = {}) {
  $("chat-error-text").textContent = sentence ?? describeError(error);
  const action = $("chat-error-action");
  action.hidden = true;
  action.onclick = null;
  if (needsSignIn(error)) {
    offerSignIn($("chat-error"));
  } else if (onRetry) {
    action.textContent = "Try again";
    action.hidden = false;
    action.onclick = onRetry;
  }
  $("chat-error").classList.add("shown");
}

function clearError() {
  $("chat-error-text").textContent = "";
  $("chat-error-action").hidden = true;
  $("chat-error").classList.remove("shown");
}

function offerSignIn(container) {
  const action = container.querySelector(".link-button") ?? container.appendChild(
    Object.assign(document.createElement("button"), { type: "button", className: "link-button" }),
  );
  action.textContent = "Sign in again";
  action.hidden = false;
  action.onclick = async () => {
    if (await auth.signOut()) showSignIn();
    else auth.signIn();
  };
}

function asApiError(error) {
  return error instanceof ApiError ? error : new ApiError(0, "internal", String(error));
}

/** Whether the log is scrolled to (about) its end: new text then keeps it there. */
function atEnd() {
  const scroller = $("scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

function scrollToEnd(force = false) {
  const scroller = $("scroller");
  if (force || atEnd()) scroller.scrollTop = scroller.scrollHeight;
}

/** Change the log with `render`, keeping it scrolled to its end if it was there. */
function keepInView(render) {
  const stick = atEnd();
  render();
  scrollToEnd(stick);
}

// ---------------------------------------------------------------- messages and feedback

/**
 * A message of the open conversation: its status ("stopped", "interrupted"), "Branch from here",
 * and on the model's answers feedback, Regenerate and their versions. An answer still being
 * generated gets them when it ends.
 */
function renderMessage(message) {
  const item = messageItem(message);
  setStatusBadge(item, message.status);
  if (!message.id || message.status === "streaming") return item;
  if (message.role === "assistant") decorateAnswer(item, message, state.sessionId);
  else addMessageActions(item, message, state.sessionId);
  return item;
}

function decorateAnswer(item, message, sessionId) {
  addFeedback(item, message, sessionId);
  addMessageActions(item, message, sessionId);
}

/** The row under an answer: feedback, then what can be done with it. */
function answerTools(item) {
  return item.querySelector(".answer-tools") ?? item.appendChild(el("div", { className: "answer-tools" }));
}

function addFeedback(item, message, sessionId) {
  answerTools(item).append(
    feedbackControls(message, {
      async save(request) {
        if (!request) {
          await api.clearFeedback(sessionId, message.id);
          return null;
        }
        const stored = await api.setFeedback(sessionId, message.id, request);
        return stored.feedback ?? null;
      },
    }),
  );
}

function addMessageActions(item, message, sessionId) {
  const actions = messageActions(message, {
    onBranch: (button) => branchFrom(sessionId, message.id, button),
    onRegenerate: message.role === "assistant" ? () => regenerate(item, message, sessionId) : null,
    loadVersions: async () => (await api.versions(sessionId, message.id)).versions,
  });
  // A question's actions sit before its name and time (which stay by the bubble's edge); an
  // answer's, beside its feedback.
  if (message.role === "user") item.querySelector(".meta").prepend(actions);
  else answerTools(item).append(actions);
}

/** "Branch from here": a new conversation with the messages up to this one, opened. */
async function branchFrom(sessionId, messageId, button) {
  button.setAttribute("aria-disabled", "true");
  clearError();
  try {
    const summary = await api.fork(sessionId, messageId);
    if (state.archived) setListView(false); // the branch is an active conversation
    else upsertSession(summary);
    history.pushState(null, "", `#s=${encodeURIComponent(summary.sessionId)}`);
    routeFromHash();
    $("chat-status").textContent = `Branched into “${titleText(summary.title)}”.`;
    input.focus();
  } catch (error) {
    if (button.isConnected) showError(asApiError(error));
  } finally {
    button.removeAttribute("aria-disabled");
  }
}

/** A new answer to the last question, streamed in the old one's place (kept as a version). */
async function regenerate(oldItem, oldMessage, sessionId) {
  if (flights.has(sessionId) || !oldItem.isConnected) return;
  clearError();
  const answerItem = messageItem({ role: "assistant", content: "" });
  const flight = startFlight({
    key: sessionId,
    sessionId,
    kind: "regenerate",
    answerItem,
    messageId: oldMessage.id,
  });
  oldItem.replaceWith(answerItem);
  scrollToEnd();
  $("chat-status").textContent = "Parley is answering again…";
  try {
    const done = await api.regenerateStream(
      sessionId,
      { clientMessageId: newClientMessageId() },
      { onDelta: (piece) => flight.live.append(piece) },
    );
    const assistant = done.messages.findLast((m) => m.role === "assistant");
    finishAnswer(flight, assistant);
    if (answerItem.isConnected) $("chat-status").textContent = answeredNews(assistant);
    const previous = state.sessions.get(sessionId);
    if (previous) upsertSession({ ...previous, updatedAt: assistant.timestamp });
    markCurrentInList();
  } catch (error) {
    // Nothing replaced the answer: it is shown again as it was.
    if (answerItem.isConnected) {
      answerItem.replaceWith(oldItem);
      $("chat-status").textContent = "";
      showError(asApiError(error));
    }
  } finally {
    endFlight(flight);
    usage.refresh();
  }
}

/**
 * Show an answer that is being generated (elsewhere, or before a reload) as it grows:
 * `message` is the answer as `GET` showed it (`"streaming"`), shown in `answerItem`. Without
 * them (the conversation ends with a recent question), the answer may be in its first moments,
 * not stored yet: the server waits a little for it, and it is shown only if it comes.
 */
async function followAnswer(sessionId, answerItem = null, message = null) {
  const view = state.view;
  let flight = null;
  const begin = (stored) => {
    if (flight || flights.has(sessionId)) return;
    answerItem ??= messageItem({ role: "assistant", content: "" });
    flight = startFlight({
      key: sessionId,
      sessionId,
      kind: "resume",
      answerItem,
      messageId: stored?.id ?? null,
    });
    if (!answerItem.isConnected && view === state.view && state.sessionId === sessionId) {
      $("chat-empty").hidden = true;
      $("messages").append(answerItem);
      scrollToEnd();
    }
    if (stored) flight.live.replace(stored.content);
  };
  if (message) begin(message);
  try {
    const done = await api.followAnswer(sessionId, {
      onResume(resumed) {
        begin(resumed);
        if (flight?.kind === "resume") {
          flight.messageId = resumed.id;
          flight.live.replace(resumed.content);
        }
      },
      onDelta: (piece) => flight?.live.append(piece),
    });
    if (!flight) return; // nothing was being generated
    let assistant = done.messages.findLast((m) => m.role === "assistant");
    if (!assistant && flight.messageId) {
      // It ended between the page's two reads: as stored.
      const session = await api.getSession(sessionId);
      assistant = session.messages.find((m) => m.id === flight.messageId);
    }
    if (assistant) finishAnswer(flight, assistant);
    else flight.live.finish();
  } catch (error) {
    if (!flight) return; // only looking: nothing shown, nothing to say
    // Following broke off: the text so far stays; a reload follows it again.
    flight.live.finish();
    if (flight.answerItem.isConnected) showError(asApiError(error));
  } finally {
    if (flight) endFlight(flight);
  }
}

function findMessage(messageId) {
  return $("messages").querySelector(`[data-message-id="${CSS.escape(messageId)}"]`);
}

// ---------------------------------------------------------------- older messages

/** The "earlier messages" row above the log: shown while older messages exist. */
function updateOlder({ busy = false, error = "" } = {}) {
  $("older").hidden = !state.hasMoreMessages;
  const button = $("load-older");
  button.textContent = busy ? "Loading earlier messages…" : "Load earlier messages";
  if (busy) button.setAttribute("aria-disabled", "true");
  else button.removeAttribute("aria-disabled");
  $("older-error").textContent = error;
  $("messages").setAttribute("aria-busy", String(busy));
}

/**
 * Fetch the page before the oldest message shown and put it above, keeping what is on screen
 * where it is. Resolves once done (at once when nothing older exists); one page at a time.
 */
function loadOlder({ limit = OLDER_PAGE } = {}) {
  if (state.loadingOlder) return state.loadingOlder;
  if (!state.hasMoreMessages || !state.sessionId) return Promise.resolve();
  const view = state.view;
  const sessionId = state.sessionId;
  const loading = (async () => {
    updateOlder({ busy: true });
    try {
      const page = await api.pageMessages(sessionId, { before: state.oldestId, limit });
      if (view !== state.view) return;
      state.olderFailed = false;
      state.hasMoreMessages = page.hasMore && page.messages.length > 0;
      prependMessages(page.messages);
    } catch (error) {
      if (view !== state.view) return;
      state.olderFailed = true;
      updateOlder({ error: `Earlier messages could not be loaded. ${describeError(asApiError(error))}` });
    } finally {
      if (view === state.view) state.loadingOlder = null;
    }
  })();
  state.loadingOlder = loading;
  return loading;
}

function prependMessages(messages) {
  const scroller = $("scroller");
  const anchor = $("messages").firstElementChild;
  const before = anchor?.getBoundingClientRect().top ?? 0;
  if (messages.length) {
    $("messages").prepend(...messages.map(renderMessage));
    state.oldestId = messages[0].id;
  }
  updateOlder();
  // Scroll by exactly what was added above the message that was first: nothing on screen moves.
  if (anchor) scroller.scrollTop += anchor.getBoundingClientRect().top - before;
  // Observe again: if the row is still in view (a short page), the observer loads the next one.
  olderObserver.unobserve($("older"));
  olderObserver.observe($("older"));
}

// Scrolling near the top loads the page before; the button does the same from the keyboard.
const olderObserver = new IntersectionObserver(
  (entries) => {
    if (entries.some((entry) => entry.isIntersecting) && !state.olderFailed) loadOlder();
  },
  { root: $("scroller"), rootMargin: "300px 0px 0px 0px" },
);
olderObserver.observe($("older"));

$("load-older").addEventListener("click", () => {
  state.olderFailed = false;
  loadOlder();
});

/** Show one message of the open conversation, loading older pages until it is there. */
async function revealMessage(messageId, view) {
  let item = findMessage(messageId);
  while (!item && state.hasMoreMessages && !state.olderFailed && view === state.view) {
    await loadOlder({ limit: JUMP_PAGE });
    item = findMessage(messageId);
  }
  if (view !== state.view) return;
  if (!item) {
    if (!state.olderFailed) $("chat-status").textContent = "That message is no longer here.";
    return;
  }
  item.scrollIntoView({ block: "center" });
  item.setAttribute("tabindex", "-1");
  item.focus({ preventScroll: true });
  item.classList.remove("flash");
  void item.offsetWidth; // restart the highlight if it is already showing
  item.classList.add("flash");
  clearTimeout(item.flashTimer);
  item.flashTimer = setTimeout(() => item.classList.remove("flash"), FLASH_MS);
}

// ---------------------------------------------------------------- sending a message

const input = $("composer-input");

input.addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a new line; an IME composition's Enter is neither.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});

input.addEventListener("input", () => {
  autoGrow();
  setDraft(state.sessionId, input.value);
});

function autoGrow() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, window.innerHeight * 0.4)}px`;
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

async function send() {
  const text = input.value;
  if (currentFlight()) return; // this conversation's answer is still coming: Stop comes first
  if (!text.trim()) {
    input.focus();
    return;
  }
  clearError();
  const view = state.view;
  const retry = state.failed && state.failed.text === text ? state.failed : null;
  const clientMessageId = retry ? retry.clientMessageId : newClientMessageId();
  // A retry goes to the session the failed message went to (the server may have created it).
  let sessionId = retry ? retry.sessionId : state.sessionId;
  retry?.item.remove();
  state.failed = null;

  // The user's message shows at once; the answer streams in below it.
  const userItem = messageItem({ role: "user", content: text });
  const answerItem = messageItem({ role: "assistant", content: "" });
  const flight = startFlight({
    key: sessionId ?? newChatKey(view),
    sessionId,
    kind: "send",
    userText: text,
    userItem,
    answerItem,
  });
  $("older").hidden = true; // not while the end of the log is what matters
  $("chat-empty").hidden = true;
  $("messages").append(userItem, answerItem);
  scrollToEnd(true);
  input.value = "";
  setDraft(sessionId, "");
  autoGrow();
  $("chat-status").textContent = "Parley is answering…";

  let title = null;
  let baseCount = null; // the conversation's message count before this turn, once known
  // Whether this turn's conversation is the one on screen: its items are in the log only then
  // (they go with it when another is opened, and come back with it: loadSession).
  const shown = () => answerItem.isConnected;
  try {
    const done = await api.chatStream(
      { message: text, sessionId: sessionId ?? undefined, clientMessageId },
      {
        onSession(payload) {
          sessionId = payload.sessionId;
          title = payload.title;
          nameFlight(flight, sessionId);
          // The turn began: the conversation goes to the top of the list now.
          const previous = state.sessions.get(sessionId);
          baseCount = previous?.messageCount ?? 0;
          upsertSession({
            ...previous,
            sessionId,
            title,
            updatedAt: new Date().toISOString(),
            messageCount: baseCount + (retry ? 0 : 1),
            archived: false,
          });
          if (!shown()) return;
          if (state.sessionId !== sessionId) {
            state.sessionId = sessionId;
            adoptNewChatDraft(sessionId);
            // Remember the conversation in the URL, so a reload brings it back.
            history.replaceState(null, "", `#s=${encodeURIComponent(sessionId)}`);
          }
          state.title = title;
          state.archivedOpen = false;
          showTitle(title, false);
          $("rename-chat").hidden = false;
          $("share-chat").hidden = false;
          markCurrentInList();
          updateComposer();
        },
        onDelta(piece) {
          flight.live.append(piece);
        },
        onTitle(newTitle) {
          // The model named the new conversation: header and list entry change at once.
          title = newTitle;
          showNewTitle(sessionId, newTitle);
        },
      },
    );
    const [user, assistant] = done.messages;
    userItem.dataset.messageId = user.id;
    setMessageTime(userItem, user.timestamp);
    finishAnswer(flight, assistant);
    addMessageActions(userItem, user, sessionId);
    const previous = state.sessions.get(sessionId);
    upsertSession({
      ...previous,
      sessionId,
      title: title ?? previous?.title,
      updatedAt: assistant.timestamp,
      messageCount: (baseCount ?? previous?.messageCount ?? 0) + (retry ? 1 : 2),
      archived: false,
    });
    markCurrentInList();
    if (shown()) $("chat-status").textContent = answeredNews(assistant);
  } catch (error) {
    const apiError = asApiError(error);
    const wasShown = shown();
    if (apiError.status === 200 && flight.live.text && sessionId && (await keptAsInterrupted(sessionId))) {
      // The model failed after some text (an `error` event mid-stream), and the server kept that
      // text as an "interrupted" answer, which can be regenerated. Show the conversation as
      // stored, with the reason.
      const previous = state.sessions.get(sessionId);
      upsertSession({
        ...previous,
        sessionId,
        title: title ?? previous?.title,
        updatedAt: new Date().toISOString(),
        messageCount: (baseCount ?? previous?.messageCount ?? 0) + (retry ? 1 : 2),
        archived: false,
      });
      markCurrentInList();
      if (wasShown) {
        flight.live.finish();
        setStatusBadge(answerItem, "interrupted");
        $("chat-status").textContent = answeredNews({ status: "interrupted" });
        const now = state.view;
        state.loaded = loadSession(sessionId, now, null).then(() => {
          if (now !== state.view) return;
          showError(apiError, { sentence: "The answer broke off. Regenerate it to try again." });
        });
      }
      return;
    }
    answerItem.remove();
    if (apiError.status >= 400 && !retry) {
      // Refused before the turn began (an HTTP error status): nothing was stored, so the
      // message leaves the log and stays only in the message box.
      userItem.remove();
    } else {
      // The turn began (or the connection broke): the message is stored without an answer.
      userItem.classList.add("unanswered");
      userItem.querySelector(".meta").append(el("span", { className: "unanswered-note" }, "Not answered"));
    }
    if (baseCount === null && sessionId && !(apiError.status >= 400) && apiError.code !== "not_found") {
      // The server began the turn, so the conversation exists (with this message): list it.
      const previous = state.sessions.get(sessionId);
      upsertSession({
        ...previous,
        sessionId,
        title: title ?? previous?.title,
        updatedAt: new Date().toISOString(),
        messageCount: (previous?.messageCount ?? 0) + (retry ? 0 : 1),
        archived: false,
      });
      markCurrentInList();
    }
    if (wasShown) {
      if (apiError.code === "not_found") {
        // The conversation is gone: the next send starts a new one.
        state.sessionId = null;
        history.replaceState(null, "", location.pathname + location.search);
        markCurrentInList();
      } else {
        state.failed = { text, clientMessageId, sessionId, item: userItem };
      }
      // Keep what was typed, unless the user has already started typing something else.
      if (!input.value) input.value = text;
      setDraft(state.sessionId, input.value);
      autoGrow();
      $("chat-empty").hidden = $("messages").children.length > 0;
      $("chat-status").textContent = "";
      showError(apiError);
      input.focus();
    } else if (apiError.code !== "not_found") {
      // Failed out of sight: the message waits in its conversation's box, to send again.
      if (!getDraft(sessionId)) setDraft(sessionId, text);
    }
  } finally {
    endFlight(flight);
    if (view === state.view) updateOlder();
    // The turn cost tokens (or was refused for them): the meter shows where the user stands.
    usage.refresh();
  }
}

/** Whether a turn that failed part-way left its answer stored as "interrupted" (a failure
 * before the answer's first checkpoint leaves none: the question waits unanswered). */
async function keptAsInterrupted(sessionId) {
  try {
    const last = (await api.getSession(sessionId)).messages.at(-1);
    return last?.role === "assistant" && last.status === "interrupted";
  } catch {
    return false;
  }
}

/** What the status line says when an answer ends. */
function answeredNews(assistant) {
  if (assistant?.status === "stopped") return "Parley stopped. The answer so far is kept.";
  if (assistant?.status === "interrupted") return "The answer was interrupted.";
  return "Parley answered.";
}

// ---------------------------------------------------------------- answers in flight

// Every answer this page is streaming, by conversation. Each is bound to its own conversation
// (its own message items, its own session id), so a conversation can be left, another used
// (even to send), and this one opened again while its answer still comes: the items go back in
// its log. A new chat's first turn is keyed by its view until the server names the session.
const flights = new Map();

function newChatKey(view) {
  return `new:${view}`;
}

/** The answer streaming into the open conversation, if any. */
function currentFlight() {
  return flights.get(state.sessionId ?? newChatKey(state.view)) ?? null;
}

function startFlight({ key, sessionId, kind, userText = null, userItem = null, answerItem, messageId = null }) {
  const flight = {
    key,
    sessionId,
    kind, // "send", "regenerate" or "resume"
    userText,
    userItem,
    answerItem,
    messageId, // the answer's id, once known
    stopping: false,
    live: new LiveAnswer(answerItem, { keepInView }),
  };
  flights.set(key, flight);
  updateComposer();
  return flight;
}

/** The server named the conversation of a new chat's first turn. */
function nameFlight(flight, sessionId) {
  if (flight.key === sessionId) return;
  flights.delete(flight.key);
  flight.key = sessionId;
  flight.sessionId = sessionId;
  flights.set(sessionId, flight);
}

function endFlight(flight) {
  flight.live.end();
  if (flights.get(flight.key) === flight) flights.delete(flight.key);
  updateComposer();
}

/** The stored answer is in: its text, id, time, status, versions and controls. */
function finishAnswer(flight, assistant) {
  const item = flight.answerItem;
  flight.live.finish(assistant.content);
  item.dataset.messageId = assistant.id;
  setMessageTime(item, assistant.timestamp);
  setStatusBadge(item, assistant.status);
  item.querySelector(".answer-tools")?.remove();
  decorateAnswer(item, assistant, flight.sessionId);
}

/**
 * The stored messages of a conversation with an answer in flight here, without that answer's
 * own turn (its items stand for it): the answer being regenerated or followed, an answer the
 * server shows as streaming, and the question of a turn still being answered.
 */
function withoutFlight(messages, flight) {
  let kept = messages.filter((m) => !(flight.messageId && m.id === flight.messageId));
  if (kept.at(-1)?.role === "assistant" && kept.at(-1).status === "streaming") kept = kept.slice(0, -1);
  if (flight.kind === "send" && kept.at(-1)?.role === "user" && kept.at(-1).content === flight.userText) {
    kept = kept.slice(0, -1);
  }
  return kept;
}

/** Send becomes Stop while the open conversation's answer streams. */
function updateComposer() {
  const flight = currentFlight();
  const send = $("send");
  const stop = $("stop");
  send.hidden = Boolean(flight);
  send.disabled = Boolean(flight);
  stop.hidden = !flight;
  // Stopping needs the session's id (a new chat's first answer has it with its first event).
  stop.disabled = !flight?.sessionId || flight.stopping;
  stop.textContent = flight?.stopping ? "Stopping…" : "Stop";
  $("composer").setAttribute("aria-busy", String(Boolean(flight)));
}

$("stop").addEventListener("click", async () => {
  const flight = currentFlight();
  if (!flight?.sessionId || flight.stopping) return;
  flight.stopping = true;
  updateComposer();
  $("chat-status").textContent = "Stopping the answer…";
  try {
    // 202: it stops within about a second, and its stream ends as a stopped answer; 204:
    // nothing was being generated any more (it has just ended on its own).
    await api.stopAnswer(flight.sessionId);
  } catch (error) {
    flight.stopping = false;
    updateComposer();
    if (flight.answerItem.isConnected) showError(asApiError(error));
  }
});

// ---------------------------------------------------------------- phone layout

const narrow = window.matchMedia("(max-width: 760px)");

function setNavOpen(open) {
  $("sidebar").classList.toggle("open", open);
  $("nav-toggle").setAttribute("aria-expanded", String(open));
}

function closeNavOnPhone() {
  if (narrow.matches) setNavOpen(false);
}

$("nav-toggle").addEventListener("click", () => {
  const open = $("nav-toggle").getAttribute("aria-expanded") !== "true";
  setNavOpen(open);
  if (open) $("new-chat").focus();
});

document.addEventListener("keydown", (event) => {
  // Escape in a dialog closes that dialog only (the browser does it), and the dialog gives
  // the keyboard back to what opened it, inside the panel: the panel stays open.
  if (event.target.closest?.("dialog")) return;
  if (event.key === "Escape" && narrow.matches && $("sidebar").classList.contains("open")) {
    setNavOpen(false);
    $("nav-toggle").focus();
  }
});

// ---------------------------------------------------------------- search

const search = setupSearch({
  api,
  isArchived: () => state.archived,
  onActiveChange(active) {
    // Results take the list's place while there is a search.
    $("list-area").hidden = active;
  },
  onChoose(href) {
    history.pushState(null, "", href);
    routeFromHash();
    closeNavOnPhone();
    // A match puts the keyboard on its message (revealMessage); a title, in the message box.
    if (!new URLSearchParams(href.slice(1)).has("m")) input.focus();
  },
});

// ---------------------------------------------------------------- sharing

const sharing = setupSharing({
  api,
  current: () => (state.sessionId ? { sessionId: state.sessionId, title: state.title } : null),
  onContinue(summary) {
    loadSessions({ reset: true });
    history.pushState(null, "", `#s=${encodeURIComponent(summary.sessionId)}`);
    routeFromHash();
    input.focus();
  },
  onSignIn(error) {
    if (!needsSignIn(error)) return false;
    showSignIn();
    return true;
  },
});

// ---------------------------------------------------------------- groups

const groups = setupGroups({
  api,
  me: () => auth.email(),
  onSignIn(error) {
    if (!needsSignIn(error)) return false;
    showSignIn();
    return true;
  },
});

// Opening a group from the list puts the keyboard in its message box.
$("group-list").addEventListener("click", (event) => {
  if (event.target.closest(".group-link")) queueMicrotask(() => $("group-input").focus());
});

// ---------------------------------------------------------------- data rights

setupDataRights({
  api,
  onImported() {
    // The imported conversations take their places in the list (by their own times).
    if (state.archived) setListView(false);
    else loadSessions({ reset: true });
  },
  onErased() {
    search.clear();
    // Erasure took the caller out of every group.
    groups.stop();
    groups.start();
    sharing.refresh();
    openNewChat();
    setListView(false);
    $("new-chat").focus();
  },
});

// ---------------------------------------------------------------- usage

const usage = setupUsage({ api });
setupActivity({ api });

// ---------------------------------------------------------------- start

function start() {
  showApp();
  usage.refresh();
  setListView(false);
  sharing.refresh();
  groups.start();
  routeFromHash();
  if (!state.sessionId) input.focus();
}

if (auth.ready()) start();
else showSignIn();
