// How many items a query examines, for its request charge (throughput.mjs): what the index can
// serve, as Azure Cosmos DB's query engine uses it (docs: "Overview of indexing", "Index usage";
// "Indexing policies", composite indexes for "queries with filters on multiple properties").
//
// Azure evaluates a filter in one of three ways. An index seek (equality, IN) or an index scan
// (a range: <, <=, >, >=) on an indexed path loads only the items the index matches; anything
// else (NOT, !=, OR, a function such as IS_DEFINED or CONTAINS, or a path the indexing policy
// excludes) is evaluated on items already loaded, and a query with no filter the index serves
// loads every item of its scope (a full scan: the partition, or the container, queried).
//
// The estimate here is never cheaper than that:
//   - the query's WHERE is split into its top-level AND terms; a term is SERVED when it is
//     `c.path OP value` (OP one of = < <= > >=, value a constant or a parameter) or
//     `c.path IN (values)`, and the path is indexed (the id, the partition key, or a path the
//     policy includes and does not exclude more precisely);
//   - no served term: every item in scope is examined;
//   - served terms on one path, or on paths one composite index covers (its first paths are
//     exactly the filtered ones, all of them equalities but the last, which may be a range;
//     IN is not counted as an equality here, since Azure does not document it): the items
//     matching every served term;
//   - served terms on several paths no composite index covers: the most items any one path's
//     terms match (Cosmos may read each filter's index entries before intersecting them);
//   - every page of a query is charged that whole count, wherever its continuation resumes,
//     and TOP or ORDER BY do not reduce it (Azure may stop reading early: it costs less there).

const COMPARISONS = new Set(["=", "<", "<=", ">", ">="]);

/** The path of `alias.a.b` as ["a", "b"], or null for anything else. */
function memberPath(node, alias) {
  const keys = [];
  let current = node;
  while (current && current.type === "scalar_member_expression") {
    const { property } = current;
    if (current.computed) {
      if (property.type !== "string_constant") return null;
      keys.unshift(property.value);
    } else {
      keys.unshift(property.name);
    }
    current = current.object;
  }
  if (!current || current.type !== "identifier" || current.name !== alias || !keys.length) {
    return null;
  }
  return keys;
}

const NO_VALUE = Symbol("no value");

/** A constant's or a parameter's value, or NO_VALUE for anything else. */
function constantValue(node, parameters) {
  switch (node && node.type) {
    case "string_constant":
    case "number_constant":
    case "boolean_constant":
      return node.value;
    case "null_constant":
      return null;
    case "parameter_name": {
      const found = (parameters || []).find((p) => p.name === node.name);
      return found ? found.value : NO_VALUE;
    }
    default:
      return NO_VALUE;
  }
}

function andTerms(node, out = []) {
  if (node && node.type === "scalar_binary_expression" && node.operator === "AND") {
    andTerms(node.left, out);
    andTerms(node.right, out);
  } else if (node) {
    out.push(node);
  }
  return out;
}

function typeOf(value) {
  return value === null ? "null" : typeof value;
}

/** Cosmos compares values of one type only; anything else (undefined included) matches not. */
function compare(left, operator, right) {
  if (left === undefined || typeOf(left) !== typeOf(right)) return false;
  if (operator === "=") return left === right;
  if (typeof left !== "number" && typeof left !== "string") return false;
  if (operator === "<") return left < right;
  if (operator === "<=") return left <= right;
  if (operator === ">") return left > right;
  return left >= right;
}

function valueAt(item, path) {
  let current = item;
  for (const key of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = current[key];
  }
  return current;
}

/** A served term: { path, kind: "eq" | "range" | "in", test(item) }, or null. */
function servedTerm(node, alias, parameters) {
  if (node.type === "scalar_binary_expression" && COMPARISONS.has(node.operator)) {
    const flipped = { "<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=" };
    let path = memberPath(node.left, alias);
    let value = constantValue(node.right, parameters);
    let operator = node.operator;
    if (!path) {
      path = memberPath(node.right, alias);
      value = constantValue(node.left, parameters);
      operator = flipped[node.operator];
    }
    if (!path || value === NO_VALUE) return null;
    return {
      path,
      kind: operator === "=" ? "eq" : "range",
      test: (item) => compare(valueAt(item, path), operator, value),
    };
  }
  if (node.type === "scalar_in_expression") {
    const path = memberPath(node.value, alias);
    const values = node.list.map((v) => constantValue(v, parameters));
    if (!path || values.includes(NO_VALUE)) return null;
    return {
      path,
      kind: "in",
      test: (item) => values.some((v) => compare(valueAt(item, path), "=", v)),
    };
  }
  return null;
}

/** How precisely an indexing-policy path matches `path` (-1: not at all). */
function precision(pattern, path) {
  const parts = pattern.split("/").filter(Boolean);
  const last = parts.pop();
  if (last === "?") {
    return parts.length === path.length && parts.every((p, i) => p === path[i])
      ? parts.length + 0.5
      : -1;
  }
  if (last === "*") {
    return parts.length <= path.length && parts.every((p, i) => p === path[i])
      ? parts.length
      : -1;
  }
  return -1;
}

/** Whether the policy indexes `path` (a scalar's path), as Cosmos resolves included/excluded. */
export function isIndexed(policy, partitionKeyPaths, path) {
  const joined = `/${path.join("/")}`;
  if (joined === "/id" || partitionKeyPaths.includes(joined)) return true;
  if (!policy) return true; // no policy: Cosmos's default indexes every path
  if (policy.indexingMode === "none") return false;
  const best = (paths) =>
    Math.max(-1, ...(paths || []).map((entry) => precision(entry.path, path)));
  const included = best(policy.includedPaths || [{ path: "/*" }]);
  const excluded = best(policy.excludedPaths);
  return included >= 0 && included > excluded;
}

function covered(compositeIndexes, byPath) {
  const filtered = [...byPath.keys()];
  return (compositeIndexes || []).some((composite) => {
    if (composite.length < filtered.length) return false;
    const head = composite.slice(0, filtered.length).map((entry) => entry.path);
    if (!filtered.every((p) => head.includes(p))) return false;
    return head.every((p, i) => {
      const kinds = byPath.get(p).map((term) => term.kind);
      if (kinds.includes("in")) return false;
      return i === head.length - 1 || kinds.every((kind) => kind === "eq");
    });
  });
}

/**
 * The items a query examines: `ast` is the parsed query (@zeit/cosmosdb-query), `items` the
 * items in its scope, `policy` the container's indexing policy.
 */
export function examinedItems(ast, items, parameters, policy, partitionKeyPaths) {
  const body = ast && ast.body;
  const where = body && body.where && body.where.condition;
  if (!where) return items.length;
  const source = body.from.source;
  const alias = source.alias ? source.alias.name : source.expression.expression.name;
  const byPath = new Map();
  for (const node of andTerms(where)) {
    const term = servedTerm(node, alias, parameters);
    if (!term || !isIndexed(policy, partitionKeyPaths, term.path)) continue;
    const key = `/${term.path.join("/")}`;
    byPath.set(key, [...(byPath.get(key) || []), term]);
  }
  if (!byPath.size) return items.length;
  const matching = (terms) => items.filter((item) => terms.every((t) => t.test(item))).length;
  if (byPath.size === 1 || covered(policy && policy.compositeIndexes, byPath)) {
    return matching([...byPath.values()].flat());
  }
  return Math.max(...[...byPath.values()].map(matching));
}
