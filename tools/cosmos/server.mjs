#!/usr/bin/env node
// Parley's local Cosmos DB for tests: @vercel/cosmosdb-server (pinned in package.json) with the
// fidelity patches of fidelity.mjs, served over HTTPS on 127.0.0.1. See README.md beside this file.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";

import { installFidelityPatches } from "./fidelity.mjs";

const HOST = "127.0.0.1";

const USAGE = `usage: node tools/cosmos/server.mjs [options]

  --port N                  port to listen on (env COSMOS_PORT; default 8081); 0: any free port
  --no-auth                 accept any key (env COSMOS_AUTH=off; default: only the emulator's
                            well-known key, as the official emulator)
  --exit-on-stdin-close     stop when standard input closes, so a test process that dies takes
                            the server with it (tools/local/cosmos.py uses it)
  --cert-out FILE           write the server's certificate (PEM) to FILE, for clients that verify
                            TLS (the SDK's own test suite: tests/tools/cosmos/sdk)

Modes (off unless given):
  --replica-lag-writes N    reads, queries and feed reads without a session token that covers
                            them see their container as it was before its last N writes
                            (env COSMOS_REPLICA_LAG_WRITES)
  --replica-lag-ms MS       ... or before the writes of the last MS milliseconds
                            (env COSMOS_REPLICA_LAG_MS)
  --ru-per-second N         throttle operations on items at N request units per second: 429 with
                            x-ms-retry-after-ms (env COSMOS_RU_PER_SECOND)

Strict behaviours of Azure (on unless turned off):
  --strict-continuations    a page exactly full may carry a continuation token that leads to an
                            empty page, as Cosmos may answer (the default)
  --no-strict-continuations a page exactly full ends the results without a token
                            (env COSMOS_STRICT_CONTINUATIONS=off)
  --utf8-payload-size       weigh items as UTF-8 instead of as sent with non-ASCII escaped
                            (env COSMOS_PAYLOAD_SIZE=utf8)
  --no-request-charges      answer x-ms-request-charge: 1 instead of the estimate
                            (env COSMOS_REQUEST_CHARGES=off)
  --no-owner-substatus      a missing database or container is 404 without substatus 1003
                            (env COSMOS_OWNER_SUBSTATUS=off)

For tests (off unless given):
  --test-clock              the server's clock (items' _ts, time-to-live expiry) can be moved
                            forward with POST /_parley/clock {"advanceSeconds": N}, unsigned
                            (env COSMOS_TEST_CLOCK=on)

When it listens it prints one line to stdout, and nothing else there:
  COSMOS_READY https://127.0.0.1:PORT
Logs go to stderr. SIGTERM or SIGINT stop it (exit code 0). Data lives in memory only.
`;

function log(message) {
  process.stderr.write(`[local-cosmos] ${message}\n`);
}

function isOff(value) {
  return /^(0|off|false|no)$/i.test(String(value ?? "").trim());
}

/** A non-negative integer from a flag or its environment variable (0 when neither is set). */
function count(name, flag, env) {
  const raw = flag ?? process.env[env] ?? "0";
  if (!/^\d+$/.test(String(raw).trim())) {
    log(`invalid --${name}: ${raw}`);
    process.exit(2);
  }
  return Number(raw);
}

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      "no-auth": { type: "boolean", default: false },
      "exit-on-stdin-close": { type: "boolean", default: false },
      "cert-out": { type: "string" },
      "replica-lag-writes": { type: "string" },
      "replica-lag-ms": { type: "string" },
      "ru-per-second": { type: "string" },
      "strict-continuations": { type: "boolean" },
      "no-strict-continuations": { type: "boolean", default: false },
      "utf8-payload-size": { type: "boolean", default: false },
      "no-request-charges": { type: "boolean", default: false },
      "no-owner-substatus": { type: "boolean", default: false },
      "test-clock": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const rawPort = values.port ?? process.env.COSMOS_PORT ?? "8081";
  const port = Number(rawPort);
  if (!/^\d+$/.test(String(rawPort).trim()) || port > 65535) {
    log(`invalid port: ${rawPort}`);
    process.exit(2);
  }
  const env = process.env;
  return {
    port,
    auth: !(values["no-auth"] || isOff(env.COSMOS_AUTH ?? "on")),
    exitOnStdinClose: values["exit-on-stdin-close"],
    certOut: values["cert-out"],
    replicaLagWrites: count(
      "replica-lag-writes",
      values["replica-lag-writes"],
      "COSMOS_REPLICA_LAG_WRITES",
    ),
    replicaLagMs: count("replica-lag-ms", values["replica-lag-ms"], "COSMOS_REPLICA_LAG_MS"),
    ruPerSecond: count("ru-per-second", values["ru-per-second"], "COSMOS_RU_PER_SECOND"),
    strictContinuations:
      values["strict-continuations"] ??
      !(values["no-strict-continuations"] || isOff(env.COSMOS_STRICT_CONTINUATIONS ?? "on")),
    payloadAsSent: !(
      values["utf8-payload-size"] || /^utf-?8$/i.test(env.COSMOS_PAYLOAD_SIZE ?? "")
    ),
    requestCharges: !(values["no-request-charges"] || isOff(env.COSMOS_REQUEST_CHARGES ?? "on")),
    ownerSubstatus: !(values["no-owner-substatus"] || isOff(env.COSMOS_OWNER_SUBSTATUS ?? "on")),
    testClock: values["test-clock"] || /^(1|on|true|yes)$/i.test(env.COSMOS_TEST_CLOCK ?? ""),
  };
}

