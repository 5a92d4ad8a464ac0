// Group conversations (docs/http.md, "Groups and real-time"): the "Groups" list beside the
// conversations, the New group dialog, the group view (`#g=<groupId>`: messages oldest first
// with their senders, send, ask the assistant streamed like chat), the Members dialog (owners
// add, remove and change roles; anyone leaves), rename and delete for owners. Messages arrive
// live through realtime.js; the store is the truth: each group's messages are shown once, in
// seq order, and any gap (or a reconnect) is filled from `GET .../messages?after=<seq>`. Without
// real-time delivery the open group is polled. Text from people goes in through textContent
// only (el); the assistant's answers through the Markdown sanitizer (setMarkdown).

import { LiveAnswer } from "./answers.js";
import { ApiError, newClientMessageId } from "./api.js";
import { setMarkdown } from "./markdown.js";
import { connectRealtime } from "./realtime.js";
import { parsePeople } from "./sharing.js";
import { describeError, el, renameForm, shortTime } from "./ui.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 3000; // while a group is open and no live connection is
const LIST_POLL_EVERY = 5; // ...and the list, every this many polls
const CATCH_UP_PAGE = 200;
const OLDER_PAGE = 50;

function describe(error) {
  return error instanceof ApiError ? describeError(error) : "Something went wrong. Try again.";
}

/** Who sent a message, as the log shows it. */
export function senderLabel(message, me) {
  if (message.role === "assistant") return "Assistant";
  if (message.removed || !message.sender) return "A former member";
  if (me && message.sender.email?.toLowerCase() === me.toLowerCase()) return "You";
  return message.sender.name || message.sender.email;
}

/** One message of a group's log. */
export function groupMessageItem(message, me) {
  const mine = message.role === "user" && senderLabel(message, me) === "You";
  const removed = Boolean(message.removed);
  // dir="auto" as in chat: each message takes the direction of its own first letters.
  const body = el("div", {
    className: message.role === "assistant" ? "content markdown" : "content",
    dir: "auto",
  });
  if (removed) body.textContent = "A message from a former member (removed).";
  else if (message.role === "assistant") setMarkdown(body, message.content ?? "");
  else body.textContent = message.content ?? "";
  const kind = message.role === "assistant" ? "from-assistant" : mine ? "from-user" : "from-member";
  const who = el("span", { className: "who" }, senderLabel(message, me));
  if (message.sender?.email && !mine) who.title = message.sender.email;
  const time = message.timestamp
    ? el("time", { datetime: message.timestamp, title: new Date(message.timestamp).toLocaleString() },
        shortTime(message.timestamp))
    : null;
  return el(
    "li",
    {
      className: `message ${kind}${removed ? " removed" : ""}`,
      "data-message-id": message.id ?? null,
      "data-seq": message.seq ?? null,
    },
    el("div", { className: "meta" }, who, time),
    el("div", { className: "bubble" }, body),
  );
}

/**
 * Wire up groups. `me()` is the signed-in address; `onOpen()` is called as the group view takes
 * the main area (the app resets its chat); `onSignIn(error)` handles a 401 (true if it did).
 */
