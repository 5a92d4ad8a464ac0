// Full-text search for the local Cosmos server (Azure: "Full text search in Azure Cosmos DB for
// NoSQL", "FullTextContains", "FullTextContainsAll", "FullTextContainsAny", "FullTextScore",
// "ORDER BY RANK", "RRF"): the container's full-text policy and index are checked when it is
// created or replaced, the functions are built-ins of the query engine, and `ORDER BY RANK` is
// answered by ranking the items before the rest of the query runs over them.
//
// What is modelled, and what is not (README.md):
//   - text is tokenized into lower-case runs of letters and digits, each stemmed as English by
//     Martin Porter's algorithm (the npm `stemmer` package, pinned; on a word's UTF-8 bytes, as
//     SQLite's FTS5 `porter` does): "run" finds "running" and "runs", as Azure's en-US index
//     does ("stemming, stop word removal and tokenization"). A term matches a token with the
//     same stem. Accents are NOT folded ("cafe" does not find "café"): Azure's documentation
//     names stemming and stop words, never accents, so nothing may rely on it (Parley indexes
//     folded copies itself). Stop words are not dropped here. A multi-word term here needs
//     every one of its words (not as a phrase);
//   - FullTextScore is BM25 (k1 1.2, b 0.75) over the items the query reads (its partition, or
//     the container). Azure's exact scores cannot be reproduced (its statistics are per
//     physical partition and its analyzer differs), so only the order of clear cases means
//     anything; items without any term score 0 and come last;
//   - RRF(a, b, ...) fuses the ranks of its FullTextScore arguments: sum of 1 / (60 + rank), an
//     item without the terms of one argument getting nothing from it (the constant is the RRF
//     paper's; Azure's is not documented). VectorDistance is not modelled (400);
//   - request charge: a query using the full-text functions is charged as an index lookup, for
//     the items holding one of its terms, not for every item of the partition (fidelity.mjs).

import { createRequire } from "node:module";

import { stemmer } from "stemmer";

import { splitTopLevel } from "./query-language.mjs";

const require = createRequire(import.meta.url);

