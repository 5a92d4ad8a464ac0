// Query-language features of Cosmos DB for NoSQL that the package's parser lacked, added around
// it (fidelity.mjs: queryDocuments / queryCollection call planQuery and finishQuery):
//   - a property whose name starts with a keyword (`c.value1`, `c.orderId`, `c.description`,
//     `c.notes`): the package's grammar refused any identifier beginning with one of its
//     keywords, so `.name` is rewritten to `["name"]` (same meaning) outside string literals,
//     and a parameter `@value` to `@parley_value`. A property named exactly like a keyword
//     (`c.value`) is left to the parser (400): the SDK's tests write `c["value"]`, and whether
//     Azure accepts `c.value` is not confirmed;
//   - `SELECT DISTINCT ...`: the query runs without DISTINCT, then repeated rows (equal JSON,
//     whatever the order of an object's properties) are dropped, first occurrence kept;
//   - `... OFFSET n LIMIT m` (numbers or @parameters) at the end: the query runs without it,
//     then rows n..n+m are kept (docs: "OFFSET LIMIT (NoSQL query)");
//   - `SELECT VALUE MAX|MIN|AVG(...)` over no item in a cross-partition query: `[null]`, what the
//     SDK answers on Azure (its test_value_max_query); the server answered `[]`. Not confirmed for
//     a single-partition query (Azure's gateway may answer `[]` there), so left as it was;
//   - an aggregate without VALUE (`SELECT COUNT(1) FROM c`) in a cross-partition query: 400, as
//     the SDK's test_unsupported_queries expects ("Cross partition query only supports 'VALUE
//     <AggregateFunc>' for aggregates"; the wording is not confirmed). With a partition key it
//     runs, returning [{"$1": n}], as the package did.
//   - GROUP BY (groupRows, below).
// DISTINCT, OFFSET...LIMIT and GROUP BY need every row before a page is cut: such a query is
// answered from its whole result, paged here with a continuation token of our own
// (`{"parleyOffset": n}`).