export function setupGroups({ api, me, onOpen = () => {}, onSignIn = () => false }) {
  const groups = new Map(); // groupId -> summary, for the list
  let realtime = null;
  let pollTimer = null;
  let polls = 0;

  // The open group: everything about it is dropped when another opens (`view` changes).
  const open = {
    view: 0,
    groupId: null,
    group: null,
    lastSeq: 0, // the highest seq shown; every stored message up to it is shown
    oldestId: null,
    hasMore: false,
    catching: null, // the catch-up in flight
    again: false, // another catch-up was asked for while one ran
    gone: false, // removed or deleted: nothing more to send or fetch
    sending: false,
  };

  // ---- the list

  async function loadList() {
    try {
      const page = await api.listGroups({ limit: 50 });
      groups.clear();
      for (const summary of page.groups) groups.set(summary.groupId, summary);
      $("group-list-error").textContent = "";
      renderList();
    } catch (error) {
      if (onSignIn(error)) return;
      $("group-list-error").textContent = `Groups could not be loaded. ${describe(error)}`;
    }
  }

  function renderList() {
    const sorted = [...groups.values()].sort((a, b) => (b.updatedAt ?? "").localeCompare(a.updatedAt ?? ""));
    $("group-list").replaceChildren(
      ...sorted.map((summary) =>
        el(
          "li",
          { "data-group-id": summary.groupId },
          el(
            "a",
            {
              className: "session-link group-link",
              href: `#g=${encodeURIComponent(summary.groupId)}`,
              title: summary.name,
              "aria-current": summary.groupId === open.groupId ? "page" : null,
            },
            el("span", { className: "session-title" }, summary.name || "Untitled group"),
            el(
              "span",
              { className: "session-sub" },
              `${summary.memberCount ?? "?"} member${summary.memberCount === 1 ? "" : "s"}` +
                (summary.updatedAt ? ` · ${shortTime(summary.updatedAt)}` : ""),
            ),
          ),
        ),
      ),
    );
    $("group-list-empty").hidden = groups.size > 0;
  }

  function upsertSummary(summary) {
    const previous = groups.get(summary.groupId) ?? {};
    // An event's role is the actor's, not ours (docs/http.md): keep the one we know.
    groups.set(summary.groupId, { ...previous, ...summary, role: previous.role ?? summary.role });
    renderList();
  }

  function touch(groupId, timestamp) {
    const summary = groups.get(groupId);
    if (!summary) {
      loadList(); // a group we did not know yet (we were just added)
      return;
    }
    summary.updatedAt = timestamp ?? new Date().toISOString();
    renderList();
  }

  // ---- the create dialog

  $("new-group").addEventListener("click", () => {
    $("group-form").reset();
    $("group-form-error").textContent = "";
    $("group-dialog").showModal();
    $("group-name").focus();
  });

  $("group-create").addEventListener("click", async () => {
    const name = $("group-name").value.trim();
    const members = parsePeople($("group-members-input").value);
    if (!name) {
      $("group-form-error").textContent = "Give the group a name.";
      $("group-name").focus();
      return;
    }
    const button = $("group-create");
    button.disabled = true;
    try {
      const group = await api.createGroup({ name, members });
      upsertSummary(summaryOf(group));
      $("group-dialog").close();
      location.hash = `g=${encodeURIComponent(group.groupId)}`;
    } catch (error) {
      if (onSignIn(error)) return;
      $("group-form-error").textContent = describe(error);
    } finally {
      button.disabled = false;
    }
  });

  // ---- the group view

  function show(visible) {
    $("group-view").hidden = !visible;
    $("chat").hidden = visible;
  }

  function resetView() {
    open.view += 1;
    open.group = null;
    open.lastSeq = 0;
    open.oldestId = null;
    open.hasMore = false;
    open.catching = null;
    open.again = false;
    open.gone = false;
    $("group-messages").replaceChildren();
    $("group-error").textContent = "";
    $("group-status").textContent = "";
    $("group-gone").hidden = true;
    $("group-composer").hidden = false;
    $("group-hint").hidden = false;
    $("group-members-button").hidden = false;
    $("group-header").classList.remove("editing");
    $("group-header").querySelector(".rename-form")?.remove();
    $("group-older").hidden = true;
  }

  async function openGroup(groupId) {
    onOpen();
    show(true);
    resetView();
    open.groupId = groupId;
    renderList();
    const view = open.view;
    $("group-title").textContent = "Loading…";
    $("group-meta").textContent = "";
    try {
      const group = await api.getGroup(groupId);
      if (view !== open.view) return;
      showGroup(group);
      $("group-messages").replaceChildren(...group.messages.map(item));
      open.lastSeq = group.messages.at(-1)?.seq ?? 0;
      open.oldestId = group.messages[0]?.id ?? null;
      open.hasMore = Boolean(group.hasMoreMessages) && open.oldestId !== null;
      $("group-older").hidden = !open.hasMore;
      scrollToEnd(true);
      // What was sent between that read and the live connection: fetched now.
      catchUp();
    } catch (error) {
      if (view !== open.view) return;
      if (onSignIn(error)) return;
      if (error instanceof ApiError && error.code === "not_found") markGone("not_found");
      else $("group-error").textContent = describe(error);
    }
    schedulePoll();
  }

  function close() {
    resetView();
    open.groupId = null;
    show(false);
    renderList();
    clearTimeout(pollTimer);
  }

  function showGroup(group) {
    open.group = group;
    $("group-title").textContent = group.name || "Untitled group";
    const members = group.members ?? [];
    const names = members.map((m) => m.name || m.email).join(", ");
    $("group-meta").textContent =
      `${members.length} member${members.length === 1 ? "" : "s"}: ${names}` +
      (group.role === "owner" ? " · you own this group" : "");
    const owner = group.role === "owner";
    $("rename-group").hidden = !owner;
    $("delete-group").hidden = !owner;
    upsertSummary({ ...summaryOf(group), role: group.role });
    if ($("members-dialog").open) renderMembers();
  }

  function item(message) {
    return groupMessageItem(message, me());
  }

  /** Put a stored message in its place by seq, once. */
  function insert(message) {
    const log = $("group-messages");
    if (log.querySelector(`[data-seq="${message.seq}"]`)) return;
    const node = item(message);
    const later = [...log.children].find(
      (child) => !child.dataset.seq || Number(child.dataset.seq) > message.seq,
    );
    log.insertBefore(node, later ?? null);
  }

  /** A stored message of the open group, from a send, an event or a page. */
  function accept(message) {
    // Everything up to lastSeq is shown already (or lies before the page shown): a duplicate.
    if (message.seq <= open.lastSeq) return;
    if (message.seq > open.lastSeq + 1) {
      catchUp(); // a gap: fetched in order, this message included
      return;
    }
    const stick = atEnd();
    insert(message);
    open.lastSeq = message.seq;
    if (!open.oldestId) open.oldestId = message.id;
    scrollToEnd(stick);
  }

  /** Fetch everything after the highest seq shown, until nothing more. One at a time. */
  function catchUp() {
    if (!open.groupId || open.gone) return Promise.resolve();
    if (open.catching) {
      open.again = true;
      return open.catching;
    }
    const view = open.view;
    const groupId = open.groupId;
    open.catching = (async () => {
      try {
        do {
          open.again = false;
          let page;
          do {
            page = await api.groupMessages(groupId, { after: open.lastSeq, limit: CATCH_UP_PAGE });
            if (view !== open.view) return;
            const stick = atEnd();
            for (const message of page.messages) {
              insert(message);
              open.lastSeq = Math.max(open.lastSeq, message.seq);
              if (!open.oldestId) open.oldestId = message.id;
            }
            scrollToEnd(stick);
            if (page.messages.length) touch(groupId, page.messages.at(-1).timestamp);
          } while (page.hasMore && page.messages.length);
        } while (open.again);
      } catch (error) {
        if (view !== open.view) return;
        if (onSignIn(error)) return;
        if (error instanceof ApiError && error.code === "not_found") markGone("not_found");
        // Anything else: the next event, poll or reconnect tries again.
      } finally {
        if (view === open.view) open.catching = null;
      }
    })();
    return open.catching;
  }

  /** Removed from the group, or it was deleted: say so, and stop sending. */
  function markGone(reason) {
    open.gone = true;
    groups.delete(open.groupId);
    renderList();
    $("group-gone").textContent =
      reason === "deleted"
        ? "This group was deleted."
        : reason === "removed"
          ? "You are no longer a member of this group."
          : "You are no longer a member of this group, or it was deleted.";
    $("group-gone").hidden = false;
    $("group-meta").textContent = ""; // who belongs is no longer ours to see
    $("group-composer").hidden = true;
    $("group-hint").hidden = true;
    $("group-members-button").hidden = true;
    $("rename-group").hidden = true;
    $("delete-group").hidden = true;
    if ($("members-dialog").open) $("members-dialog").close();
  }

  // ---- older messages

  $("group-load-older").addEventListener("click", async () => {
    if (!open.hasMore || !open.groupId) return;
    const view = open.view;
    const button = $("group-load-older");
    button.disabled = true;
    try {
      const page = await api.groupMessages(open.groupId, { before: open.oldestId, limit: OLDER_PAGE });
      if (view !== open.view) return;
      const scroller = $("group-scroller");
      const anchor = $("group-messages").firstElementChild;
      const before = anchor?.getBoundingClientRect().top ?? 0;
      $("group-messages").prepend(...page.messages.map(item));
      if (page.messages.length) open.oldestId = page.messages[0].id;
      open.hasMore = page.hasMore && page.messages.length > 0;
      $("group-older").hidden = !open.hasMore;
      if (anchor) scroller.scrollTop += anchor.getBoundingClientRect().top - before;
    } catch (error) {
      if (view === open.view) $("group-error").textContent = describe(error);
    } finally {
      button.disabled = false;
    }
  });

  // ---- sending and asking

  const input = $("group-input");
  let failed = null; // {text, clientMessageId, ask}: a retry of the same text reuses the id

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("group-composer").requestSubmit();
    }
  });

  $("group-composer").addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage({ ask: event.submitter?.id === "group-ask" });
  });

  async function sendMessage({ ask }) {
    const text = input.value;
    if (open.sending || !open.groupId || open.gone) return;
    if (!text.trim()) {
      input.focus();
      return;
    }
    $("group-error").textContent = "";
    const view = open.view;
    const groupId = open.groupId;
    const retry = failed && failed.text === text && failed.groupId === groupId ? failed : null;
    const clientMessageId = retry ? retry.clientMessageId : newClientMessageId();
    failed = null;
    // Shown at once as "sending"; replaced by the stored message (with its seq) once stored.
    const pending = groupMessageItem({ role: "user", sender: { email: me() }, content: text }, me());
    pending.classList.add("pending");
    pending.querySelector(".meta").append(el("span", {}, "Sending…"));
    $("group-messages").append(pending);
    scrollToEnd(true);
    input.value = "";
    setSending(true);
    let answerItem = null;
    let live = null;
    try {
      if (!ask) {
        const { messages } = await api.sendGroupMessage(groupId, { content: text, clientMessageId });
        pending.remove();
        if (view === open.view) for (const message of messages) accept(message);
      } else {
        // Streamed as chat streams (answers.js): at most one render per animation frame.
        answerItem = groupMessageItem({ role: "assistant", content: "" }, me());
        $("group-messages").append(answerItem);
        live = new LiveAnswer(answerItem, {
          keepInView(render) {
            const stick = atEnd();
            render();
            scrollToEnd(stick);
          },
        });
        $("group-status").textContent = "The assistant is answering…";
        const done = await api.askGroupStream(
          groupId,
          { content: text, clientMessageId },
          {
            onMessage(message) {
              pending.remove();
              if (view === open.view) accept(message);
            },
            onDelta(piece) {
              if (view === open.view) live.append(piece);
            },
          },
        );
        live.end();
        answerItem.remove();
        pending.remove();
        if (view === open.view) {
          for (const message of done.messages) accept(message);
          $("group-status").textContent = "The assistant answered.";
        }
      }
      touch(groupId);
    } catch (error) {
      pending.remove();
      live?.end();
      answerItem?.remove();
      if (onSignIn(error)) return;
      if (view !== open.view) return;
      if (error instanceof ApiError && error.code === "not_found") {
        markGone("not_found");
        return;
      }
      // Whatever was stored shows through the catch-up; the text stays for a retry, which
      // reuses the clientMessageId so nothing is stored twice.
      failed = { text, clientMessageId, groupId };
      if (!input.value) input.value = text;
      $("group-error").textContent = describe(error);
      $("group-status").textContent = "";
      catchUp();
    } finally {
      setSending(false);
    }
  }

  function setSending(sending) {
    open.sending = sending;
    $("group-send").disabled = sending;
    $("group-ask").disabled = sending;
    $("group-composer").setAttribute("aria-busy", String(sending));
  }

  // ---- rename and delete (owners)

  $("rename-group").addEventListener("click", () => {
    if (!open.group || $("group-header").querySelector(".rename-form")) return;
    const header = $("group-header");
    const stop = () => {
      form.remove();
      header.classList.remove("editing");
      $("rename-group").focus();
    };
    const form = renameForm(open.group.name, {
      async onSave(value) {
        const name = value.trim();
        if (!name) throw new Error("A name cannot be empty.");
        try {
          const summary = await api.renameGroup(open.group.groupId, name);
          open.group = { ...open.group, ...summary, role: open.group.role };
          showGroup(open.group);
          stop();
        } catch (error) {
          throw new Error(describe(error));
        }
      },
      onCancel: stop,
    });
    form.querySelector("label").textContent = "Group name";
    header.classList.add("editing");
    header.prepend(form);
    form.querySelector("input").select();
  });

  $("delete-group").addEventListener("click", () => {
    if (!open.group) return;
    $("delete-group-text").textContent =
      `“${open.group.name}” and all its messages will be deleted for every member.`;
    $("confirm-delete-group").showModal();
  });

  $("confirm-delete-group").addEventListener("close", async () => {
    if ($("confirm-delete-group").returnValue !== "delete" || !open.group) return;
    const groupId = open.group.groupId;
    try {
      await api.deleteGroup(groupId);
      groups.delete(groupId);
      renderList();
      location.hash = "";
    } catch (error) {
      if (!onSignIn(error)) $("group-error").textContent = describe(error);
    }
  });

  // ---- members

  $("group-members-button").addEventListener("click", () => {
    if (!open.group) return;
    $("member-error").textContent = "";
    $("add-member-form").reset();
    renderMembers();
    $("members-dialog").showModal();
  });

  function renderMembers() {
    const group = open.group;
    const owner = group.role === "owner";
    const self = (me() ?? "").toLowerCase();
    $("add-member-form").hidden = !owner;
    $("members-list").replaceChildren(
      ...(group.members ?? []).map((member) => {
        const isMe = member.email.toLowerCase() === self;
        const label = `${member.name || member.email}${isMe ? " (you)" : ""}`;
        const row = el(
          "li",
          { className: "member-row" },
          el(
            "span",
            { className: "member-who" },
            el("span", { className: "member-name" }, label),
            el("span", { className: "muted member-email" }, member.email),
          ),
        );
        if (owner && !isMe) {
          const role = el(
            "select",
            { "aria-label": `Role of ${member.name || member.email}` },
            el("option", { value: "member" }, "Member"),
            el("option", { value: "owner" }, "Owner"),
          );
          role.value = member.role;
          role.addEventListener("change", () =>
            memberChange(() => api.setGroupMember(group.groupId, member.email, role.value)),
          );
          row.append(
            role,
            el(
              "button",
              {
                type: "button",
                className: "danger-outline",
                "aria-label": `Remove ${member.name || member.email}`,
                onclick: () =>
                  memberChange(async () => {
                    await api.removeGroupMember(group.groupId, member.email);
                    return api.getGroup(group.groupId);
                  }),
              },
              "Remove",
            ),
          );
        } else {
          row.append(el("span", { className: "member-role" }, member.role === "owner" ? "Owner" : "Member"));
        }
        return row;
      }),
    );
  }

  async function memberChange(work) {
    $("member-error").textContent = "";
    try {
      const group = await work();
      if (group) showGroup(group);
      renderMembers();
    } catch (error) {
      if (onSignIn(error)) return;
      $("member-error").textContent = describe(error);
      renderMembers(); // a refused role change shows the role as it is
    }
  }

  $("add-member-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const email = $("add-member-email").value.trim();
    if (!email || !open.group) return;
    memberChange(async () => {
      const group = await api.setGroupMember(open.group.groupId, email, "member");
      $("add-member-form").reset();
      return group;
    });
  });

  $("leave-group").addEventListener("click", async () => {
    if (!open.group) return;
    const groupId = open.group.groupId;
    try {
      await api.removeGroupMember(groupId, me());
      $("members-dialog").close();
      groups.delete(groupId);
      renderList();
      location.hash = "";
    } catch (error) {
      if (!onSignIn(error)) $("member-error").textContent = describe(error);
    }
  });

  // ---- live events and polling

  function onEvent(data) {
    const groupId = data.groupId;
    const isOpen = groupId && groupId === open.groupId && !open.gone;
    if (data.type === "group.message" && data.message) {
      touch(groupId, data.message.timestamp);
      if (isOpen) accept(data.message);
    } else if (data.type === "group.updated" && data.group) {
      upsertSummary(data.group);
      // Members or name changed: read the group again (our own role comes from GET).
      if (isOpen) refreshOpen();
    } else if (data.type === "group.removed" || data.type === "group.deleted") {
      groups.delete(groupId);
      renderList();
      if (isOpen) markGone(data.type === "group.deleted" ? "deleted" : "removed");
    }
  }

  async function refreshOpen() {
    const view = open.view;
    try {
      const group = await api.getGroup(open.groupId);
      if (view === open.view) showGroup(group);
    } catch (error) {
      if (view !== open.view) return;
      if (error instanceof ApiError && error.code === "not_found") markGone("removed");
    }
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    // Live: events bring what is new. Otherwise (off, or between reconnects) ask the store.
    if (realtime?.state() !== "live") {
      polls += 1;
      if (polls % LIST_POLL_EVERY === 0) await loadList();
      if (open.groupId && !open.gone) {
        await catchUp();
        if (polls % LIST_POLL_EVERY === 0 && !open.gone) await refreshOpen();
      }
    }
    schedulePoll();
  }

  function setLiveState(state) {
    const note = {
      live: "Live",
      connecting: "Connecting…",
      reconnecting: "Reconnecting…",
      unavailable: `Updates every ${POLL_MS / 1000} seconds`,
    }[state];
    $("group-live").textContent = note ?? "";
    $("group-live").dataset.state = state;
  }

  function start() {
    loadList();
    realtime?.stop();
    realtime = connectRealtime({
      api,
      onEvent,
      onLive() {
        // Joined (first time or after a drop): the list and the open group may have moved on.
        loadList();
        catchUp();
      },
      onStateChange: setLiveState,
    });
    setLiveState(realtime.state());
    schedulePoll();
  }

  function stop() {
    realtime?.stop();
    realtime = null;
    clearTimeout(pollTimer);
    groups.clear();
    renderList();
    if (open.groupId) close();
  }

  return {
    start,
    stop,
    open: openGroup,
    close,
    isOpen: () => open.groupId !== null,
    openId: () => open.groupId,
  };
}

function summaryOf(group) {
  const { members: _members, messages: _messages, hasMoreMessages: _more, ...summary } = group;
  return summary;
}

function atEnd() {
  const scroller = $("group-scroller");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

function scrollToEnd(force = false) {
  const scroller = $("group-scroller");
  if (force || atEnd()) scroller.scrollTop = scroller.scrollHeight;
}
