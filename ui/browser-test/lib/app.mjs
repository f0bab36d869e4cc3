// Helpers shared by the app screens' browser tests (tests/login.mjs, alarm.mjs, mqtt.mjs):
// signing in, the API from Node with a session cookie, screenshots at both sizes, the axe-core
// accessibility check, and MQTT through Debian's mosquitto clients.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");

export const PHONE = { width: 375, height: 812 };
export const DESKTOP = { width: 1280, height: 800 };

// Signs in through the login form (the page may be anywhere signed out).
export async function signIn(page, base, { username, password }, path = "login") {
  await page.goto(`${base}${path}`);
  await page.locator("#login-username").fill(username);
  await page.locator("#login-password").fill(password);
  await page.locator("#login-password").press("Enter");
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 10_000 });
}

// The JSON API from Node, signed in as `user` (its own session cookie).
export async function apiAs(base, user) {
  const login = await fetch(`${base}api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(user),
  });
  if (login.status !== 200) throw new Error(`API login as ${user.username}: ${login.status}`);
  const cookie = login.headers.get("set-cookie").split(";")[0];
  return async function call(method, path, body) {
    const r = await fetch(`${base}${path.replace(/^\//, "")}`, {
      method,
      headers: { cookie, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  };
}

// Screenshots of the page at phone and desktop size (the viewport is restored after).
export async function screenshots(page, shots, name) {
  const before = page.viewportSize();
  for (const [label, size] of [["phone", PHONE], ["desktop", DESKTOP]]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(150);
    await page.screenshot({ path: `${shots}/${name}-${label}-${size.width}x${size.height}.png`, fullPage: true });
  }
  if (before) await page.setViewportSize(before);
}

// Runs axe-core (WCAG 2 A/AA rules) on the page and fails on serious or critical violations.
export async function assertAccessible(page, what) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  });
  if (violations.length) throw new Error(`${what}: axe found ${violations.join("; ")}`);
}

// Both viewports: screenshots and the accessibility check at each size.
export async function screenshotsAndAxe(page, shots, name) {
  const before = page.viewportSize();
  for (const [label, size] of [["phone", PHONE], ["desktop", DESKTOP]]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(150);
    await page.screenshot({ path: `${shots}/${name}-${label}-${size.width}x${size.height}.png`, fullPage: true });
    await assertAccessible(page, `${name} at ${size.width}x${size.height}`);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    if (width > size.width) throw new Error(`${name}: the page is ${width} px wide at ${size.width} px (sideways scrolling)`);
  }
  if (before) await page.setViewportSize(before);
}

// A mosquitto_sub on `topic` as `user`; `until(payload)` waits for a message with that payload
// (retained ones included) that arrived after `mark()`.
export function mqttSubscribe(port, { username, password }, topic) {
  const child = spawn("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(port), "-u", username, "-P", password, "-t", topic, "-q", "1"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines = [];
  let buffer = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => {
    buffer += chunk;
    const parts = buffer.split("\n");
    buffer = parts.pop();
    lines.push(...parts);
  });
  child.stderr.on("data", (chunk) => { stderr += chunk; });
  let from = 0;
  return {
    lines,
    mark() { from = lines.length; },
    async until(payload, timeout = 10_000) {
      const deadline = Date.now() + timeout;
      while (Date.now() < deadline) {
        const at = lines.indexOf(payload, from);
        if (at >= 0) { from = at + 1; return; }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`MQTT ${topic}: no "${payload}" within ${timeout} ms (got ${JSON.stringify(lines.slice(from))}${stderr ? `; ${stderr.trim()}` : ""})`);
    },
    stop() { child.kill("SIGTERM"); },
  };
}

// One mosquitto_pub; resolves when it has exited successfully.
export function mqttPublish(port, { username, password }, topic, message, retain = false) {
  return new Promise((resolve, reject) => {
    const args = ["-h", "127.0.0.1", "-p", String(port), "-u", username, "-P", password, "-t", topic, "-m", message, "-q", "1"];
    if (retain) args.push("-r");
    const child = spawn("mosquitto_pub", args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (c) => { stderr += c; });
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exited ${code}: ${stderr.trim()}`))));
  });
}
