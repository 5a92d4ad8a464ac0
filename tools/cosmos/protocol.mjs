// Protocol details of Cosmos DB for NoSQL that the package did not follow, found with the SDK's
// own tests (tests/tools/cosmos/sdk): each helper is hooked in by fidelity.mjs where noted.

import { randomUUID } from "node:crypto";

/** Cosmos excludes `_etag` from every indexing policy it stores (the SDK's test_crud_container). */
export const ETAG_EXCLUDED_PATH = '/"_etag"/?';

/**
 * The indexing policy as Cosmos stores it (container create and replace): `automatic` true and
 * mode consistent unless given, `/*` included when no path is, the legacy per-path `indexes`
 * (precision, kinds) dropped, and `/"_etag"/?` excluded. Checked by the SDK's
 * test_create_default_indexing_policy and test_collection_indexing_policy.
 */
export function normalizeIndexingPolicy(policy) {
  const given = policy && typeof policy === "object" && !Array.isArray(policy) ? policy : {};
  const included = Array.isArray(given.includedPaths) ? given.includedPaths : [];
  const excluded = Array.isArray(given.excludedPaths) ? given.excludedPaths : [];
  const stripIndexes = (path) => {
    if (!path || typeof path !== "object") return path;
    const { indexes: _legacy, ...rest } = path;
    return rest;
  };
  return {
    ...given,
    indexingMode: given.indexingMode ?? "consistent",
    automatic: given.automatic ?? true,
    includedPaths: included.length ? included.map(stripIndexes) : [{ path: "/*" }],
    excludedPaths: excluded.some((p) => p && p.path === ETAG_EXCLUDED_PATH)
      ? excluded.map(stripIndexes)
      : [...excluded.map(stripIndexes), { path: ETAG_EXCLUDED_PATH }],
  };
}

/**
 * The resource link a request addressed by resource ids (`_self`, e.g.
 * `dbs/<rid>/colls/<rid>/docs/<rid>`) is signed with: the SDK signs the lower-cased id of the
 * resource (of the parent, for a feed), not the path (the SDK's azure.cosmos.auth). Null when
 * the path has no resource id to sign.
 */
export function ridLink(segments) {
  const n = segments.length;
  if (n === 0) return null;
  return (n % 2 === 0 ? segments[n - 1] : segments[n - 2] ?? "").toLowerCase();
}

/** Whether the client asked for no body on a write (the SDK's no_response=True). */
export function wantsMinimalResponse(req) {
  const prefer = req.headers.prefer;
  return typeof prefer === "string" && /(^|;|,)\s*return=minimal\s*($|;|,)/i.test(prefer);
}

/**
 * A patch's filter predicate (`from <alias> where <condition>`) against the item: true, false, or
 * { error } when it cannot be parsed. Any alias works, as in Cosmos (the package understood only
 * `c`, answering 400 for `from root where root.x = 1`), and the condition keeps its case (the
 * package lower-cased it, string literals included).
 */
export function patchConditionHolds(documents, item, condition) {
  const match = /^\s*from\s+([A-Za-z_][\w]*)\s+where\s+([\s\S]+)$/i.exec(String(condition));
  if (!match) return { error: "The filter predicate must be FROM <alias> WHERE <condition>." };
  const [, alias, where] = match;
  try {
    const query = documents._getQuery(`SELECT VALUE 1 FROM ${alias} WHERE ${where}`);
    return query.exec([item], {}).result.length > 0;
  } catch (err) {
    return { error: `Invalid filter predicate: ${err.message}` };
  }
}

/**
 * A replace whose body names another id than the item's: Cosmos renames the item (the SDK's
 * test_headers and test_session replace an item with a body of a new id and expect success; the
 * package refused it). The item keeps its `_rid`; a body id already taken in the partition is
 * 409; a stale If-Match is 412. Returns { statusCode, body }.
 */
export function renameItem(documents, current, partition, body, ifMatch) {
  if (ifMatch && ifMatch !== "*" && ifMatch !== current._etag) {
    return { statusCode: 412, body: { code: "PreconditionFailed" } };
  }
  if (documents._item("/id", body.id, partition).read()) {
    return {
      statusCode: 409,
      body: { code: "Conflict", message: "Entity with the specified id already exists." },
    };
  }
  documents.delete(current.id, partition);
  const stored = {
    ...body,
    id: body.id,
    _etag: randomUUID(),
    _rid: current._rid,
    _self: current._self,
    _ts: Math.floor(Date.now() / 1000),
  };
  documents._set(stored);
  return { statusCode: 200, body: stored };
}
