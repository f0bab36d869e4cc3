// Settings → MQTT (/settings/mqtt): the embedded broker's facts, the Client ID prefix rule
// (17 characters refused with the reason, a valid one saved), the write-only password, and
// "Test connection" against a real Mosquitto started here; screenshots and axe.
import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiAs, screenshotsAndAxe, signIn } from "../lib/app.mjs";

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Debian's mosquitto on a free loopback port, anonymous allowed; resolves once it listens.
async function startMosquitto() {
  const dir = await mkdtemp(join(tmpdir(), "pl-ui-mosquitto-"));
  const port = await freePort();
  const conf = join(dir, "mosquitto.conf");
  const root = process.getuid && process.getuid() === 0 ? "user root\n" : "";
  await writeFile(conf, `${root}listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  const child = spawn("/usr/sbin/mosquitto", ["-c", conf], { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (c) => { log += c; });
  for (let i = 0; i < 100; i += 1) {
    const up = await new Promise((resolve) => {
      const sock = connect(port, "127.0.0.1");
      sock.on("connect", () => { sock.destroy(); resolve(true); });
      sock.on("error", () => resolve(false));
    });
    if (up) return { port, stop: async () => { child.kill("SIGTERM"); await rm(dir, { recursive: true, force: true }); } };
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill("SIGTERM");
  throw new Error(`mosquitto did not start: ${log}`);
}

export default async function mqtt({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`mqtt: ${error.message}`));
  const prefix = page.getByLabel("Client ID prefix");
  let mosquitto;

  try {
    await check("mqtt: the embedded broker's status, port and clients", async () => {
      await signIn(page, base, USER, "settings/mqtt");
      await page.getByRole("heading", { name: "MQTT settings", level: 1 }).waitFor();
      const facts = page.locator(".broker-facts");
      await facts.waitFor({ timeout: 10_000 });
      expectEqual(await facts.locator("[data-field=status]").textContent(), "Running", "status");
      expectEqual(await facts.locator("[data-field=port]").textContent(), String(runtime.mqtt_port), "port");
      const clients = Number(await facts.locator("[data-field=connections]").textContent());
      if (!Number.isInteger(clients) || clients < 0) throw new Error(`clients: ${clients}`);
      await prefix.waitFor();
      expectEqual(await page.getByText(/random 6-character suffix/).count(), 1, "prefix description");
      await screenshotsAndAxe(page, shots, "mqtt-settings");
    });

    await check("mqtt: a 17-character Client ID prefix is refused with the explanation", async () => {
      const before = (await admin("GET", "/api/settings/mqtt")).body.client_id_prefix;
      await prefix.fill("a".repeat(17));
      const error = page.locator("#link-prefix-error");
      await error.getByText(/at most 16 are allowed/).waitFor({ timeout: 5_000 });
      const text = await error.textContent();
      if (!/MQTT 3\.1/.test(text) || !/6 random characters/.test(text)) throw new Error(`explanation: ${text}`);
      expectEqual(await prefix.getAttribute("aria-invalid"), "true", "aria-invalid");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("Some fields need attention.").waitFor({ timeout: 5_000 });
      expectEqual((await admin("GET", "/api/settings/mqtt")).body.client_id_prefix, before, "nothing saved");
      await screenshotsAndAxe(page, shots, "mqtt-prefix-refused");
    });

    await check("mqtt: a valid prefix, host and password save; the password is write-only", async () => {
      mosquitto = await startMosquitto();
      await prefix.fill("porch-ui-16chars");
      expectEqual(await page.locator("#link-prefix-error").textContent(), "", "no error for 16");
      await page.getByLabel("Host").fill("127.0.0.1");
      await page.getByLabel("Port", { exact: true }).fill(String(mosquitto.port));
      await page.getByLabel("Password", { exact: true }).fill("not a real secret");
      await page.getByRole("button", { name: "Save" }).click();
      await page.getByText("Saved.").waitFor({ timeout: 10_000 });
      const saved = (await admin("GET", "/api/settings/mqtt")).body;
      expectEqual(saved.client_id_prefix, "porch-ui-16chars", "prefix saved");
      expectEqual(saved.host, "127.0.0.1", "host saved");
      expectEqual(saved.port, mosquitto.port, "port saved");
      expectEqual(saved.password_set, true, "password set");
      expectEqual("password" in saved, false, "password never answered");
      expectEqual(await page.getByLabel("Password", { exact: true }).inputValue(), "", "password field emptied");
      await page.locator("[data-field=password-state]").getByText("A password is set").waitFor();
      if (!saved.client_id.startsWith("porch-ui-16chars-")) throw new Error(`client id ${saved.client_id}`);
      await page.getByText(saved.client_id).waitFor();
    });

    await check("mqtt: Test connection against a real Mosquitto reports success", async () => {
      // Anonymous broker: no password for the test (and keep the stored one).
      await page.getByLabel("Remove the stored password").check();
      await page.getByRole("button", { name: "Test connection" }).click();
      const result = page.locator(".test-result");
      await result.waitFor({ timeout: 15_000 });
      const text = await result.textContent();
      if (!/^Connected as porch-ui-16chars-[0-9a-f]{6}/.test(text)) throw new Error(`result: ${text}`);
      await screenshotsAndAxe(page, shots, "mqtt-test-ok");
    });

    await check("mqtt: Test connection to a closed port says it could not reach the broker", async () => {
      await page.getByLabel("Port", { exact: true }).fill(String(await freePort()));
      await page.getByRole("button", { name: "Test connection" }).click();
      await page.locator(".test-result").getByText(/Couldn't reach the broker/).waitFor({ timeout: 15_000 });
    });
  } finally {
    if (mosquitto) await mosquitto.stop();
    await context.close();
  }
}