/** One stderr line naming the modes that differ from the defaults. */
function describe(opts) {
  const notes = [];
  if (!opts.auth) notes.push("authorization checks are off (--no-auth)");
  if (opts.replicaLagWrites) notes.push(`replica lag: ${opts.replicaLagWrites} writes`);
  if (opts.replicaLagMs) notes.push(`replica lag: ${opts.replicaLagMs} ms`);
  if (opts.ruPerSecond) notes.push(`throttling at ${opts.ruPerSecond} RU/s`);
  if (!opts.strictContinuations) notes.push("strict continuations off");
  if (!opts.payloadAsSent) notes.push("items weighed as UTF-8");
  if (!opts.requestCharges) notes.push("request charges off");
  if (!opts.ownerSubstatus) notes.push("owner substatus off");
  if (opts.testClock) notes.push("test clock on: POST /_parley/clock moves time forward");
  return notes;
}

// A fresh self-signed certificate for 127.0.0.1/localhost, made with the system's openssl (EC
// P-256: a few milliseconds). Clients connect with TLS verification off, as with the emulator.
// Without openssl, fall back to the certificate bundled in the package (expired, which does not
// matter when verification is off).
function certificate() {
  const dir = mkdtempSync(join(tmpdir(), "parley-cosmos-"));
  try {
    const keyFile = join(dir, "key.pem");
    const certFile = join(dir, "cert.pem");
    const result = spawnSync(
      "openssl",
      [
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", keyFile, "-out", certFile, "-days", "30", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    if (result.error || result.status !== 0) {
      const why = result.error ? result.error.message : String(result.stderr).trim();
      log(`openssl could not make a certificate (${why}); using the package's bundled one`);
      return {};
    }
    return { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main() {
  const opts = options();
  const require = createRequire(import.meta.url);
  let cosmos;
  try {
    cosmos = require("@vercel/cosmosdb-server");
  } catch {
    log("@vercel/cosmosdb-server is not installed: run `npm ci` at the repository root");
    process.exit(3);
  }
  installFidelityPatches(opts);

  const tls = certificate();
  if (opts.certOut) {
    // without openssl, the package's bundled certificate (lib/../cert.pem)
    const bundled = join(dirname(require.resolve("@vercel/cosmosdb-server")), "..", "cert.pem");
    const cert = tls.cert ?? readFileSync(bundled);
    writeFileSync(opts.certOut, cert);
  }
  const server = cosmos.createHttpsServer({ ...tls, keepAlive: true });
  // Keep connections open longer than clients keep idle ones (aiohttp: 15 s), so a client never
  // reuses a connection the server is closing.
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;

  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  if (opts.exitOnStdinClose) {
    process.stdin.on("end", () => stop("stdin closed"));
    process.stdin.on("error", () => stop("stdin error"));
    process.stdin.resume();
  }

  server.on("error", (err) => {
    log(`cannot listen on ${HOST}:${opts.port}: ${err.message}`);
    process.exit(1);
  });
  server.listen(opts.port, HOST, () => {
    const { port } = server.address();
    for (const note of describe(opts)) log(note);
    process.stdout.write(`COSMOS_READY https://${HOST}:${port}\n`);
  });
}

main();
