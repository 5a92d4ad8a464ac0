// Live group events through Azure Web PubSub (docs/http.md, "Groups and real-time"): negotiate a
// client URL, open a WebSocket with the json.webpubsub.azure.v1 subprotocol, and after the
// `connected` system message ask the server to join this connection to the caller's groups.
// A dropped connection is opened again (a fresh URL: the old one's token may have expired) with
// a growing delay; the caller fills the gap from the store on every (re)connect. When real-time
// delivery is off (negotiate or join answers 503) the caller polls instead.

const SUBPROTOCOL = "json.webpubsub.azure.v1";
const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;
const UNAVAILABLE_RETRY_MS = 60000; // real-time off: look again now and then, polling meanwhile

/**
 * Start the live connection. `onEvent(data)` gets each group event's `data` (`{type, groupId,
 * ...}`); `onLive()` runs each time the connection is joined (catch up then); `onStateChange(s)`
 * reports "connecting", "live", "reconnecting" or "unavailable". Returns `{state(), stop()}`.
 */
export function connectRealtime({ api, onEvent, onLive = () => {}, onStateChange = () => {} }) {
  let socket = null;
  let stopped = false;
  let timer = null;
  let delay = FIRST_DELAY_MS;
  let current = "connecting";

  function setState(next) {
    if (next === current) return;
    current = next;
    onStateChange(next);
  }

  function retry(after, state) {
    setState(state);
    clearTimeout(timer);
    timer = setTimeout(open, after);
  }

  function dropped() {
    socket = null;
    if (stopped) return;
    retry(delay, "reconnecting");
    delay = Math.min(delay * 2, MAX_DELAY_MS);
  }

  async function open() {
    if (stopped) return;
    let url;
    try {
      ({ url } = await api.negotiateRealtime());
    } catch (error) {
      if (stopped) return;
      // 503: real-time delivery is off; 404: an API without it at all. Poll, look again later.
      if (error?.status === 503 || error?.status === 404) retry(UNAVAILABLE_RETRY_MS, "unavailable");
      else dropped();
      return;
    }
    if (stopped) return;
    let ws;
    try {
      ws = new WebSocket(url, SUBPROTOCOL);
    } catch {
      dropped();
      return;
    }
    socket = ws;
    ws.addEventListener("message", async (event) => {
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // not a frame of the subprotocol: nothing to act on
      }
      if (frame.type === "system" && frame.event === "connected") {
        try {
          await api.joinRealtime();
        } catch (error) {
          if (ws !== socket) return;
          // Joined nowhere, the socket would stay silent: close it and try again (or poll).
          socket = null;
          ws.close();
          if (error?.status === 503) retry(UNAVAILABLE_RETRY_MS, "unavailable");
          else dropped();
          return;
        }
        if (ws !== socket) return;
        delay = FIRST_DELAY_MS;
        setState("live");
        onLive();
      } else if (frame.type === "message" && (frame.from === "group" || frame.from === "server") && frame.data) {
        // "group": an event of a group joined; "server": one sent to this user alone (your
        // removal, `group.removed`, after your connections left the group).
        const data = typeof frame.data === "string" ? safeParse(frame.data) : frame.data;
        if (data && typeof data.type === "string") onEvent(data);
      }
    });
    ws.addEventListener("close", () => {
      if (ws === socket) dropped();
    });
  }

  open();
  return {
    state: () => current,
    stop() {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
      socket = null;
    },
  };
}

function safeParse(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
