#!/usr/bin/env node
// Parley's local Cosmos DB for tests: @vercel/cosmosdb-server (pinned in package.json) with the
// fidelity patches of fidelity.mjs, served over HTTPS on 127.0.0.1.
//
//   node tools/cosmos/server.mjs [--port N] [--no-auth] [--exit-on-stdin-close]
//
//   --port N    port to listen on (default: env COSMOS_PORT, else 8081); 0 picks a free port
//   --no-auth   accept any key (default: only the emulator's well-known key; env COSMOS_AUTH=off)
//   --exit-on-stdin-close
//               stop when standard input closes, so a test process that dies takes the server
//               with it (used by tests/support/cosmos_server.py)
//
// When it listens it prints one line to stdout, and nothing else there:
//   COSMOS_READY https://127.0.0.1:PORT
// Logs go to stderr. SIGTERM or SIGINT stop it (exit code 0). Data lives in memory only.

import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

import { installFidelityPatches } from "./fidelity.mjs";

const HOST = "127.0.0.1";

function log(message) {
  process.stderr.write(`[local-cosmos] ${message}\n`);
}

function options() {
  const { values } = parseArgs({
    options: {
      port: { type: "string" },
      "no-auth": { type: "boolean", default: false },
      "exit-on-stdin-close": { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      "usage: node tools/cosmos/server.mjs [--port N] [--no-auth] [--exit-on-stdin-close]\n",
    );
    process.exit(0);
  }
  const rawPort = values.port ?? process.env.COSMOS_PORT ?? "8081";
  const port = Number(rawPort);
  if (!/^\d+$/.test(String(rawPort).trim()) || port > 65535) {
    log(`invalid port: ${rawPort}`);
    process.exit(2);
  }
  const authOff = values["no-auth"] || /^(0|off|false|no)$/i.test(process.env.COSMOS_AUTH ?? "");
  return { port, auth: !authOff, exitOnStdinClose: values["exit-on-stdin-close"] };
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
  installFidelityPatches({ auth: opts.auth });

  const server = cosmos.createHttpsServer({ ...certificate(), keepAlive: true });
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
    if (!opts.auth) log("authorization checks are off (--no-auth)");
    process.stdout.write(`COSMOS_READY https://${HOST}:${port}\n`);
  });
}

main();