const AGGREGATE = /\b(COUNT|SUM|MIN|MAX|AVG)\s*\(/i;
// The keywords the package's grammar will not let an identifier start with (found by trying).
const KEYWORDS =
  "value|select|top|order|in|by|from|not|and|as|or|where|join|between|true|false|null|asc|" +
  "desc|exists|array|udf";
const KEYWORD_PREFIX = new RegExp(`^(${KEYWORDS})`, "i");
const KEYWORD = new RegExp(`^(${KEYWORDS})$`, "i");

/** Splits SQL into code and string-literal parts, so rewrites touch code only. */
function parts(sql) {
  const out = [];
  let i = 0;
  let start = 0;
  while (i < sql.length) {
    const ch = sql[i];
    if (ch === "'" || ch === '"') {
      if (i > start) out.push({ code: true, text: sql.slice(start, i) });
      let j = i + 1;
      while (j < sql.length && sql[j] !== ch) j += sql[j] === "\\" ? 2 : 1;
      out.push({ code: false, text: sql.slice(i, j + 1) });
      i = j + 1;
      start = i;
    } else {
      i += 1;
    }
  }
  if (start < sql.length) out.push({ code: true, text: sql.slice(start) });
  return out;
}

function parameterValue(token, parameters) {
  if (/^\d+$/.test(token)) return Number(token);
  const found = (parameters || []).find((p) => p && p.name === token);
  return found ? found.value : undefined;
}

/**
 * What a query needs beyond the package: { sql, distinct, offset, limit, valueAggregate,
 * bareAggregate } or { error } (400).
 */
export function planQuery(sql, parameters) {
  const pieces = parts(String(sql));
  const code = pieces.filter((p) => p.code).map((p) => p.text).join(" ");
  const plan = { distinct: false, offset: null, limit: null };
  // a parameter named like a keyword (`@value`) is renamed too: the parser refused it
  const renamed = new Map();
  plan.parameters = (parameters || []).map((p) => {
    if (!p || typeof p.name !== "string" || !/^@value$/i.test(p.name)) return p;
    renamed.set(p.name.toLowerCase(), `@parley_${p.name.slice(1)}`);
    return { ...p, name: `@parley_${p.name.slice(1)}` };
  });
  for (const piece of pieces) {
    if (!piece.code) continue;
    piece.text = piece.text
      .replace(/@value\b/gi, (m) => renamed.get(m.toLowerCase()) ?? m)
      .replace(/\.\s*([A-Za-z_]\w*)/g, (m, name) =>
        KEYWORD_PREFIX.test(name) && !KEYWORD.test(name) ? `["${name}"]` : m,
      );
  }
  const first = pieces.find((p) => p.code);
  if (first && /^\s*SELECT\s+DISTINCT\b/i.test(first.text)) {
    first.text = first.text.replace(/^(\s*SELECT\s+)DISTINCT\b\s*/i, "$1");
    plan.distinct = true;
  }
  const last = pieces[pieces.length - 1];
  const tail = last && last.code ? /\s+OFFSET\s+(\d+|@\w+)\s+LIMIT\s+(\d+|@\w+)\s*$/i : null;
  const match = tail && tail.exec(last.text);
  if (match) {
    plan.offset = parameterValue(match[1], parameters);
    plan.limit = parameterValue(match[2], parameters);
    if (!Number.isInteger(plan.offset) || !Number.isInteger(plan.limit)) {
      return { error: "OFFSET and LIMIT take non-negative integers." };
    }
    if (plan.offset < 0 || plan.limit < 0) {
      return { error: "OFFSET and LIMIT take non-negative integers." };
    }
    last.text = last.text.slice(0, match.index);
  }
  const grouping = last && last.code ? /\bGROUP\s+BY\s+([\s\S]+)$/i.exec(last.text) : null;
  if (grouping) {
    const text = pieces
      .map((p) => (p === last ? p.text.slice(0, grouping.index) : p.text))
      .join("");
    const m = /^\s*SELECT\s+(VALUE\s+)?([\s\S]*?)\b(FROM\b[\s\S]*)$/i.exec(text);
    if (!m || /\bORDER\s+BY\b/i.test(grouping[1])) {
      return { error: "GROUP BY is modelled for SELECT ... FROM ... [WHERE ...] GROUP BY only." };
    }
    plan.groupBy = { value: Boolean(m[1]), projection: m[2].trim(), from: m[3], keys: grouping[1] };
  }
  const select =
    /^\s*SELECT\s+(?:DISTINCT\s+)?(?:TOP\s+\S+\s+)?(VALUE\s+)?([\s\S]*?)\bFROM\b/i.exec(code);
  const projection = select ? select[2] : "";
  plan.valueAggregate = Boolean(select && select[1] && /^\s*(MAX|MIN|AVG)\s*\(/i.test(projection));
  // GROUP BY (which Azure runs across partitions) is not modelled: the package's parser refuses it
  plan.bareAggregate = Boolean(
    select && !select[1] && AGGREGATE.test(projection) && !/\bGROUP\s+BY\b/i.test(code),
  );
  plan.sql = pieces.map((p) => p.text).join("");
  return plan;
}

/** Whether the query must be answered from its whole result (paged here, not by the package). */
export function needsWholeResult(plan) {
  return plan.distinct || plan.offset !== null || Boolean(plan.groupBy);
}

/** `text` split at its top-level commas (not inside quotes or brackets): a list of arguments. */
export function splitTopLevel(text) {
  const out = [];
  let depth = 0;
  let quote = null;
  let start = 0;
  for (let i = 0; i < text.length; i += 1) {
    const ch = text[i];
    if (quote) {
      if (ch === "\\") i += 1;
      else if (ch === quote) quote = null;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if ("([{".includes(ch)) depth += 1;
    else if (")]}".includes(ch)) depth -= 1;
    else if (ch === "," && depth === 0) {
      out.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  out.push(text.slice(start).trim());
  return out;
}

/**
 * GROUP BY: the rows of `SELECT ... FROM ... WHERE ... GROUP BY k1, k2`, one per distinct key
 * (first seen first; Azure's order is not defined). `run(sql)` runs a query over the items read,
 * `runOn(sql, docs)` over some of them. A projected expression with an aggregate (COUNT, SUM,
 * MIN, MAX, AVG) is computed over the group's items, any other one on its first item; a column
 * is named by its AS, else by its last property name, else `$1`, `$2`, ... as in Cosmos.
 */
export function groupRows(plan, run, runOn) {
  const { value, projection, from, keys } = plan.groupBy;
  const alias = /^FROM\s+([A-Za-z_]\w*)(?:\s+(?:AS\s+)?(?!WHERE\b|JOIN\b)([A-Za-z_]\w*))?/i.exec(
    from.trim(),
  );
  const root = alias ? alias[2] || alias[1] : "c";
  const tagged = run(`SELECT VALUE {"k": [${keys}], "d": ${root}} ${from}`);
  const groups = new Map();
  for (const { k, d } of tagged) {
    const key = canonical(k);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(d);
  }
  const columns = splitTopLevel(projection).map((column, i) => {
    const m = /^([\s\S]+?)\s+AS\s+([A-Za-z_]\w*)$/i.exec(column);
    const expr = m ? m[1] : column;
    const path = /\.\s*([A-Za-z_]\w*)\s*$/.exec(expr);
    return { expr, name: m ? m[2] : path ? path[1] : `$${i + 1}`, aggregate: AGGREGATE.test(expr) };
  });
  const evaluate = ({ expr, aggregate }, docs) => {
    const sql = `SELECT VALUE ${expr} FROM ${root}`;
    return aggregate ? runOn(sql, docs)[0] : runOn(sql, docs.slice(0, 1))[0];
  };
  return [...groups.values()].map((docs) => {
    if (value) return evaluate(columns[0], docs);
    const row = {};
    for (const column of columns) {
      const result = evaluate(column, docs);
      if (result !== undefined) row[column.name] = result;
    }
    return row;
  });
}

/** JSON with object keys sorted: equal for rows that differ only in property order. */
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value) ?? "undefined";
}

/**
 * One page of a query answered from its whole result `rows`: DISTINCT and OFFSET...LIMIT applied,
 * then `maxItemCount` rows from the offset in `continuation` (our own token).
 */
export function pageOfWhole(plan, rows, { maxItemCount, continuation }) {
  let kept = rows;
  if (plan.distinct) {
    const seen = new Set();
    kept = rows.filter((row) => {
      const key = canonical(row);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  if (plan.offset !== null) kept = kept.slice(plan.offset, plan.offset + plan.limit);
  const token = continuation && continuation.token;
  let from = 0;
  if (typeof token === "string") {
    try {
      from = Number(JSON.parse(token).parleyOffset) || 0;
    } catch {
      from = 0;
    }
  }
  const size = maxItemCount > 0 ? maxItemCount : kept.length;
  const result = kept.slice(from, from + size);
  const next = from + size;
  return {
    result,
    continuation:
      next < kept.length
        ? { token: JSON.stringify({ parleyOffset: next }), range: { min: "", max: "FF" } }
        : null,
  };
}
