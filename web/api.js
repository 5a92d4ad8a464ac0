// A tiny client for every Parley endpoint (see openapi.yaml and docs/http.md). No dependencies:
// fetch, streams, JSON.

/** The response header that lets the next call read this one's writes on any instance. */
export const CONSISTENCY_HEADER = "Parley-Consistency";

/** An API failure: `code` is the API's error code, or `network_error` when nothing answered. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfterSeconds = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** A client message id, so that a retry of the same message is stored once (docs/http.md,
 * "Retries and clientMessageId"). */
export function newClientMessageId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID();
  // randomUUID needs a secure context; a static host on plain http may not be one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * @param {object} options
 * @param {string} [options.apiBase] where `/api` lives: "" for the same origin.
 * @param {() => Promise<Record<string,string>>|Record<string,string>} [options.headers]
 *   identity headers for each request (dev header or bearer token).
 * @param {RequestCredentials} [options.credentials] "include" for Easy Auth cookies.
 */
export function createClient({ apiBase = "", headers = () => ({}), credentials = "same-origin" } = {}) {
  const base = apiBase.replace(/\/+$/, "");
  // The latest Parley-Consistency the API answered, sent back with every call, so that any
  // instance serving the next one shows what this client has written (docs/http.md, on
  // Parley-Consistency). Opaque: only the server reads it.
  let consistency = null;

  async function send(method, path, { body, file, accept = "application/json", signal } = {}) {
    const init = {
      method,
      credentials,
      signal,
      headers: { Accept: accept, ...(await headers()) },
    };
    if (consistency) init.headers[CONSISTENCY_HEADER] = consistency;
    if (file !== undefined) {
      // A file as it is (an import): its own type, zip or JSON.
      init.headers["Content-Type"] = file.type;
      init.body = file;
    } else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(`${base}/api${path}`, init);
    } catch (error) {
      if (error?.name === "AbortError") throw error;
      throw new ApiError(0, "network_error", "The service could not be reached.");
    }
    consistency = response.headers.get(CONSISTENCY_HEADER) || consistency;
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  async function json(method, path, options) {
    const response = await send(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  return {
    health: () => json("GET", "/health"),

    /** What the caller's model calls cost: `{day, month: {tokens, limit, resetsAt, ...}, turns}`. */
    usage: (days = null) => json("GET", days ? `/usage?days=${days}` : "/usage"),

    listSessions({ limit = 20, continuationToken = null, archived = false } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (continuationToken) query.set("continuationToken", continuationToken);
      if (archived) query.set("archived", "true");
      return json("GET", `/sessions?${query}`);
    },

    /** The session with its newest messages; `hasMoreMessages` says whether older ones exist. */
    getSession: (sessionId) => json("GET", sessionPath(sessionId)),

    /** Older messages: `{messages (oldest first), hasMore}`, ending just before `before`. */
    pageMessages(sessionId, { before, limit = 50, signal } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (before) query.set("before", before);
      return json("GET", `${sessionPath(sessionId)}/messages?${query}`, { signal });
    },

    /** Rename: resolves to the session's summary with its new (trimmed) title. */
    renameSession: (sessionId, title) =>
      json("PATCH", sessionPath(sessionId), { body: { title } }),
    /** Pin (true) or unpin (false): pinned conversations are listed first and kept. */
    pinSession: (sessionId, pinned) =>
      json("PATCH", sessionPath(sessionId), { body: { pinned } }),

    deleteSession: (sessionId) => json("DELETE", sessionPath(sessionId)),

    /**
     * One step of deleting everything: resolves to `{done: true}` (204) or, when the server's
     * time ran out first (202), `{done: false, retryAfterSeconds}`: ask again after that long.
     */
    async deleteAllSessions() {
      const response = await send("DELETE", "/sessions");
      if (response.status === 204) return { done: true, retryAfterSeconds: null };
      // Retry-After is not readable across origins unless the API exposes it: null then.
      return {
        done: false,
        retryAfterSeconds: parseRetryAfter(response.headers.get("Retry-After")),
      };
    },

    /** Rate an assistant message: resolves to the message with its `feedback`. */
    setFeedback: (sessionId, messageId, { rating, comment = null }) =>
      json("PUT", feedbackPath(sessionId, messageId), { body: { rating, comment } }),

    clearFeedback: (sessionId, messageId) => json("DELETE", feedbackPath(sessionId, messageId)),

    /** `{results: [{sessionId, title, updatedAt, archived, matches}], continuationToken}`. */
    search({ q, limit = 20, continuationToken = null, archived = false, signal } = {}) {
      const query = new URLSearchParams({ q, limit: String(limit) });
      if (continuationToken) query.set("continuationToken", continuationToken);
      if (archived) query.set("archived", "true");
      return json("GET", `/search?${query}`, { signal });
    },

    /**
     * Everything of the caller as one JSON document. Resolves to `{text, document, filename}`
     * only when the whole document arrived: the server streams it, and a failure part-way
     * leaves it cut off (it does not parse) or without `"complete": true`; both reject with an
     * ApiError whose code is `incomplete_export`.
     */
    async exportAll() {
      const response = await send("GET", "/export");
      let text;
      try {
        text = await response.text();
      } catch {
        throw new ApiError(0, "incomplete_export", "The download broke off.");
      }
      let document = null;
      try {
        document = JSON.parse(text);
      } catch {
        // Cut off part-way: see below.
      }
      if (document?.complete !== true) {
        throw new ApiError(0, "incomplete_export", "The export is incomplete.");
      }
      return { text, document, filename: attachmentName(response) ?? "parley-export.json" };
    },

    // ---- sharing (docs/http.md, "Sharing")

    /** Share a conversation: `{audience, people?, expiresInDays?}`; resolves to the share. */
    createShare: (sessionId, request) =>
      json("POST", `${sessionPath(sessionId)}/shares`, { body: request }),

    /** The caller's own shares, newest first: `{shares, continuationToken}`. */
    listShares({ limit = 20, continuationToken = null } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (continuationToken) query.set("continuationToken", continuationToken);
      return json("GET", `/shares?${query}`);
    },

    /** A shared conversation: `{shareId, title, sharedBy, createdAt, expiresAt, messages}`. */
    getShare: (shareId) => json("GET", sharePath(shareId)),

    revokeShare: (shareId) => json("DELETE", sharePath(shareId)),

    /** Who viewed a share (owner only): `{views: [{email, viewedAt}]}`, newest first. */
    shareViews: (shareId) => json("GET", `${sharePath(shareId)}/views`),

    /** Copy a share into a new conversation of the caller's: resolves to its summary. */
    continueShare: (shareId) => json("POST", `${sharePath(shareId)}/continue`),

    /**
     * The export as a file in another format (`markdown`: a zip of .md files; `csv`). Resolves
     * to `{blob, filename}` only when the whole file arrived (a cut-off transfer rejects; a zip
     * must end with its directory), else rejects with `incomplete_export`.
     */
    async exportFile(format) {
      const response = await send("GET", `/export?${new URLSearchParams({ format })}`);
      let blob;
      try {
        blob = await response.blob();
      } catch {
        throw new ApiError(0, "incomplete_export", "The download broke off.");
      }
      if (format === "markdown" && !(await endsWithZipDirectory(blob))) {
        throw new ApiError(0, "incomplete_export", "The export is incomplete.");
      }
      const fallback = `parley-export.${format === "markdown" ? "zip" : format}`;
      return { blob, filename: attachmentName(response) ?? fallback };
    },

    /**
     * Import a ChatGPT export (conversations.json or its zip) or a Parley export: resolves to
     * the report `{imported, skipped, failed: [{title, reason}], sessions, leftOut}`.
     */
    async importFile(file) {
      const zip = file.name.toLowerCase().endsWith(".zip") || file.type.includes("zip");
      const typed = new Blob([file], { type: zip ? "application/zip" : "application/json" });
      const response = await send("POST", "/import", { file: typed });
      return response.json();
    },

    // ---- groups and real-time (docs/http.md, "Groups and real-time")

    /** The caller's groups, newest activity first: `{groups, continuationToken}`. */
    listGroups({ limit = 50, continuationToken = null } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (continuationToken) query.set("continuationToken", continuationToken);
      return json("GET", `/groups?${query}`);
    },

    /** Create a group (`{name, members: [addresses]}`): resolves to the group, caller owner. */
    createGroup: (request) => json("POST", "/groups", { body: request }),

    /** The group with its members and newest messages (oldest first). */
    getGroup: (groupId) => json("GET", groupPath(groupId)),

    renameGroup: (groupId, name) => json("PATCH", groupPath(groupId), { body: { name } }),

    deleteGroup: (groupId) => json("DELETE", groupPath(groupId)),

    /** Add a member, or change an existing member's role: resolves to the group. */
    setGroupMember: (groupId, email, role = "member") =>
      json("POST", `${groupPath(groupId)}/members`, { body: { email, role } }),

    /** Remove a member; the caller's own address is leaving. */
    removeGroupMember: (groupId, email) =>
      json("DELETE", `${groupPath(groupId)}/members/${encodeURIComponent(email)}`),

    /** Messages after a seq (catching up) or before a message id: `{messages, hasMore}`. */
    groupMessages(groupId, { after = null, before = null, limit = 50, signal } = {}) {
      const query = new URLSearchParams({ limit: String(limit) });
      if (after !== null) query.set("after", String(after));
      if (before) query.set("before", before);
      return json("GET", `${groupPath(groupId)}/messages?${query}`, { signal });
    },

    /** Send a message to a group: resolves to `{messages: [message]}`. */
    sendGroupMessage: (groupId, { content, clientMessageId }) =>
      json("POST", `${groupPath(groupId)}/messages`, { body: { content, clientMessageId } }),

    /**
     * Send and ask the assistant, as Server-Sent Events: `onMessage(message)` with the stored
     * user message, `onDelta(text)` per piece of the answer; resolves to the `done` payload
     * (`{messages: [user, assistant]}`), rejects with an ApiError on any failure.
     */
    async askGroupStream(groupId, { content, clientMessageId }, { onMessage = () => {}, onDelta = () => {}, signal } = {}) {
      const response = await send("POST", `${groupPath(groupId)}/messages`, {
        body: { content, clientMessageId, ask: true },
        accept: "text/event-stream",
        signal,
      });
      let done = null;
      try {
        for await (const { event, data } of readEvents(response.body)) {
          const payload = JSON.parse(data);
          if (event === "message") onMessage(payload.message);
          else if (event === "delta") onDelta(payload.content);
          else if (event === "done") done = payload;
          else if (event === "error") throw apiErrorFromBody(200, payload, null);
        }
      } catch (error) {
        if (error instanceof ApiError || error?.name === "AbortError") throw error;
        throw new ApiError(0, "network_error", "The connection broke while the answer streamed.");
      }
      if (!done) {
        throw new ApiError(0, "network_error", "The answer stopped before it was complete.");
      }
      return done;
    },

    /** `{url, expiresAt}`: a WebSocket URL for live group events (503 when real-time is off). */
    negotiateRealtime: () => json("GET", "/realtime/negotiate"),

    /** After each (re)connect: the server subscribes the caller's connections to their groups. */
    joinRealtime: () => json("POST", "/realtime/join"),

    /** One turn as plain JSON: resolves to `{sessionId, title, messages: [user, assistant]}`. */
    chat: (request) => json("POST", "/chat", { body: request }),

    /**
     * One turn as Server-Sent Events over fetch. Calls `onSession({sessionId, title})` first,
     * `onDelta(text)` for each piece of the answer, `onTitle(title)` when the model wrote a new
     * session's title; resolves to the `done` payload (`{messages: [user, assistant]}`),
     * rejects with an ApiError on any failure.
     */
    async chatStream(request, handlers = {}) {
      const response = await send("POST", "/chat", {
        body: request,
        accept: "text/event-stream",
        signal: handlers.signal,
      });
      return answerEvents(response, handlers);
    },

    // ---- answers: stop, regenerate, versions, branch, follow (docs/http.md)

    /** Stop the answer being generated: resolves to true (202, it stops soon) or false (204,
     * nothing was being generated). The stream showing it ends as a stopped answer. */
    async stopAnswer(sessionId) {
      const response = await send("POST", `${sessionPath(sessionId)}/stop`);
      return response.status === 202;
    },

    /**
     * A new answer to the last question, streamed like a turn: `onDelta(text)` for each piece;
     * resolves to the `done` payload (`{messages: [assistant]}`: the new answer, in the old
     * one's place, with its `versions` count).
     */
    async regenerateStream(sessionId, { clientMessageId } = {}, handlers = {}) {
      const response = await send("POST", `${sessionPath(sessionId)}/regenerate`, {
        body: clientMessageId ? { clientMessageId } : {},
        accept: "text/event-stream",
        signal: handlers.signal,
      });
      return answerEvents(response, handlers);
    },

    /** Every version of an answer, oldest first, the current one last: `{versions}`. */
    versions: (sessionId, messageId) =>
      json("GET", `${messagePath(sessionId, messageId)}/versions`),

    /** Branch: a new session with the messages up to `messageId`; resolves to its summary. */
    fork: (sessionId, messageId) =>
      json("POST", `${sessionPath(sessionId)}/fork`, { body: { messageId } }),

    /**
     * Follow the answer being generated in a session, wherever it is generated:
     * `onResume(message)` with the text so far, `onDelta(text)` as it grows; resolves to the
     * `done` payload (`{messages: [assistant]}`, or `{messages: []}` when nothing was being
     * generated).
     */
    async followAnswer(sessionId, handlers = {}) {
      const response = await send("GET", `${sessionPath(sessionId)}/stream`, {
        accept: "text/event-stream",
        signal: handlers.signal,
      });
      return answerEvents(response, handlers);
    },
  };
}

function groupPath(groupId) {
  return `/groups/${encodeURIComponent(groupId)}`;
}

/**
 * Read an answer's Server-Sent Events: `session`, `resume`, `delta`, `title` go to their
 * handlers, `error` rejects with its ApiError, and `done` is what this resolves to (a stream that
 * ends without it rejects: the answer was cut off).
 */
async function answerEvents(
  response,
  { onSession = () => {}, onResume = () => {}, onDelta = () => {}, onTitle = () => {} } = {},
) {
  let done = null;
  try {
    for await (const { event, data } of readEvents(response.body)) {
      const payload = JSON.parse(data);
      if (event === "session") onSession(payload);
      else if (event === "resume") onResume(payload.message);
      else if (event === "delta") onDelta(payload.content);
      else if (event === "title") onTitle(payload.title);
      else if (event === "done") done = payload;
      else if (event === "error") throw apiErrorFromBody(200, payload, null);
    }
  } catch (error) {
    if (error instanceof ApiError || error?.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "The connection broke while the answer streamed.");
  }
  if (!done) {
    throw new ApiError(0, "network_error", "The answer stopped before it was complete.");
  }
  return done;
}

function sharePath(shareId) {
  return `/shares/${encodeURIComponent(shareId)}`;
}

function sessionPath(sessionId) {
  return `/sessions/${encodeURIComponent(sessionId)}`;
}

function messagePath(sessionId, messageId) {
  return `${sessionPath(sessionId)}/messages/${encodeURIComponent(messageId)}`;
}

function feedbackPath(sessionId, messageId) {
  return `${messagePath(sessionId, messageId)}/feedback`;
}

/** The file name of a `Content-Disposition: attachment; filename="..."` answer, if readable. */
function attachmentName(response) {
  const header = response.headers.get("Content-Disposition") ?? "";
  const match = /filename="?([^";]+)"?/i.exec(header);
  // Only a plain name: never a path the browser would have to clean up.
  return match && /^[\w.-]+$/.test(match[1]) ? match[1] : null;
}