/** The languages Azure's full-text policy accepts (the SDK's test_full_text_policy.py). */
export const LANGUAGES = new Set(["en-US", "fr-FR", "de-DE", "it-IT", "pt-BR", "pt-PT", "es-ES"]);
const FUNCTION = /\bFullText(?:Contains(?:All|Any)?|Score)\s*\(/i;
const RRF_K = 60;
const RANK_PROPERTY = "__parleyRank";

// ---------------------------------------------------------------------------------------------
// Policy and index checks (container create and replace): 400 with the reason, or null.

function validPath(path) {
  return typeof path === "string" && /^\/[^/]/.test(path);
}

export function fullTextPolicyError(definition) {
  if (!definition || typeof definition !== "object") return null;
  const policy = definition.fullTextPolicy;
  const indexes = (definition.indexingPolicy || {}).fullTextIndexes;
  const paths = new Set();
  if (policy !== undefined && policy !== null) {
    if (typeof policy !== "object" || Array.isArray(policy)) {
      return "The Full Text Policy is invalid.";
    }
    if (policy.defaultLanguage !== undefined && !LANGUAGES.has(policy.defaultLanguage)) {
      return `The Full Text Policy contains an unsupported language: ${policy.defaultLanguage}`;
    }
    for (const entry of policy.fullTextPaths || []) {
      if (!entry || !validPath(entry.path)) {
        return `The Full Text Policy contains an invalid Path: ${entry && entry.path}`;
      }
      if (entry.language !== undefined && !LANGUAGES.has(entry.language)) {
        return `The Full Text Policy contains an unsupported language: ${entry.language}`;
      }
      paths.add(entry.path);
    }
  }
  if (indexes !== undefined) {
    if (!Array.isArray(indexes)) return "The full-text indexes of the indexing policy are invalid.";
    for (const index of indexes) {
      if (!index || typeof index !== "object" || !("path" in index)) {
        return "A full-text index of the indexing policy has no path.";
      }
      if (!validPath(index.path)) {
        return `The indexing policy contains an invalid full-text index path: ${index.path}`;
      }
      if (!paths.has(index.path)) {
        return `The full-text index path ${index.path} is not in the container's Full Text Policy.`;
      }
    }
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Matching.

// FTS5's porter tokenizer leaves tokens under 3 or over 64 bytes as they are.
const STEM_MIN_BYTES = 3;
const STEM_MAX_BYTES = 64;
const HIGH_BYTE = 0xe000; // a UTF-8 byte above 127 as a private-use character: a consonant
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A word's stem: Porter's algorithm over its UTF-8 bytes (shared/stemming.py does the same). */
export function stemWord(word) {
  const bytes = Buffer.from(word, "utf8");
  if (bytes.length < STEM_MIN_BYTES || bytes.length > STEM_MAX_BYTES) return word;
  const mapped = String.fromCharCode(...[...bytes].map((b) => (b < 128 ? b : HIGH_BYTE + b)));
  const stemmed = stemmer(mapped);
  const out = Buffer.from([...stemmed].map((c) => c.charCodeAt(0) % HIGH_BYTE));
  try {
    return utf8.decode(out);
  } catch {
    return word; // a step split a character's bytes (never for real words)
  }
}

// Every query evaluates the functions on every item it reads, so stems and a text's tokens are
// remembered (bounded: a full cache is emptied) rather than computed again per item and query.
const CACHE_ENTRIES = 200000;
const stems = new Map();
const textTokens = new Map();

function remember(cache, key, compute) {
  let value = cache.get(key);
  if (value === undefined) {
    if (cache.size >= CACHE_ENTRIES) cache.clear();
    value = compute(key);
    cache.set(key, value);
  }
  return value;
}

function tokens(text) {
  if (typeof text !== "string") return [];
  return remember(textTokens, text, (t) =>
    (t.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []).map((w) => remember(stems, w, stemWord)),
  );
}

function containsTerm(textTokens, term) {
  const words = tokens(term);
  return words.length > 0 && words.every((w) => textTokens.has(w));
}

const tokenSets = new Map();

function tokenSet(text) {
  return typeof text === "string" ? remember(tokenSets, text, (t) => new Set(tokens(t))) : new Set();
}

function containsAll(text, terms) {
  const have = tokenSet(text);
  return terms.every((t) => containsTerm(have, t));
}

function containsAny(text, terms) {
  const have = tokenSet(text);
  return terms.some((t) => containsTerm(have, t));
}

/** Installs FullTextContains / All / Any (and FullTextScore outside ORDER BY RANK: 400). */
export function installFullTextFunctions() {
  const builtins = require("@zeit/cosmosdb-query/lib/builtin-functions");
  if (builtins.FULLTEXTCONTAINS) return;
  const { SyntaxError } = require("@zeit/cosmosdb-query");
  const strings = (name, min, args) => {
    if (args.length < min) throw new SyntaxError(`The ${name} function requires more arguments`);
    return args.slice(1).every((a) => typeof a === "string");
  };
  builtins.FULLTEXTCONTAINS = (...args) => {
    if (args.length !== 2) throw new SyntaxError("The FullTextContains function takes 2 arguments");
    return strings("FullTextContains", 2, args) && containsAll(args[0], [args[1]]);
  };
  builtins.FULLTEXTCONTAINSALL = (...args) =>
    strings("FullTextContainsAll", 2, args) && containsAll(args[0], args.slice(1));
  builtins.FULLTEXTCONTAINSANY = (...args) =>
    strings("FullTextContainsAny", 2, args) && containsAny(args[0], args.slice(1));
  builtins.FULLTEXTSCORE = () => {
    throw new SyntaxError("FullTextScore can only be used in an ORDER BY RANK clause.");
  };
  builtins.RRF = () => {
    throw new SyntaxError("RRF can only be used in an ORDER BY RANK clause.");
  };
}

// ---------------------------------------------------------------------------------------------
// ORDER BY RANK: FullTextScore(<path>, 'term', ...) or RRF(FullTextScore(...), ...).

/** A property path (`c.a.b`, `c["a"]`) as the keys below the alias, or null. */
function pathKeys(expr) {
  const m = /^\s*[A-Za-z_]\w*((?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*"[^"]*"\s*\]|\s*\[\s*'[^']*'\s*\])+)\s*$/.exec(
    expr,
  );
  if (!m) return null;
  return [...m[1].matchAll(/\.\s*([A-Za-z_]\w*)|\[\s*["']([^"']*)["']\s*\]/g)].map(
    (x) => x[1] ?? x[2],
  );
}

function valueAt(item, keys) {
  return keys.reduce((v, k) => (v && typeof v === "object" ? v[k] : undefined), item);
}

/** Splits a call's arguments at top-level commas. */
function call(expr) {
  const m = /^\s*(\w+)\s*\(([\s\S]*)\)\s*$/.exec(expr);
  return m ? { name: m[1].toUpperCase(), args: splitTopLevel(m[2]) } : null;
}

function literal(arg, parameters) {
  const m = /^'((?:[^'\\]|\\.)*)'$|^"((?:[^"\\]|\\.)*)"$/.exec(arg);
  if (m) return m[1] ?? m[2];
  const p = (parameters || []).find((x) => x && x.name === arg);
  return p && typeof p.value === "string" ? p.value : undefined;
}

function scorer(expr, parameters) {
  const c = call(expr);
  if (!c || c.name !== "FULLTEXTSCORE" || c.args.length < 2) return null;
  const keys = pathKeys(c.args[0]);
  const terms = c.args.slice(1).map((a) => literal(a, parameters));
  if (!keys || terms.some((t) => t === undefined)) return null;
  return { keys, words: terms.flatMap(tokens) };
}

