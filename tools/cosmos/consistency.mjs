// Session consistency for the local Cosmos server: log sequence numbers (LSNs), session tokens,
// and the replica-lag mode that serves reads from a snapshot behind the latest writes.
//
// Cosmos DB (Session consistency, the account default) stamps every response to an operation on
// items with `x-ms-session-token: <pkRangeId>:<version>#<globalLSN>`; the SDK keeps the highest
// token per container and partition key range and sends it back on reads, queries and batches.
// A replica answers a read only once it has caught up with the LSN in the token; a read without
// a token may be answered by a replica that is behind. This module keeps, per container:
//   - the LSN of its latest write (one LSN per committed write request: a batch is one write);
//   - the recent writes, each with the items it changed as they were before it ("befores"),
//     so that the state at an earlier LSN can be rebuilt for a lagging read.
// LSNs come from one account-wide counter (Cosmos: per partition), so a token is never ahead of
// a container that was deleted and created again under the same name; only their order matters.
//
// Writes are captured by hooking the package's Documents#_set and Documents#delete while a write
// transaction is open; at most one write transaction runs at a time (writeLock), which is how a
// Cosmos partition serializes its writes and keeps the capture free of interleaving.

import { createRequire } from "node:module";

import { isVisible } from "./ttl.mjs";

const require = createRequire(import.meta.url);

/** The only partition key range of every container here (Cosmos: one per physical partition). */
export const PK_RANGE_ID = "0";
/** Version segment of a single-region account's vector session token. */
const TOKEN_VERSION = -1;

let lastLsn = 0;
const logs = new WeakMap(); // Collection (package object) -> WriteLog
let capture = null; // the open write transaction, if any
// Collection -> number of changes to its items so far, and its live items in _rid order as of
// some change count: a query reuses the sorted list until the next change.
const changes = new WeakMap();
const sortedLive = new WeakMap();
// Items (the package's item store) -> partition key -> { rids, sorted }: the _rids of
// the live items of each logical partition, kept by the write hooks. A query that names its
// partition reads only that partition, as in Cosmos, where its cost does not grow with the
// container; `sorted` caches the partition's items in _rid order until its next change.
const partitions = new WeakMap();

/** One string per partition key value; `undefined` (the item has no such field) is its own. */
function partitionKey(value) {
  return value === undefined ? "u" : `j${JSON.stringify(value)}`;
}

function partitionEntry(documents, value) {
  let byKey = partitions.get(documents);
  if (!byKey) {
    byKey = new Map();
    partitions.set(documents, byKey);
  }
  const key = partitionKey(value);
  let entry = byKey.get(key);
  if (!entry) {
    entry = { rids: new Set(), sorted: null };
    byKey.set(key, entry);
  }
  return entry;
}

/** The live items of one logical partition in _rid order (shared: do not modify). */
export function livePartition(documents, value) {
  const entry = partitionEntry(documents, value);
  if (!entry.sorted) {
    entry.sorted = [...entry.rids].map((rid) => documents._data.get(rid).read()).sort(byRid);
  }
  return entry.sorted;
}

/** `0:-1#42`, as Cosmos answers for partition key range 0 at LSN 42. */
export function formatSessionToken(lsn) {
  return `${PK_RANGE_ID}:${TOKEN_VERSION}#${lsn}`;
}

/**
 * Reads the request's x-ms-session-token. The SDK sends `<range>:<vector>` pairs joined by
 * commas (`0:-1#42`, or `0:-1#42#1=40` in multi-region accounts); a legacy token is
 * `<range>:<lsn>`.
 * Returns { lsn } (lsn null when no token applies to range 0) or { invalid: true }: Cosmos
 * refuses a token it cannot parse with 400.
 */
export function parseSessionToken(header) {
  const raw = Array.isArray(header) ? header[0] : header;
  if (raw === undefined || raw === "") return { lsn: null };
  let lsn = null;
  for (const pair of String(raw).split(",")) {
    const colon = pair.indexOf(":");
    if (colon <= 0) return { invalid: true };
    const range = pair.slice(0, colon).trim();
    const segments = pair.slice(colon + 1).split("#");
    let value;
    if (segments.length === 1) {
      value = segments[0];
    } else if (/^-?\d+$/.test(segments[0])) {
      [, value] = segments;
    } else {
      return { invalid: true };
    }
    if (!/^\d+$/.test(value ?? "")) return { invalid: true };
    if (range === PK_RANGE_ID) lsn = Math.max(lsn ?? 0, Number(value));
  }
  return { lsn };
}

function keyOf(documents, id, partition) {
  return documents._getId("/id", id, partition);
}

