// Settings → Alarm (/settings/alarm): a delay saved, a sensor added whose live value follows
// MQTT, a duress code added and disabled; screenshots and axe.
import { apiAs, mqttPublish, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const TOPIC = "test/ui/hall-window";

export default async function alarmSettings({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`alarm settings: ${error.message}`));
  try {
    await check("alarm settings: a changed exit delay saves", async () => {
      await signIn(page, base, USER, "settings/alarm");
      await page.getByRole("heading", { name: "Alarm settings", level: 1 }).waitFor();
      const exit = page.locator("#mode-away-exit");
      await exit.waitFor({ timeout: 10_000 });
      await exit.fill("7");
      await page.getByRole("button", { name: "Save settings" }).click();
      await page.getByText("Settings saved.").waitFor({ timeout: 10_000 });
      expectEqual((await admin("GET", "/api/alarm/settings")).body.away.exit_delay_secs, 7, "saved delay");
    });

    await check("alarm settings: a sensor added in the form shows its live value from MQTT", async () => {
      await page.getByLabel("Id (letters, digits, - _ .)").fill("hall");
      await page.getByLabel("Name", { exact: true }).fill("Hall window");
      await page.getByLabel("Kind").selectOption("window");
      await page.getByLabel("MQTT topic").fill(TOPIC);
      await page.getByRole("button", { name: "Add", exact: true }).first().click();
      const row = page.locator(".sensor-list [data-sensor=hall]");
      await row.getByText("Not heard yet").waitFor({ timeout: 10_000 });
      const sensors = (await admin("GET", "/api/alarm/sensors")).body;
      const hall = sensors.find((s) => s.id === "hall");
      expectEqual(hall && hall.kind, "window", "sensor stored");
      await mqttPublish(runtime.mqtt_port, USER, TOPIC, "open");
      await row.locator(".value.open").waitFor({ timeout: 10_000 });
      await mqttPublish(runtime.mqtt_port, USER, TOPIC, "closed");
      await row.locator(".value.closed").waitFor({ timeout: 10_000 });
    });

    await check("alarm settings: a duress code is added, listed with its flag, and disabled", async () => {
      await page.getByLabel("Label").fill("Panic");
      await page.getByLabel("PIN (4–10 digits)").fill("8642");
      await page.getByLabel(/Duress code/).check();
      await page.locator("form[aria-labelledby=add-code-title]").getByRole("button", { name: "Add" }).click();
      const row = page.locator('.code-list [data-code="Panic"]');
      await row.locator(".tag.duress").waitFor({ timeout: 10_000 });
      const code = (await admin("GET", "/api/alarm/codes")).body.find((c) => c.label === "Panic");
      expectEqual(code && code.duress, true, "duress stored");
      await row.getByRole("button", { name: /^Disable/ }).click();
      await row.getByText("Disabled").waitFor({ timeout: 10_000 });
      expectEqual((await admin("GET", "/api/alarm/codes")).body.find((c) => c.label === "Panic").enabled, false, "disabled stored");
      await screenshotsAndAxe(page, shots, "alarm-settings");
    });
  } finally {
    await context.close();
  }
}