/** BM25 scores of `items` for one FullTextScore. */
function bm25(items, { keys, words }) {
  const docs = items.map((item) => tokens(valueAt(item, keys)));
  const n = docs.length || 1;
  const avg = docs.reduce((s, d) => s + d.length, 0) / n || 1;
  const df = new Map(words.map((w) => [w, docs.filter((d) => d.includes(w)).length]));
  return docs.map((doc) =>
    words.reduce((score, w) => {
      const tf = doc.filter((t) => t === w).length;
      if (!tf) return score;
      const idf = Math.log(1 + (n - df.get(w) + 0.5) / (df.get(w) + 0.5));
      return score + (idf * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * doc.length) / avg));
    }, 0),
  );
}

/** 1-based ranks by score; an item without any of the terms is not ranked (Infinity). */
function ranks(scores) {
  const order = scores.map((s, i) => [s, i]).sort((a, b) => b[0] - a[0]);
  const rank = new Array(scores.length).fill(Infinity);
  order.forEach(([s, i], r) => {
    if (s > 0) rank[i] = r + 1;
  });
  return rank;
}

/**
 * Takes `ORDER BY RANK <expr>` off the end of `sql` and orders `items` by it (best first, then by
 * _rid). Returns { sql, items, terms } (unchanged when there is no ORDER BY RANK) or { error }.
 */
export function rankItems(sql, items, parameters) {
  const m = /\bORDER\s+BY\s+RANK\s+([\s\S]+)$/i.exec(sql);
  if (!m) return { sql, items };
  const expr = m[1].trim();
  const top = call(expr);
  let parts;
  if (top && top.name === "RRF") parts = top.args.map((a) => scorer(a, parameters));
  else parts = [scorer(expr, parameters)];
  if (!parts.length || parts.some((p) => !p)) {
    return {
      error:
        "ORDER BY RANK takes FullTextScore(<path>, <terms>...) or RRF of FullTextScore calls " +
        "(VectorDistance is not modelled by the local server).",
    };
  }
  let score;
  if (top && top.name === "RRF") {
    const fused = new Array(items.length).fill(0);
    for (const part of parts) {
      ranks(bm25(items, part)).forEach((r, i) => {
        fused[i] += 1 / (RRF_K + r);
      });
    }
    score = fused;
  } else {
    score = bm25(items, parts[0]);
  }
  // The package orders rows without ORDER BY by _rid, so the rank becomes a property of copies
  // of the items and a plain ORDER BY on it; RANK_PROPERTY is taken off the results.
  const position = new Array(items.length);
  items
    .map((_, i) => [score[i], i])
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .forEach(([, i], rank) => {
      position[i] = rank;
    });
  const ranked = items.map((item, i) => ({ ...item, [RANK_PROPERTY]: position[i] }));
  const alias = fromAlias(sql);
  if (!alias) return { error: "ORDER BY RANK needs a query over one container alias." };
  return { sql: `${sql.slice(0, m.index)} ORDER BY ${alias}.${RANK_PROPERTY}`, items: ranked };
}

/** The alias of `FROM c`, `FROM root r`, `FROM root AS r`. */
function fromAlias(sql) {
  const m = /\bFROM\s+([A-Za-z_]\w*)(?:\s+(?:AS\s+)?([A-Za-z_]\w*))?/i.exec(sql);
  if (!m) return null;
  const keyword = /^(WHERE|JOIN|ORDER|GROUP|OFFSET|IN)$/i;
  return m[2] && !keyword.test(m[2]) ? m[2] : m[1];
}

/** Takes the rank property off result rows (a `SELECT *` returns the ranked copies). */
export function withoutRank(rows) {
  for (const row of rows) {
    if (row && typeof row === "object" && RANK_PROPERTY in row) delete row[RANK_PROPERTY];
  }
  return rows;
}

/** Whether a query uses the full-text functions (so it reads the full-text index). */
export function usesFullText(sql) {
  return FUNCTION.test(sql);
}

/**
 * The items an index lookup for this query reads: those holding one of the terms of its
 * full-text calls in the path each call names (an item is counted once). An estimate for the
 * request charge.
 */
export function indexLookupCount(sql, items) {
  const lookups = [];
  for (const m of sql.matchAll(/FullText\w*\s*\(([^)]*)\)/gi)) {
    const [path, ...terms] = splitTopLevel(m[1]);
    const keys = pathKeys(path || "");
    const words = new Set();
    for (const term of terms) {
      const lit = /^\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*$/.exec(term);
      if (lit) for (const w of tokens(lit[1] ?? lit[2])) words.add(w);
    }
    if (keys && words.size) lookups.push({ keys, words });
  }
  if (!lookups.length) return 0;
  return items.filter((item) =>
    lookups.some(({ keys, words }) => {
      const value = valueAt(item, keys);
      return typeof value === "string" && tokens(value).some((t) => words.has(t));
    }),
  ).length;
}