/**
 * The recent writes of one container. `entries` holds only the writes that a lagging read may
 * still have to hide (the last `lagWrites`, and those younger than `lagMs`), oldest first, so
 * history stays bounded.
 */
class WriteLog {
  constructor(collection, options) {
    this.collection = collection;
    this.options = options;
    this.latest = lastLsn;
    this.entries = [];
  }

  prune(now) {
    const { lagWrites, lagMs } = this.options;
    const keepFrom = Math.max(0, this.entries.length - lagWrites);
    let drop = 0;
    while (drop < keepFrom && !(lagMs > 0 && now - this.entries[drop].at < lagMs)) drop += 1;
    if (drop) this.entries.splice(0, drop);
  }

  commit(befores, now) {
    lastLsn += 1;
    this.latest = lastLsn;
    if (this.options.lagWrites > 0 || this.options.lagMs > 0) {
      this.entries.push({ lsn: lastLsn, at: now, befores });
      this.prune(now);
    }
    return lastLsn;
  }

  /**
   * The state a read is served from: the latest, or (replica lag) the state just before the
   * oldest retained write the read's token does not cover. A replica never serves a state older
   * than the token it was given.
   */
  view(tokenLsn, now) {
    this.prune(now);
    const floor = tokenLsn ?? -1;
    const hidden = this.entries.filter((entry) => entry.lsn > floor);
    if (hidden.length === 0) {
      return new View(this.collection, Math.max(this.latest, tokenLsn ?? 0), []);
    }
    return new View(this.collection, hidden[0].lsn - 1, hidden);
  }
}

/** Items of a container as of one LSN: the live items with the hidden writes undone. */
class View {
  constructor(collection, lsn, hidden) {
    this.collection = collection;
    this.lsn = lsn;
    this.hidden = hidden;
  }

  get lagging() {
    return this.hidden.length > 0;
  }

  /** The item stored under (partition, id) in this view, or undefined. */
  get(partition, id) {
    const { documents } = this.collection;
    const key = keyOf(documents, id, partition);
    for (const entry of this.hidden) {
      const before = entry.befores.get(key);
      // a replica never shows an item whose time to live has passed (ttl.mjs)
      if (before) {
        const { doc } = before;
        return doc && isVisible(this.collection, doc) ? doc : undefined;
      }
    }
    return documents._item("/id", id, partition).read() ?? undefined;
  }

  /**
   * Every item in this view, in _rid order (the order in which Cosmos pages without ORDER BY).
   * The array is shared between queries: do not modify it.
   */
  items() {
    const { collection } = this;
    const { documents } = collection;
    const version = changes.get(collection) ?? 0;
    if (!this.lagging) {
      const cached = sortedLive.get(collection);
      if (cached && cached.version === version) return cached.items;
    }
    const live = [...documents._data.values()].map((entry) => entry.read());
    if (!this.lagging) {
      const items = live.sort(byRid);
      sortedLive.set(collection, { version, items });
      return items;
    }
    const byKey = new Map(
      live.map((doc) => [keyOf(documents, doc.id, documents._getPartition(doc)), doc]),
    );
    // Undo the hidden writes newest first, so the oldest "before" of each item wins.
    for (let i = this.hidden.length - 1; i >= 0; i -= 1) {
      for (const [key, { doc }] of this.hidden[i].befores) {
        if (doc) byKey.set(key, doc);
        else byKey.delete(key);
      }
    }
    return [...byKey.values()].filter((doc) => isVisible(collection, doc)).sort(byRid);
  }

  /**
   * The items of the logical partition whose key is `value` (`undefined`: the items without
   * the field), in _rid order: read from the partition's index, never from the whole container.
   */
  partitionItems(value) {
    const { documents } = this.collection;
    const live = livePartition(documents, value);
    if (!this.lagging) return live;
    const wanted = partitionKey(value);
    const inPartition = (doc) => partitionKey(documents._getPartition(doc)) === wanted;
    const byKey = new Map(
      live.map((doc) => [keyOf(documents, doc.id, documents._getPartition(doc)), doc]),
    );
    for (let i = this.hidden.length - 1; i >= 0; i -= 1) {
      for (const [key, { doc }] of this.hidden[i].befores) {
        if (doc && inPartition(doc)) byKey.set(key, doc);
        else if (!doc) byKey.delete(key);
      }
    }
    return [...byKey.values()].filter((doc) => isVisible(this.collection, doc)).sort(byRid);
  }
}

function byRid(a, b) {
  if (a._rid === b._rid) return 0;
  return a._rid < b._rid ? -1 : 1;
}

