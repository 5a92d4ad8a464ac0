// Query-engine patches for @zeit/cosmosdb-query (the package's query compiler), applied in-process.
// The compiled query calls its built-in functions and helpers through the module objects it is
// given ($b, $h), so replacing an export changes what every query calls.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------------------------------------
// GAP: CONTAINS, STARTSWITH and ENDSWITH take an optional third argument in Cosmos, `true` for a
// case-insensitive match (docs: "CONTAINS (NoSQL query)"). The package accepted two arguments
// only and refused the query (400 "requires 2 argument(s)").
//
// Cosmos's docs do not say how the case-insensitive match (or LOWER/UPPER) folds letters outside
// ASCII. Here both sides are lower-cased with JavaScript's locale-independent Unicode mapping,
// the same mapping the package's LOWER uses ("É" matches "é"; Turkish "İ" lower-cases to "i̇").
// Code that depends on how non-ASCII letters fold is not proven by these tests.

function fold(text) {
  return text.toLowerCase();
}

function stringMatch(name, test) {
  return (...args) => {
    if (args.length < 2 || args.length > 3) {
      const { SyntaxError } = require("@zeit/cosmosdb-query");
      throw new SyntaxError(`The ${name} function requires 2 or 3 argument(s)`);
    }
    const [text, part, ignoreCase = false] = args;
    if (typeof text !== "string" || typeof part !== "string" || typeof ignoreCase !== "boolean") {
      return undefined;
    }
    return ignoreCase ? test(fold(text), fold(part)) : test(text, part);
  };
}

function patchStringFunctions() {
  const builtins = require("@zeit/cosmosdb-query/lib/builtin-functions");
  builtins.CONTAINS = stringMatch("CONTAINS", (a, b) => a.includes(b));
  builtins.STARTSWITH = stringMatch("STARTSWITH", (a, b) => a.startsWith(b));
  builtins.ENDSWITH = stringMatch("ENDSWITH", (a, b) => a.endsWith(b));
}

// ---------------------------------------------------------------------------------------------
// GAP: continuation on an exactly full last page. Cosmos may answer a page holding exactly
// max_item_count items with a continuation token even when nothing follows; the next page is
// then empty and has no token. Code that treats "a token" as "more items exist" (or stops when a
// page is short) is wrong on Azure. The package gave a token only when more items followed; with
// `strict` on, a full page whose last item is the query's last also carries a token, positioned
// after that item (so items written later that sort after it are still returned, as in Cosmos).

const settings = { strictContinuations: true };

function getValue(doc, [key, ...keys]) {
  const value = typeof doc === "object" && doc ? doc[key] : undefined;
  return keys.length && value !== undefined ? getValue(value, keys) : value;
}

function patchPaginate() {
  const helpers = require("@zeit/cosmosdb-query/lib/helpers");
  const token = require("@zeit/cosmosdb-query/lib/continuation-token");
  const original = helpers.paginate;
  helpers.paginate = (collection, maxItemCount, continuation, getRid, ...orders) => {
    const page = original(collection, maxItemCount, continuation, getRid, ...orders);
    const fullLastPage =
      settings.strictContinuations &&
      !page.continuation &&
      maxItemCount > 0 &&
      page.result.length === maxItemCount &&
      collection.length > 0;
    if (!fullLastPage) return page;
    // The page is the collection's tail: resume after its last row. SRC counts the rows of that
    // item (a JOIN yields several) so that all of them are skipped.
    const [, last] = collection[collection.length - 1];
    const RID = getRid(last);
    let SRC = 0;
    while (SRC < collection.length && getRid(collection[collection.length - 1 - SRC][1]) === RID) {
      SRC += 1;
    }
    const previous = continuation ? token.decode(continuation.token) : null;
    const next = token.encode({
      RID,
      RT: (previous ? previous.RT : 0) + 1,
      SRC,
      TRC: (previous ? previous.TRC : 0) + maxItemCount,
      RTD: orders.length ? orders.map(([keys]) => getValue(last, keys)) : undefined,
    });
    return { ...page, continuation: { token: next, range: { min: "", max: "FF" } } };
  };
}

/** Installs the query patches (once per process). */
export function installQueryPatches({ strictContinuations = true } = {}) {
  settings.strictContinuations = strictContinuations;
  const helpers = require("@zeit/cosmosdb-query/lib/helpers");
  if (helpers._parleyPatched) return;
  patchStringFunctions();
  patchPaginate();
  helpers._parleyPatched = true;
}
