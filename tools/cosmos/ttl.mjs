// Time to live (TTL) for the local Cosmos server, and the test clock that drives it.
//
// Azure's documented semantics ("Time to Live (TTL) in Azure Cosmos DB", and the .NET SDK's
// ContainerProperties.DefaultTimeToLive):
//   - the container's `defaultTtl`: absent or null, TTL is off and no item expires (an item's
//     `ttl` is ignored); -1, TTL is on and items do not expire unless their own `ttl` says so;
//     n > 0, items expire n seconds after their last write (`_ts`);
//   - an item's `ttl` (only when the container's TTL is on) overrides the default: -1 never
//     expires, n > 0 expires n seconds after the item's last write;
//   - valid values: -1 or an integer 1..2147483647 (defaultTtl may also be null); anything else
//     is refused with 400 (the SDK's test_ttl.py: defaultTtl -10, item ttl 0, null and -10);
//   - an expired item is gone at once for every read and query, even before the background
//     deletion removes it.
// Here an expired item is deleted before the next operation on items of its container runs
// (point reads, queries, feed reads, writes and batches all see it gone; a create of the same
// id succeeds), and a lagging replica's view never shows it (consistency.mjs asks isVisible).
// The deletion takes no LSN and no request units (Cosmos: background work on leftover RUs).
//
// The clock: `_ts` and expiry follow Date.now(). With the test clock on (--test-clock), the
// server's Date.now() is the real time plus an offset that `POST /_parley/clock` advances, so a
// test makes an item expire without sleeping. The package stamps `_ts` with Date.now(), so items
// written after an advance carry the advanced time, as they would after a real wait.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

/** The largest TTL Cosmos accepts, in seconds (2^31 - 1). */
export const MAX_TTL_SECONDS = 2147483647;
/** The test clock's route (only with --test-clock). */
export const CLOCK_PATH = "/_parley/clock";

const realNow = Date.now.bind(Date);
let offsetMs = 0;

/** Turns the test clock on: from now on Date.now() is the real time plus the advanced offset. */
export function installTestClock() {
  Date.now = () => realNow() + offsetMs;
}

/** The server's time in seconds (what `_ts` is compared with). */
function nowSeconds() {
  return Date.now() / 1000;
}

function validTtl(value) {
  return Number.isInteger(value) && (value === -1 || (value >= 1 && value <= MAX_TTL_SECONDS));
}

/** Why a container definition's defaultTtl is refused (400), or null when it is valid. */
export function defaultTtlError(definition) {
  if (!definition || typeof definition !== "object" || !("defaultTtl" in definition)) return null;
  const value = definition.defaultTtl;
  if (value === null || validTtl(value)) return null;
  return (
    `The value of defaultTtl '${JSON.stringify(value)}' is invalid: it must be -1 or a ` +
    `positive integer of at most ${MAX_TTL_SECONDS}, or null.`
  );
}

/**
 * Why an item's ttl is refused (400), or null when it is valid or absent. Checked whatever the
 * container's TTL: Azure's docs and the SDK's tests show the refusal only in a container with TTL
 * on (README.md: not confirmed for a container without TTL; refused here, the stricter choice).
 */
export function itemTtlError(item) {
  if (!item || typeof item !== "object" || Array.isArray(item) || !("ttl" in item)) return null;
  if (validTtl(item.ttl)) return null;
  return (
    `The value of ttl '${JSON.stringify(item.ttl)}' is invalid: it must be -1 or a positive ` +
    `integer of at most ${MAX_TTL_SECONDS}; leave it out to use the container's defaultTtl.`
  );
}

/** When (seconds since the epoch) an item of a container so defined expires; null: never. */
export function expiresAt(definition, item) {
  const defaultTtl = definition ? definition.defaultTtl : undefined;
  if (defaultTtl === undefined || defaultTtl === null) return null; // TTL off
  const ttl = item && "ttl" in item ? item.ttl : defaultTtl;
  if (ttl === -1 || !validTtl(ttl) || typeof item._ts !== "number") return null;
  return item._ts + ttl;
}

/** Whether an item of this container is alive at the server's current time. */
export function isVisible(collection, item) {
  const at = expiresAt(collection.read(), item);
  return at === null || at > nowSeconds();
}

// ---------------------------------------------------------------------------------------------
// Expiry index: per item store, the expiry of every item that can expire (by _rid), and a
// min-heap of [expiresAt, rid] so that finding what is due costs O(log n), not a scan. Heap
// entries whose rid was rewritten or deleted since are skipped when popped.