/** One mutex for all writes: requests queue here, in arrival order. */
class Lock {
  constructor() {
    this.tail = Promise.resolve();
  }

  async run(fn) {
    const previous = this.tail;
    let release;
    this.tail = new Promise((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * A write request in progress on one container: records the state of every item it touches
 * before the first touch; commits them as one LSN, or puts them back.
 */
class WriteTransaction {
  constructor(log) {
    this.log = log;
    this.befores = new Map(); // key -> { partition, id, doc }
  }

  remember(documents, id, partition) {
    const key = keyOf(documents, id, partition);
    if (!this.befores.has(key)) {
      const doc = documents._item("/id", id, partition).read();
      this.befores.set(key, { partition, id, doc: doc ?? null });
    }
  }

  get changed() {
    return this.befores.size > 0;
  }

  /** Restores every touched item as it was (for a write refused after it ran, e.g. 429). */
  rollback() {
    const { documents } = this.log.collection;
    for (const { partition, id, doc } of this.befores.values()) {
      if (documents._item("/id", id, partition).read()) documents.delete(id, partition);
      if (doc) documents._set(doc);
    }
    this.befores.clear();
  }
}

/**
 * Session state of the whole account. `lagWrites`/`lagMs` > 0 turn on the replica-lag mode;
 * `now` is the clock (milliseconds) used for `lagMs`.
 */
export class Consistency {
  constructor({ lagWrites = 0, lagMs = 0, now = () => performance.now() } = {}) {
    this.options = { lagWrites, lagMs };
    this.now = now;
    this.writeLock = new Lock();
  }

  log(collection) {
    let log = logs.get(collection);
    if (!log) {
      log = new WriteLog(collection, this.options);
      logs.set(collection, log);
    }
    return log;
  }

  /** The view a read with this token is served from. */
  view(collection, tokenLsn) {
    return this.log(collection).view(tokenLsn, this.now());
  }

  /** The LSN a response about this container reports when it served the latest state. */
  latest(collection) {
    return this.log(collection).latest;
  }

  /**
   * Runs `fn(tx)` as the only write in progress; `fn` resolves to { ok, ... }. Then
   * `admit(result, tx)` decides whether the request is let through (throttling). A write that
   * failed or was not admitted is undone; one that succeeded and changed something gets the
   * next LSN. Resolves to { result, lsn, admitted }, lsn being the container's LSN afterwards.
   */
  async write(collection, fn, admit = () => true) {
    return this.writeLock.run(async () => {
      const tx = new WriteTransaction(this.log(collection));
      capture = tx;
      let result;
      try {
        result = await fn(tx);
      } catch (err) {
        capture = null;
        tx.rollback();
        throw err;
      } finally {
        capture = null;
      }
      const admitted = admit(result, tx);
      if (!admitted || !result.ok) {
        tx.rollback();
        return { result, lsn: this.latest(collection), admitted };
      }
      const lsn = tx.changed ? tx.log.commit(tx.befores, this.now()) : this.latest(collection);
      return { result, lsn, admitted };
    });
  }
}

/**
 * Hooks the package's item store so an open write transaction sees every change, every change
 * (in a transaction or not) invalidates the container's sorted item list, and each logical
 * partition's index follows its items. Installed once.
 */
export function installWriteCapture() {
  const Documents = require("@vercel/cosmosdb-server/lib/account/documents").default;
  const proto = Documents.prototype;
  if (proto._parleyCaptured) return;
  const { _set: set, delete: del } = proto;
  const changed = (collection) => changes.set(collection, (changes.get(collection) ?? 0) + 1);
  const indexed = (documents, doc, apply) => {
    const entry = partitionEntry(documents, documents._getPartition(doc));
    apply(entry.rids, doc._rid);
    entry.sorted = null;
  };
  proto._set = function captureSet(data) {
    changed(this._parent);
    if (capture && capture.log.collection === this._parent) {
      capture.remember(this, data.id, this._getPartition(data));
    }
    const result = set.call(this, data);
    indexed(this, data, (rids, rid) => rids.add(rid));
    return result;
  };
  proto.delete = function captureDelete(idOrRid, partition) {
    changed(this._parent);
    const doc = this._item("/id", idOrRid, partition).read();
    if (doc && capture && capture.log.collection === this._parent) {
      capture.remember(this, doc.id, partition);
    }
    const result = del.call(this, idOrRid, partition);
    if (doc) indexed(this, doc, (rids, rid) => rids.delete(rid));
    return result;
  };
  proto._parleyCaptured = true;
}
