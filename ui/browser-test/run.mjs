// Browser tests of the built UI against the real server. This file starts the server (fresh data
// dir, known admin password, HTTP and MQTT on free loopback ports) and Chromium, then runs every
// module in tests/ (each exports `default async function (ctx)`; ctx is built below), in name
// order, and prints "N passed, N failed". One file per screen or area, so parallel work on
// different screens does not touch the same file.
// Run after scripts/build-ui.sh and `cargo build -p porchlight`:
//   cd ui/browser-test && npm install && npm test
// Env: PORCHLIGHT_BIN (default $CARGO_TARGET_DIR/debug/porchlight), CHROMIUM (default
// /usr/bin/chromium), SHOTS (screenshot dir, default ui/browser-test/artifacts).
import { spawn } from "node:child_process";
import { mkdtemp, mkdir, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../../", import.meta.url));
const bin =
  process.env.PORCHLIGHT_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "porchlight");
const shots = process.env.SHOTS ?? fileURLToPath(new URL("./artifacts/", import.meta.url));
await mkdir(shots, { recursive: true });

// The real headless server on a free port, with a fresh data dir and a known admin password.
const USER = { username: "admin", password: "browser test password" };
const dataDir = await mkdtemp(join(tmpdir(), "porchlight-ui-"));
const serverEnv = { ...process.env, PORCHLIGHT_ADMIN_PASSWORD: USER.password, PORCHLIGHT_LOG: "warn" };
delete serverEnv.PORCHLIGHT_BIN;
const server = spawn(
  bin,
  ["serve", "--data-dir", dataDir, "--http-port", "0", "--mqtt-port", "0", "--bind", "127.0.0.1"],
  { env: serverEnv, stdio: ["ignore", "ignore", "inherit"] },
);
const serverExit = new Promise((resolve) => server.on("exit", resolve));
let runtime;
for (let i = 0; i < 300 && !runtime; i += 1) {
  try {
    runtime = JSON.parse(await readFile(join(dataDir, "runtime.json"), "utf8"));
  } catch {
    await new Promise((r) => setTimeout(r, 100));
  }
}
if (!runtime) throw new Error(`${bin} did not start (no runtime.json)`);
const base = `http://127.0.0.1:${runtime.http_port}/`;

// Fails logins for one account until the server throttles it (answers 429), so that the UI's
// next attempt, right after, meets a real 429.
async function throttle(username) {
  for (let i = 0; i < 20; i += 1) {
    const r = await fetch(`${base}api/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password: "wrong wrong wrong" }),
    });
    if (r.status === 429) return;
  }
  throw new Error("the server never throttled");
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
});

let failures = 0;
let passed = 0;
async function check(name, body) {
  try {
    await body();
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (error) {
    failures += 1;
    // The whole message: Playwright's call log (after the first line) says what a locator
    // resolved to and why it was not clickable (hidden, moving, covered, detached).
    const lines = String(error.message ?? error).split("\n");
    const shown = process.env.FULL_ERRORS === "0" ? lines.slice(0, 1) : lines.slice(0, 40);
    console.log(`FAIL ${name}\n${shown.map((l) => `     ${l}`).join("\n")}`);
  }
}
function expectEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const errors = [];
// `bin` lets a module start a server of its own (tests/https.mjs: one with --https).
const ctx = { browser, base, runtime, dataDir, USER, shots, check, expectEqual, throttle, errors, bin };
const only = process.env.ONLY; // e.g. ONLY=login runs tests/login.mjs alone
const modules = (await readdir(new URL("./tests/", import.meta.url)))
  .filter((f) => f.endsWith(".mjs") && (!only || f === `${only}.mjs`))
  .sort();
for (const file of modules) {
  const { default: run } = await import(new URL(`./tests/${file}`, import.meta.url));
  console.log(`-- ${file}`);
  await run(ctx);
}

await check("no uncaught page errors", async () => {
  if (errors.length) throw new Error(errors.join("; "));
});

await browser.close();
server.kill("SIGTERM");
const code = await serverExit;
await check("the server stops cleanly on SIGTERM", async () => expectEqual(code, 0, "exit code"));
await rm(dataDir, { recursive: true, force: true });
// The plain closing line CI reads: "N passed, N failed".
console.log(`${passed} passed, ${failures} failed`);
console.log(failures ? "" : `screenshots in ${shots}`);
process.exit(failures ? 1 : 0);
