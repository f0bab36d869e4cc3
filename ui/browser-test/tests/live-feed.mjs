// The tab's one live feed (/ws/live): visiting the live map, the alarm panel and the map
// again opens exactly one WebSocket; through it the map marker moves on a published point and
// the alarm badge changes on an arm made elsewhere; when the server side drops it, the shell
// says "Reconnecting…" and the feed comes back by itself, with the indicator gone.
import { apiAs as apiAsMaps, memberWithPhone, publishMqtt, eventually } from "../lib/maps.mjs";
import { apiAs, signIn } from "../lib/app.mjs";

const PIN = "597314";

export default async function liveFeed({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const adminMaps = await apiAsMaps(base, USER.username, USER.password);
  const phone = await memberWithPhone(adminMaps, "fiona", "tablet");
  const code = await admin("POST", "/api/alarm/codes", { label: "Live feed test", pin: PIN });
  if (code.status !== 201 && code.status !== 200) throw new Error(`adding a code: ${code.status} ${JSON.stringify(code.body)}`);
  let clock = Math.floor(Date.now() / 1000);
  const next = () => (clock = Math.max(clock + 1, Math.floor(Date.now() / 1000)));

  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  // Every /ws/live connection passes through here, so the test can drop one from the
  // server's side.
  const routed = [];
  await context.routeWebSocket(/\/ws\/live$/, (ws) => {
    routed.push({ page: ws, server: ws.connectToServer() });
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`live-feed: ${error.message}`));
  const opened = [];
  page.on("websocket", (ws) => { if (/\/ws\/live$/.test(ws.url())) opened.push(ws); });
  const nav = (name) => page.getByRole("navigation").getByRole("link", { name, exact: true });
  const marker = page.locator('.person-marker[title="tablet"]');
  const entry = page.locator('.device-pick[data-device="fiona/tablet"]');
  const badge = page.locator(".alarm-state .badge");
  const down = page.locator("[data-feed=reconnecting]");

  try {
    await check("live-feed: map → alarm → map opens exactly one WebSocket", async () => {
      await publishMqtt(runtime, phone, { lat: 47.37, lon: 8.54, tst: next(), acc: 20 });
      await signIn(page, base, USER, "map");
      await marker.waitFor({ timeout: 10_000 });
      await nav("Alarm").click();
      await page.getByRole("heading", { name: "Alarm", level: 1 }).waitFor();
      await badge.waitFor({ timeout: 10_000 });
      await nav("Map").click();
      await marker.waitFor({ timeout: 10_000 });
      await page.waitForTimeout(500);
      expectEqual(opened.length, 1, "WebSockets opened by the page");
      expectEqual(opened[0].isClosed(), false, "the one socket is still open");
    });

    await check("live-feed: the marker moves on a published point (shared feed)", async () => {
      const before = await marker.evaluate((el) => el.style.transform);
      await publishMqtt(runtime, phone, { lat: 47.38, lon: 8.55, tst: next(), acc: 10 });
      await eventually("the list shows the new position", async () =>
        (await entry.textContent()).includes("47.38000, 8.55000"));
      const after = await marker.evaluate((el) => el.style.transform);
      if (after === before) throw new Error(`marker did not move (${before})`);
    });

    await check("live-feed: the alarm badge changes on an arm made elsewhere", async () => {
      await nav("Alarm").click();
      await badge.waitFor({ timeout: 10_000 });
      const status = await admin("GET", "/api/alarm");
      if (status.body.state !== "disarmed") await admin("POST", "/api/alarm/disarm", { code: PIN });
      await page.waitForFunction(() => document.querySelector(".alarm-state .badge")?.dataset.state === "disarmed", null, { timeout: 10_000 });
      const armed = await admin("POST", "/api/alarm/arm", { mode: "home", code: PIN, force: true });
      expectEqual(armed.status, 200, `armed over the API (${JSON.stringify(armed.body)})`);
      await page.waitForFunction(() => ["arming", "armed_home"].includes(document.querySelector(".alarm-state .badge")?.dataset.state), null, { timeout: 10_000 });
      await admin("POST", "/api/alarm/disarm", { code: PIN });
      await page.waitForFunction(() => document.querySelector(".alarm-state .badge")?.dataset.state === "disarmed", null, { timeout: 10_000 });
      expectEqual(opened.length, 1, "still one WebSocket");
    });

    await check("live-feed: dropped by the server, it says Reconnecting… and comes back by itself", async () => {
      await nav("Map").click();
      await marker.waitFor({ timeout: 10_000 });
      const last = routed.at(-1);
      await last.server.close();
      await last.page.close({ code: 1011, reason: "test drops the feed" });
      await down.waitFor({ state: "visible", timeout: 5_000 });
      await page.screenshot({ path: `${shots}/live-feed-reconnecting-desktop-1280x800.png` });
      // Published while the feed is down: the new connection's snapshot brings it.
      await publishMqtt(runtime, phone, { lat: 47.39, lon: 8.56, tst: next(), acc: 10 });
      await down.waitFor({ state: "detached", timeout: 15_000 });
      expectEqual(opened.length, 2, "one new WebSocket");
      await eventually("the list shows the position sent while the feed was down", async () =>
        (await entry.textContent()).includes("47.39000, 8.56000"));
      // And the alarm still follows the new connection.
      await nav("Alarm").click();
      await badge.waitFor({ timeout: 10_000 });
      let rearmed = await admin("POST", "/api/alarm/arm", { mode: "home", code: PIN, force: true });
      for (let i = 0; i < 10 && rearmed.body?.reason === "rearm_guard"; i += 1) {
        // Arming right after a disarm is refused for a moment.
        await page.waitForTimeout(1_000 * (rearmed.body.retry_after_secs ?? 1));
        rearmed = await admin("POST", "/api/alarm/arm", { mode: "home", code: PIN, force: true });
      }
      expectEqual(rearmed.status, 200, `armed again (${JSON.stringify(rearmed.body)})`);
      await page.waitForFunction(() => ["arming", "armed_home"].includes(document.querySelector(".alarm-state .badge")?.dataset.state), null, { timeout: 10_000 });
      await admin("POST", "/api/alarm/disarm", { code: PIN });
      expectEqual(opened.length, 2, "no further WebSocket");
    });
  } finally {
    await context.close();
  }
}