const indexes = new WeakMap(); // Documents -> { at: Map<rid, expiresAt>, heap: [at, rid][] }

function indexOf(documents) {
  let index = indexes.get(documents);
  if (!index) {
    index = { at: new Map(), heap: [] };
    indexes.set(documents, index);
  }
  return index;
}

function heapPush(heap, entry) {
  heap.push(entry);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (heap[parent][0] <= heap[i][0]) break;
    [heap[parent], heap[i]] = [heap[i], heap[parent]];
    i = parent;
  }
}

function heapPop(heap) {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && heap[l][0] < heap[m][0]) m = l;
      if (r < heap.length && heap[r][0] < heap[m][0]) m = r;
      if (m === i) break;
      [heap[m], heap[i]] = [heap[i], heap[m]];
      i = m;
    }
  }
  return top;
}

function track(documents, item) {
  const index = indexOf(documents);
  const at = expiresAt(documents._parent.read(), item);
  if (at === null) {
    index.at.delete(item._rid);
    return;
  }
  index.at.set(item._rid, at);
  heapPush(index.heap, [at, item._rid]);
}

/** Recomputes every item's expiry (after the container's defaultTtl changed). */
export function reindexExpiry(collection) {
  const { documents } = collection;
  indexes.delete(documents);
  for (const entry of documents._data.values()) track(documents, entry.read());
}

/** Whether some item of the container is due to expire (cheap: looks at the heap's top). */
function due(documents, now) {
  const index = indexes.get(documents);
  return Boolean(index && index.heap.length && index.heap[0][0] <= now);
}

/**
 * Deletes the container's expired items. Runs outside any write transaction (the caller holds
 * the write lock), so the deletions take no LSN and are never rolled back.
 */
export function purgeExpired(collection) {
  const { documents } = collection;
  const now = nowSeconds();
  if (!due(documents, now)) return 0;
  const index = indexOf(documents);
  let purged = 0;
  while (index.heap.length && index.heap[0][0] <= now) {
    const [at, rid] = heapPop(index.heap);
    if (index.at.get(rid) !== at) continue; // rewritten or deleted since
    const entry = documents._data.get(rid);
    index.at.delete(rid);
    if (!entry) continue;
    const item = entry.read();
    documents.delete(item.id, documents._getPartition(item));
    purged += 1;
  }
  return purged;
}

/** Whether the container may have something to purge now (to skip taking the write lock). */
export function hasDue(collection) {
  return due(collection.documents, nowSeconds());
}

/** Hooks the item store so every write updates the expiry index. Installed once. */
export function installExpiryIndex() {
  const Documents = require("@vercel/cosmosdb-server/lib/account/documents").default;
  const proto = Documents.prototype;
  if (proto._parleyTtl) return;
  const { _set: set, delete: del } = proto;
  proto._set = function trackSet(data) {
    const result = set.call(this, data);
    track(this, data);
    return result;
  };
  proto.delete = function untrackDelete(idOrRid, partition) {
    const doc = this._item("/id", idOrRid, partition).read();
    const result = del.call(this, idOrRid, partition);
    if (doc) indexOf(this).at.delete(doc._rid);
    return result;
  };
  proto._parleyTtl = true;
}

// ---------------------------------------------------------------------------------------------
// The test clock's route: `GET /_parley/clock` answers {"now": <seconds>, "offsetSeconds": n};
// `POST /_parley/clock` with {"advanceSeconds": n} (n >= 0) moves the clock forward and answers
// the same. Not a Cosmos route, so not signed; only served with --test-clock.

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

/** Answers a request to the clock route (returns false when the request is not for it). */
export function clockRoute(req) {
  const path = (req.url || "").split("?")[0].replace(/\/+$/, "");
  if (path !== CLOCK_PATH) return null;
  return async (_account, request, res) => {
    if (request.method === "POST") {
      let advance;
      try {
        advance = JSON.parse(await readBody(request)).advanceSeconds;
      } catch {
        advance = undefined;
      }
      if (typeof advance !== "number" || !Number.isFinite(advance) || advance < 0) {
        res.statusCode = 400;
        return { code: "BadRequest", message: "advanceSeconds must be a number >= 0." };
      }
      offsetMs += advance * 1000;
    } else if (request.method !== "GET") {
      res.statusCode = 405;
      return { code: "MethodNotAllowed", message: "GET or POST." };
    }
    res.statusCode = 200;
    return { now: nowSeconds(), offsetSeconds: offsetMs / 1000 };
  };
}
