// Settings → MQTT, connected clients: a mosquitto_sub started here (a user's password login,
// MQTT 5) shows up in the table with its client id, user, login and protocol after Refresh,
// and is gone after it stops; screenshots and axe at both sizes.
import { spawn } from "node:child_process";
import { apiAs, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const CAROL = { username: "carol", password: "carol password 1" };

export default async function mqttClients({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const created = await admin("POST", "/api/users", CAROL);
  if (created.status !== 201) throw new Error(`creating carol: ${created.status}`);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`mqtt-clients: ${error.message}`));
  const clientId = `carol-sub-${process.pid}`;
  let sub;

  try {
    await check("mqtt-clients: a connected mosquitto_sub appears in the table with its client id", async () => {
      await signIn(page, base, USER, "settings/mqtt");
      await page.getByRole("heading", { name: "Connected clients", level: 2 }).waitFor();
      sub = spawn("mosquitto_sub", [
        "-h", "127.0.0.1", "-p", String(runtime.mqtt_port), "-V", "5", "-i", clientId,
        "-u", CAROL.username, "-P", CAROL.password, "-t", "owntracks/carol/#",
      ], { stdio: ["ignore", "ignore", "ignore"] });
      const row = page.locator(`tr[data-client="${clientId}"]`);
      for (let i = 0; i < 50 && !(await row.count()); i += 1) {
        await page.locator("[data-action=refresh-clients]").click();
        await page.waitForTimeout(200);
      }
      await row.waitFor({ timeout: 2_000 });
      expectEqual(await row.locator("code").textContent(), clientId, "client id");
      expectEqual(await row.locator("[data-field=user]").textContent(), "carol", "user");
      expectEqual(await row.locator("[data-field=login]").textContent(), "Password", "login");
      expectEqual(await row.locator("[data-field=protocol]").textContent(), "MQTT 5", "protocol");
      await screenshotsAndAxe(page, shots, "mqtt-clients");
    });

    await check("mqtt-clients: a client that disconnects is gone after Refresh", async () => {
      sub.kill("SIGTERM");
      const row = page.locator(`tr[data-client="${clientId}"]`);
      for (let i = 0; i < 50 && (await row.count()); i += 1) {
        await page.locator("[data-action=refresh-clients]").click();
        await page.waitForTimeout(200);
      }
      expectEqual(await row.count(), 0, "rows of the stopped client");
    });
  } finally {
    if (sub) sub.kill("SIGTERM");
    await context.close();
  }
}
