// Browser test of the built UI against the real server: login errors, disabled button, sign
// in, navigation, reload, sign out; plus screenshots at phone and desktop sizes.
// Run after scripts/build-ui.sh and `cargo build -p porchlight`:
//   cd ui/browser-test && npm install && npm test
// Env: PORCHLIGHT_BIN (default $CARGO_TARGET_DIR/debug/porchlight), CHROMIUM (default
// /usr/bin/chromium), SHOTS (screenshot dir, default /tmp/porchlight-ui).
import { spawn } from "node:child_process";
import { mkdtemp, mkdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../../", import.meta.url));
const bin =
  process.env.PORCHLIGHT_BIN ??
  join(process.env.CARGO_TARGET_DIR ?? join(root, "target"), "debug", "porchlight");
const shots = process.env.SHOTS ?? "/tmp/porchlight-ui";
await mkdir(shots, { recursive: true });

// The real headless server on a free port, with a fresh data dir and a known admin password.
const USER = { username: "admin", password: "browser test password" };
const dataDir = await mkdtemp(join(tmpdir(), "porchlight-ui-"));
const serverEnv = { ...process.env, PORCHLIGHT_ADMIN_PASSWORD: USER.password, PORCHLIGHT_LOG: "warn" };
delete serverEnv.PORCHLIGHT_BIN;
const server = spawn(
  bin,
  ["serve", "--data-dir", dataDir, "--http-port", "0", "--mqtt-port", "-1", "--bind", "127.0.0.1"],
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
    console.log(`FAIL ${name}\n     ${String(error.message ?? error).split("\n")[0]}`);
  }
}
function expectEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const errors = [];
for (const [label, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`${label}: ${error.message}`));
  const username = page.getByLabel("Username");
  const password = page.getByLabel("Password");
  const submit = page.getByRole("button", { name: /Sign(ing)? in/ });
  const alert = page.getByRole("alert");

  await check(`${label}: signed out, / shows the login form`, async () => {
    await page.goto(base);
    await username.waitFor({ timeout: 10_000 });
    expectEqual(await password.getAttribute("type"), "password", "password field type");
    await page.screenshot({ path: `${shots}/${label}-login.png` });
  });

  await check(`${label}: wrong password, Enter submits, button disabled, 401 message shown`, async () => {
    await username.fill(USER.username);
    await password.fill("wrong");
    await password.press("Enter");
    await page.getByRole("button", { name: "Signing in…" }).waitFor({ timeout: 2_000 });
    expectEqual(await submit.isDisabled(), true, "button disabled while signing in");
    expectEqual((await alert.textContent({ timeout: 5_000 })).trim(), "Wrong user name or password.", "alert");
    expectEqual(await submit.isDisabled(), false, "button enabled again");
    expectEqual(await password.inputValue(), "", "password cleared after failure");
  });

  await check(`${label}: 429 shows the server's message`, async () => {
    await username.fill("locked");
    await password.fill("x");
    await throttle("locked");
    await submit.click();
    await page.getByText(/too many sign-in attempts\. try again in \d+ seconds?\./i).waitFor({ timeout: 5_000 });
    await page.screenshot({ path: `${shots}/${label}-login-error.png` });
  });

  await check(`${label}: right password opens the shell`, async () => {
    await username.fill(USER.username);
    await password.fill(USER.password);
    await password.press("Enter");
    await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 5_000 });
    await page.getByText(USER.username, { exact: true }).waitFor();
    await page.getByRole("heading", { name: "Map" }).waitFor();
    await page.screenshot({ path: `${shots}/${label}-shell.png` });
  });

  await check(`${label}: navigation shows each placeholder section`, async () => {
    for (const name of ["History", "Alarm", "MQTT settings", "Map"]) {
      await page.getByRole("navigation").getByRole("button", { name }).click();
      await page.getByRole("heading", { name }).waitFor({ timeout: 2_000 });
      const current = page.getByRole("navigation").getByRole("button", { name });
      expectEqual(await current.getAttribute("aria-current"), "page", `${name} aria-current`);
    }
  });

  await check(`${label}: reload keeps the session (GET /api/me)`, async () => {
    await page.reload();
    await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 10_000 });
  });

  await check(`${label}: sign out returns to login, and reload stays there`, async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await username.waitFor({ timeout: 5_000 });
    await page.reload();
    await username.waitFor({ timeout: 10_000 });
  });

  await check(`${label}: a deep link gets index.html and the app`, async () => {
    await page.goto(`${base}alarm`);
    await username.waitFor({ timeout: 10_000 });
  });
  await context.close();
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
