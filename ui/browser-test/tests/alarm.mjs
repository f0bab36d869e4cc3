// The alarm panel (/alarm): arm from the keypad (badge and the MQTT state topic agree), a wrong
// PIN shows an error, disarm, the exit delay counts down, an open sensor blocks arming by name
// and "Arm anyway" bypasses it, the event log filters by kind; screenshots and axe.
import { apiAs, mqttPublish, mqttSubscribe, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const PIN = "1357";
const DOOR_TOPIC = "test/ui/front-door";

export default async function alarm({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const sub = mqttSubscribe(runtime.mqtt_port, USER, "porchlight/alarm/state");
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`alarm: ${error.message}`));
  const badge = page.locator(".alarm-state .badge");
  const keypad = (digits) => digits.split("").reduce((p, d) => p.then(() => page.locator(".keys").getByRole("button", { name: d, exact: true }).click()), Promise.resolve());

  try {
    await check("alarm: setup (a code, quick home, 3 s exit delay for away)", async () => {
      const code = await admin("POST", "/api/alarm/codes", { label: "Keypad", pin: PIN });
      expectEqual(code.status, 201, "code created");
      const settings = await admin("PUT", "/api/alarm/settings", {
        home: { exit_delay_secs: 0 }, away: { exit_delay_secs: 3 }, night: { exit_delay_secs: 0 },
        dedup_window_ms: 0, rearm_guard_ms: 0,
      });
      expectEqual(settings.status, 200, "settings");
    });

    await check("alarm: the panel shows the state and one arm button per enabled mode", async () => {
      await signIn(page, base, USER, "alarm");
      await page.getByRole("heading", { name: "Alarm", level: 1 }).waitFor();
      await badge.getByText("Disarmed").waitFor({ timeout: 10_000 });
      const arms = await page.locator(".keypad .actions button.arm").allTextContents();
      expectEqual(arms.join(","), "Arm home,Arm away,Arm night", "arm buttons");
      await page.locator(".feed.live").waitFor({ timeout: 10_000 });
      await screenshotsAndAxe(page, shots, "alarm-disarmed");
    });

    await check("alarm: arm home from the keypad → badge and MQTT state say armed_home", async () => {
      await sub.until("disarmed");
      sub.mark();
      await keypad(PIN);
      expectEqual(await page.getByLabel("PIN code").inputValue(), PIN, "typed by the keypad");
      await page.getByRole("button", { name: "Arm home" }).click();
      await badge.getByText("Armed home").waitFor({ timeout: 10_000 });
      expectEqual(await badge.getAttribute("data-state"), "armed_home", "badge state");
      await sub.until("armed_home");
      expectEqual(await page.getByLabel("PIN code").inputValue(), "", "PIN cleared after success");
      await screenshotsAndAxe(page, shots, "alarm-armed");
    });

    await check("alarm: a wrong PIN (typed) shows an error and changes nothing", async () => {
      await page.getByLabel("PIN code").fill("9999");
      await page.getByRole("button", { name: "Disarm" }).click();
      const alert = page.locator(".keypad [role=alert]");
      await alert.waitFor({ timeout: 10_000 });
      const message = (await alert.textContent()).trim();
      if (!/code/i.test(message)) throw new Error(`error text: ${message}`);
      expectEqual(await badge.getAttribute("data-state"), "armed_home", "still armed");
      const status = await admin("GET", "/api/alarm");
      expectEqual(status.body.state, "armed_home", "server state");
      await screenshotsAndAxe(page, shots, "alarm-wrong-pin");
    });

    await check("alarm: disarm with the PIN and Enter → disarmed, on MQTT too", async () => {
      sub.mark();
      await page.getByLabel("PIN code").fill(PIN);
      await page.getByLabel("PIN code").press("Enter");
      await badge.getByText("Disarmed").waitFor({ timeout: 10_000 });
      await sub.until("disarmed");
      expectEqual(await page.locator(".keypad [role=alert]").count(), 0, "error gone");
    });

    await check("alarm: arm away shows the exit delay counting down, then armed away", async () => {
      sub.mark();
      await keypad(PIN);
      await page.getByRole("button", { name: "Arm away" }).click();
      await badge.getByText("Arming").waitFor({ timeout: 10_000 });
      const countdown = page.locator(".countdown");
      const first = await countdown.textContent({ timeout: 5_000 });
      if (!/Exit delay: [1-3] s left/.test(first)) throw new Error(`countdown: ${first}`);
      await sub.until("arming");
      await badge.getByText("Armed away").waitFor({ timeout: 10_000 });
      await sub.until("armed_away");
      expectEqual(await countdown.count(), 0, "countdown gone");
      await page.getByLabel("PIN code").fill(PIN);
      await page.getByRole("button", { name: "Disarm" }).click();
      await badge.getByText("Disarmed").waitFor({ timeout: 10_000 });
    });

    await check("alarm: an open sensor (over MQTT) is listed live and blocks arming by name", async () => {
      const sensor = await admin("PUT", "/api/alarm/sensors/front", {
        name: "Front door", kind: "door", modes: ["away"], use_entry_delay: true,
        source: { topic: DOOR_TOPIC, field: "contact", on: false, off: true },
      });
      expectEqual(sensor.status, 201, "sensor created");
      await mqttPublish(runtime.mqtt_port, USER, DOOR_TOPIC, JSON.stringify({ contact: false }));
      await page.locator(".open-sensors").getByText("Front door").waitFor({ timeout: 10_000 });
      await keypad(PIN);
      await page.getByRole("button", { name: "Arm away" }).click();
      const alert = page.locator(".keypad [role=alert]");
      await alert.locator(".blocking-sensors").getByText("Front door").waitFor({ timeout: 10_000 });
      expectEqual(await badge.getAttribute("data-state"), "disarmed", "not armed");
      await screenshotsAndAxe(page, shots, "alarm-open-sensor");
    });

    await check("alarm: Arm anyway bypasses the open sensor", async () => {
      sub.mark();
      await page.getByRole("button", { name: "Arm anyway" }).click();
      await badge.getByText("Arming").waitFor({ timeout: 10_000 });
      await page.locator(".bypassed-sensors").getByText("Front door").waitFor({ timeout: 5_000 });
      await sub.until("arming");
      await page.getByLabel("PIN code").fill(PIN);
      await page.getByRole("button", { name: "Disarm" }).click();
      await badge.getByText("Disarmed").waitFor({ timeout: 10_000 });
      await mqttPublish(runtime.mqtt_port, USER, DOOR_TOPIC, JSON.stringify({ contact: true }));
      await page.getByText("All sensors are closed.").waitFor({ timeout: 10_000 });
    });

    await check("alarm: a change made elsewhere shows without reload (live feed)", async () => {
      const armed = await admin("POST", "/api/alarm/arm", { mode: "night", code: PIN });
      expectEqual(armed.status, 200, "armed over the API");
      await badge.getByText("Armed night").waitFor({ timeout: 10_000 });
      await admin("POST", "/api/alarm/disarm", { code: PIN });
      await badge.getByText("Disarmed").waitFor({ timeout: 10_000 });
    });

    await check("alarm: the event log filters by kind", async () => {
      const all = await admin("GET", "/api/alarm/events?kind=code_refused&limit=100");
      const refused = all.body.length;
      if (refused < 1) throw new Error("no code_refused event on the server");
      await page.getByLabel("Kind").selectOption("code_refused");
      await page.waitForFunction((n) => {
        const items = [...document.querySelectorAll(".event-list .event")];
        return items.length === n && items.every((e) => e.dataset.kind === "code_refused");
      }, refused, { timeout: 10_000 });
      await page.getByLabel("Kind").selectOption("");
      await page.waitForFunction(() => new Set([...document.querySelectorAll(".event-list .event")].map((e) => e.dataset.kind)).size > 1, null, { timeout: 10_000 });
      await screenshotsAndAxe(page, shots, "alarm-events");
    });
  } finally {
    sub.stop();
    await context.close();
  }
}
