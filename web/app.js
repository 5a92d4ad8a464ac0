// The Parley reference client: sign-in, the conversation list, and a streaming chat view.

import { ApiError, createClient, newClientMessageId } from "./api.js";
import { resolveAuth } from "./auth.js";
import { describeError, el, messageItem, sessionItem, setMessageTime } from "./ui.js";

const PAGE_SIZE = 20;
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
  sending: false,
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
  });
}

/** After a turn: the conversation goes to the top of the active list, with its new title. */
function upsertSession(summary) {
  const list = $("session-list");
  list.querySelector(`[data-session-id="${CSS.escape(summary.sessionId)}"]`)?.remove();
  if (state.archived) {
    // A message brings an archived conversation back: it is no longer in this view.
    state.sessions.delete(summary.sessionId);
  } else {
    state.sessions.set(summary.sessionId, summary);
    list.prepend(renderSession(summary));
  }
  $("list-empty").hidden = state.sessions.size > 0;
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

// ---------------------------------------------------------------- delete, with confirmation

function confirmDelete(summary) {
  const dialog = $("confirm-delete");
  $("confirm-text").textContent =
    `“${summary.title || "Untitled"}” and all of its messages will be deleted for good.`;
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
  if (state.sessionId === sessionId) openNewChat();
  // Keep the keyboard where it was: on a neighbour, or on "New chat".
  (next?.querySelector(".session-link") ?? $("new-chat")).focus();
}

// ---------------------------------------------------------------- the chat view

function resetChat() {
  state.view += 1;
  state.sessionId = null;
  state.failed = null;
  $("messages").replaceChildren();
  $("chat-title").textContent = "New chat";
  $("chat-meta").textContent = "";
  $("chat-empty").hidden = false;
  clearError();
}

function openNewChat() {
  resetChat();
  if (location.hash) history.pushState(null, "", location.pathname + location.search);
  markCurrentInList();
}

async function openSession(sessionId) {
  resetChat();
  state.sessionId = sessionId;
  const view = state.view;
  markCurrentInList();
  $("chat-title").textContent = "Loading…";
  $("chat-empty").hidden = true;
  try {
    const session = await api.getSession(sessionId);
    if (view !== state.view) return;
    showTitle(session.title, session.archived);
    $("messages").replaceChildren(...session.messages.map(messageItem));
    $("chat-empty").hidden = session.messages.length > 0;
    scrollToEnd(true);
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
  $("chat-title").textContent = title || "Untitled";
  $("chat-meta").textContent = archived
    ? "Archived. Sending a message brings it back to your chats."
    : "";
}

function routeFromHash() {
  const match = /^#s=(.+)$/.exec(location.hash);
  const sessionId = match ? decodeURIComponent(match[1]) : null;
  if (sessionId === state.sessionId && sessionId !== null) return;
  if (sessionId) openSession(sessionId);
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

function showError(error, { onRetry } = {}) {
  $("chat-error-text").textContent = describeError(error);
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

function scrollToEnd(force = false) {
  const scroller = $("scroller");
  const nearEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  if (force || nearEnd) scroller.scrollTop = scroller.scrollHeight;
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

input.addEventListener("input", autoGrow);

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
  if (state.sending) return;
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
  answerItem.classList.add("streaming");
  answerItem.setAttribute("aria-busy", "true"); // read out once complete, not word by word
  $("chat-empty").hidden = true;
  $("messages").append(userItem, answerItem);
  scrollToEnd(true);
  input.value = "";
  autoGrow();
  setSending(true);
  $("chat-status").textContent = "Parley is answering…";

  let title = null;
  let answer = "";
  const answerText = answerItem.querySelector(".content");
  try {
    const done = await api.chatStream(
      { message: text, sessionId: sessionId ?? undefined, clientMessageId },
      {
        onSession(payload) {
          sessionId = payload.sessionId;
          title = payload.title;
          if (view !== state.view) return;
          if (state.sessionId !== sessionId) {
            state.sessionId = sessionId;
            // Remember the conversation in the URL, so a reload brings it back.
            history.replaceState(null, "", `#s=${encodeURIComponent(sessionId)}`);
          }
          showTitle(title, false);
        },
        onDelta(piece) {
          answer += piece;
          if (view !== state.view) return;
          answerText.textContent = answer;
          scrollToEnd();
        },
      },
    );
    const [user, assistant] = done.messages;
    answerText.textContent = assistant.content;
    setMessageTime(userItem, user.timestamp);
    setMessageTime(answerItem, assistant.timestamp);
    const previous = state.sessions.get(sessionId);
    upsertSession({
      ...previous,
      sessionId,
      title: title ?? previous?.title,
      updatedAt: assistant.timestamp,
      messageCount: (previous?.messageCount ?? 0) + 2,
      archived: false,
    });
    markCurrentInList();
    if (view === state.view) $("chat-status").textContent = "Parley answered.";
  } catch (error) {
    const apiError = asApiError(error);
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
    if (sessionId && !(apiError.status >= 400) && apiError.code !== "not_found") {
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
    if (apiError.code === "not_found") {
      // The conversation is gone: the next send starts a new one.
      state.failed = null;
      if (view === state.view) {
        state.sessionId = null;
        history.replaceState(null, "", location.pathname + location.search);
        markCurrentInList();
      }
    } else {
      state.failed = { text, clientMessageId, sessionId, item: userItem };
    }
    if (view === state.view) {
      // Keep what was typed, unless the user has already started typing something else.
      if (!input.value) input.value = text;
      autoGrow();
      $("chat-empty").hidden = $("messages").children.length > 0;
      $("chat-status").textContent = "";
      showError(apiError);
      input.focus();
    }
  } finally {
    answerItem.removeAttribute("aria-busy");
    answerItem.classList.remove("streaming");
    setSending(false);
  }
}

function setSending(sending) {
  state.sending = sending;
  $("send").disabled = sending;
  $("composer").setAttribute("aria-busy", String(sending));
}

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
  if (event.key === "Escape" && narrow.matches && $("sidebar").classList.contains("open")) {
    setNavOpen(false);
    $("nav-toggle").focus();
  }
});

// ---------------------------------------------------------------- start

function start() {
  showApp();
  setListView(false);
  routeFromHash();
  if (!state.sessionId) input.focus();
}

if (auth.ready()) start();
else showSignIn();
