// Request charges (an estimate) and throttling for the local Cosmos server.
//
// Cosmos DB charges every operation in request units (RU) and answers 429 when a container's
// provisioned RU/s are used up. The charges here are a size-based ESTIMATE, not Cosmos's
// accounting (which also depends on indexing, the number of properties, query plans...). They
// are anchored on Azure's published figures (docs: "Request Units in Azure Cosmos DB" and
// "Optimize request cost"): a point read of a 1 KB item costs 1 RU, of 4 KB ~1.3 RU, of 64 KB
// ~10 RU (100 KB: 10 RU); a write of a 1 KB item ~5 RU, of 4 KB ~7 RU, of 64 KB ~48 RU.
//
//   KB(item)    = max(1, bytes / 1024), bytes = the item's JSON with non-ASCII escaped
//   point read  = 1 + 0.14 * (KB - 1)                          (404: 1)
//   write       = 5 + 0.68 * (KB - 1)   create, upsert, replace, patch: the item written;
//                                       delete: the item removed     (failed write: 1)
//   query/feed  = 2.5 + 0.02 * items examined + 0.14 * KB returned
//                 (items examined: those the index serves, else every item in the
//                 partition, or container, queried: index-cost.mjs)
//   batch       = the sum of its operations, as above
//   partition-key delete = 10 (Cosmos deletes in the background, from spare throughput)
//   anything else (account, databases, containers, pkranges) = 1, and never throttled
//
// Throttling (off unless ruPerSecond > 0): one token bucket shared by every item operation in the
// account, holding at most one second of RU and refilled continuously. A request is answered
// once its charge is known; if the bucket cannot pay it, the request is undone and answered 429
// with x-ms-retry-after-ms (the time until the bucket holds the charge), x-ms-substatus 3200 and
// a Cosmos-shaped error body. A request costing more than a full bucket is let through when the
// bucket is full (it would otherwise never pass), and leaves the bucket in debt.

const KB = 1024;

/** Bytes of a value's JSON as the Python SDK sends it by default: non-ASCII as \uXXXX. */
export function escapedJsonBytes(value) {
  const text = JSON.stringify(value);
  if (text === undefined) return 0;
  let extra = 0;
  for (let i = 0; i < text.length; i += 1) {
    if (text.charCodeAt(i) > 0x7f) extra += 5; // one UTF-16 unit -> "\uXXXX" (6 bytes)
  }
  return text.length + extra;
}

/** Bytes of a value's JSON in UTF-8, as a client that does not escape would send it. */
export function utf8JsonBytes(value) {
  return Buffer.byteLength(JSON.stringify(value) ?? "", "utf8");
}

function kilobytes(bytes) {
  return Math.max(1, bytes / KB);
}

export function pointReadCharge(item) {
  return item ? 1 + 0.14 * (kilobytes(escapedJsonBytes(item)) - 1) : 1;
}

export function writeCharge(item) {
  return item ? 5 + 0.68 * (kilobytes(escapedJsonBytes(item)) - 1) : 1;
}

export function queryCharge(examined, returnedBytes) {
  return 2.5 + 0.02 * examined + 0.14 * (returnedBytes / KB);
}

export const PARTITION_DELETE_CHARGE = 10;

/** Cosmos reports charges with up to two decimals, e.g. "5.71" or "1". */
export function formatCharge(charge) {
  return String(Math.round(charge * 100) / 100);
}

/** A token bucket of `ruPerSecond` RU, refilled continuously; `now()` is in milliseconds. */
export class TokenBucket {
  constructor(ruPerSecond, now = () => performance.now()) {
    this.rate = ruPerSecond;
    this.capacity = ruPerSecond;
    this.now = now;
    this.available = ruPerSecond;
    this.at = now();
  }

  refill() {
    const t = this.now();
    this.available = Math.min(this.capacity, this.available + ((t - this.at) / 1000) * this.rate);
    this.at = t;
  }

  /**
   * Takes `charge` RU if the bucket can pay it (or is full); otherwise takes nothing and returns
   * the milliseconds until it could.
   */
  take(charge) {
    this.refill();
    if (charge <= this.available || this.available >= this.capacity) {
      this.available -= charge;
      return { ok: true };
    }
    const missing = Math.min(charge, this.capacity) - this.available;
    return { ok: false, retryAfterMs: Math.max(1, Math.ceil((missing / this.rate) * 1000)) };
  }
}

/** The body Cosmos sends with 429 (substatus 3200: the provisioned RU/s are used up). */
export function tooManyRequestsBody() {
  return {
    code: "TooManyRequests",
    message:
      "Message: {\"Errors\":[\"Request rate is large. More Request Units may be needed, so no " +
      "changes were made. Please retry this request later. Learn more: " +
      "http://aka.ms/cosmosdb-error-429\"]}",
  };
}