async function errorFrom(response) {
  const retryAfter = parseRetryAfter(response.headers.get("Retry-After"));
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not the API's error object (e.g. a proxy's HTML page): fall back to the status.
  }
  return apiErrorFromBody(response.status, body, retryAfter);
}

const CODES_BY_STATUS = {
  400: "invalid_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  502: "model_error",
  503: "storage_unavailable",
};

function apiErrorFromBody(status, body, retryAfter) {
  const error = body?.error;
  const code = typeof error?.code === "string" ? error.code : CODES_BY_STATUS[status] ?? "internal";
  const message = typeof error?.message === "string" ? error.message : `HTTP ${status}`;
  return new ApiError(status, code, message, retryAfter);
}

function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const date = Date.parse(value); // Retry-After may also be an HTTP date.
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

/** Parse a text/event-stream body into `{event, data}` records (the WHATWG SSE rules). */
/** A zip's end-of-central-directory record (PK 5 6, 22 bytes without a comment) closes it. */
async function endsWithZipDirectory(blob) {
  if (blob.size < 22) return false;
  const tail = new Uint8Array(await blob.slice(blob.size - 22).arrayBuffer());
  return tail[0] === 0x50 && tail[1] === 0x4b && tail[2] === 5 && tail[3] === 6;
}

export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        // A lone \r at the end of a chunk may be the first half of \r\n: wait for more.
        if (buffer[newline] === "\r" && newline === buffer.length - 1) break;
        const width = buffer.startsWith("\r\n", newline) ? 2 : 1;
        buffer = buffer.slice(newline + width);
        if (line === "") {
          if (data.length) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue; // a comment, e.g. a keep-alive
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "event") event = text;
        else if (field === "data") data.push(text);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
