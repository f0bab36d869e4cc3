// Helpers for the map screens' tests (tests/live.mjs, history.mjs, devices.mjs): API calls as a
// signed-in user, a household member with a phone, OwnTracks points over MQTT and HTTP, and
// signing the browser in.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

// A cookie-holding API client for `base`, signed in as username/password.
export async function apiAs(base, username, password) {
  const login = await fetch(`${base}api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!login.ok) throw new Error(`login as ${username}: ${login.status}`);
  const cookie = login.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
  return async function call(method, path, body) {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { cookie, ...(body ? { "content-type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

// A new user (as admin) with one device key; returns { username, password, device, key }.
export async function memberWithPhone(admin, username, device) {
  const password = `${username} browser test pw`;
  await admin("POST", "api/users", { username, password, role: "user" });
  const added = await admin("POST", "api/devices", { name: device, username });
  return { username, password, device, key: added.mqtt_password };
}

// One OwnTracks location, published QoS 1 over MQTT as the phone (mosquitto_pub returns after
// the broker's PUBACK).
export async function publishMqtt(runtime, phone, point) {
  const payload = JSON.stringify({ _type: "location", tid: "ph", ...point });
  await run("mosquitto_pub", [
    "-h", "127.0.0.1", "-p", String(runtime.mqtt_port), "-q", "1",
    // A short client id: MQTT 3.1.1 servers may refuse ids over 23 characters.
    "-i", `pub-${process.pid}-${Date.now() % 1000000}`,
    "-u", phone.username, "-P", phone.key,
    "-t", `owntracks/${phone.username}/${phone.device}`, "-m", payload,
  ]);
}

// Locations over OwnTracks' HTTP mode (POST /pub, basic auth with the device key).
export async function publishHttp(base, phone, points) {
  const auth = Buffer.from(`${phone.username}:${phone.key}`).toString("base64");
  for (const point of points) {
    const r = await fetch(`${base}pub`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        authorization: `Basic ${auth}`,
        "x-limit-u": phone.username,
        "x-limit-d": phone.device,
      },
      body: JSON.stringify({ _type: "location", tid: "ph", ...point }),
    });
    if (!r.ok) throw new Error(`POST /pub: ${r.status} ${await r.text()}`);
  }
}

// Signs the page in through the login form and waits for the shell.
export async function signIn(page, base, username, password, path = "") {
  await page.goto(`${base}${path}`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByLabel("Password").press("Enter");
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 10_000 });
}

// Polls `fn` until it returns a truthy value (or throws after `ms`).
export async function eventually(what, fn, ms = 10_000) {
  const until = Date.now() + ms;
  let last;
  while (Date.now() < until) {
    try {
      last = await fn();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: not within ${ms} ms (last: ${last?.message ?? JSON.stringify(last)})`);
}

export const VIEWPORTS = [["phone", { width: 375, height: 812 }], ["desktop", { width: 1280, height: 800 }]];
