// What was typed in the message box and not sent, kept per conversation: opening another
// conversation shows that one's draft (or nothing), and coming back shows this one's again.
// Kept in sessionStorage: for this tab while it lives (a reload keeps it), never sent anywhere,
// and forgotten at sign-out.

const PREFIX = "parley.draft.";
const NEW_CHAT = "new"; // the key of a conversation not yet created

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage refused (a privacy setting): drafts live only in the box
  }
}

function key(sessionId) {
  return PREFIX + (sessionId ?? NEW_CHAT);
}

/** The draft of a conversation (null: a new chat), or "". */
export function getDraft(sessionId) {
  return storage()?.getItem(key(sessionId)) ?? "";
}

/** Keep `text` as the draft of a conversation; an empty one is forgotten. */
export function setDraft(sessionId, text) {
  const store = storage();
  if (!store) return;
  try {
    if (text) store.setItem(key(sessionId), text);
    else store.removeItem(key(sessionId));
  } catch {
    // Full: the draft stays in the box only.
  }
}

/** A new chat became a conversation: what is being typed in it is now that one's draft. */
export function adoptNewChatDraft(sessionId) {
  const text = getDraft(null);
  setDraft(null, "");
  if (text && !getDraft(sessionId)) setDraft(sessionId, text);
}

/** Forget every draft (signing out). */
export function clearDrafts() {
  const store = storage();
  if (!store) return;
  for (let i = store.length - 1; i >= 0; i -= 1) {
    const name = store.key(i);
    if (name?.startsWith(PREFIX)) store.removeItem(name);
  }
}
