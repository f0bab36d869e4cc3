// The live map: a phone publishes over MQTT and its marker appears on the map without a
// reload, then moves when it publishes again; the list beside the map shows it; fit all and
// follow; the time to first paint of the map; at phone and desktop sizes.
import { apiAs, memberWithPhone, publishMqtt, signIn, eventually, VIEWPORTS } from "../lib/maps.mjs";

export default async function live({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER.username, USER.password);
  const phone = await memberWithPhone(admin, "livia", "pixel");
  // Each point newer than the last (the map never moves a marker back to an older point).
  let clock = 0;
  const next = () => (clock = Math.max(clock + 1, Math.floor(Date.now() / 1000)));

  await check("live: GET /api/ui/config gives the map's tiles to signed-in users only", async () => {
    const config = await admin("GET", "api/ui/config");
    expectEqual(config.tile_url, "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "default tile URL");
    if (!config.tile_attribution.includes("OpenStreetMap")) throw new Error(`attribution: ${config.tile_attribution}`);
    expectEqual((await fetch(`${base}api/ui/config`)).status, 401, "signed out");
  });

  for (const [label, viewport] of VIEWPORTS) {
    const context = await browser.newContext({ viewport });
    // Every /ws/live connection passes through here, so the test can drop one.
    const sockets = [];
    await context.routeWebSocket(/\/ws\/live$/, (ws) => {
      sockets.push({ page: ws, server: ws.connectToServer() });
    });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`live ${label}: ${error.message}`));
    const marker = page.locator('.person-marker[title="pixel"]');
    const entry = page.locator('.device-pick[data-device="livia/pixel"]');

    await check(`live ${label}: the map draws (first paint timed)`, async () => {
      await signIn(page, base, "livia", phone.password);
      await page.reload();
      // Time to first paint of the map: navigation start → Leaflet's container in the page
      // (measured in the page; the UI build is whatever ui/dist holds, debug or release).
      await page.waitForFunction(() => document.querySelector(".map.leaflet-container"), null, { polling: "raf", timeout: 10_000 });
      const ms = await page.evaluate(() => Math.round(performance.now()));
      await page.getByRole("status").filter({ hasText: "Live" }).waitFor({ timeout: 10_000 });
      console.log(`     map drawn ${ms} ms after navigation start (loopback)`);
    });

    await check(`live ${label}: a phone's MQTT location appears without reload`, async () => {
      const lat = label === "phone" ? 52.52 : 48.8566;
      const lon = label === "phone" ? 13.405 : 2.3522;
      await publishMqtt(runtime, phone, { lat, lon, tst: next(), acc: 25, batt: 81 });
      await marker.waitFor({ timeout: 10_000 });
      await entry.waitFor();
      const text = await entry.textContent();
      if (!text.includes(`${lat.toFixed(5)}, ${lon.toFixed(5)}`)) throw new Error(`list says ${text}`);
      if (!text.includes("81%")) throw new Error(`no battery in ${text}`);
      if (!text.includes("online")) throw new Error(`not online: ${text}`);
      if (!/just now|min ago/.test(text)) throw new Error(`no age: ${text}`);
      const circles = await page.locator("path.leaflet-interactive, .leaflet-overlay-pane path").count();
      if (circles < 1) throw new Error("no accuracy circle drawn");
    });

    await check(`live ${label}: the marker moves when the phone publishes again`, async () => {
      await entry.click(); // select it (and zoom to it)
      expectEqual(await entry.getAttribute("aria-pressed"), "true", "picked in the list");
      await page.waitForTimeout(600); // the zoom animation
      const before = await marker.evaluate((el) => el.style.transform);
      const lat = label === "phone" ? 52.5205 : 48.857;
      const lon = label === "phone" ? 13.4095 : 2.356;
      await publishMqtt(runtime, phone, { lat, lon, tst: next(), acc: 10, batt: 79 });
      await eventually("the list shows the new position", async () =>
        (await entry.textContent()).includes(`${lat.toFixed(5)}, ${lon.toFixed(5)}`));
      const after = await marker.evaluate((el) => el.style.transform);
      if (after === before) throw new Error(`marker did not move (${before})`);
      expectEqual(await marker.count(), 1, "one marker for the phone");
      await page.screenshot({ path: `${shots}/${label}-live-map.png` });
    });

    await check(`live ${label}: the feed reconnects by itself and catches up`, async () => {
      const opened = sockets.length;
      const last = sockets.at(-1);
      await last.server.close();
      await last.page.close({ code: 1011, reason: "test drops the feed" });
      await page.locator(".live-head .feed").filter({ hasText: /Reconnecting/ }).waitFor({ timeout: 5_000 });
      const lat = label === "phone" ? 52.521 : 48.858;
      const lon = label === "phone" ? 13.41 : 2.357;
      // Published while the feed is down: the new connection's snapshot brings it.
      await publishMqtt(runtime, phone, { lat, lon, tst: next(), acc: 10, batt: 78 });
      await page.getByRole("status").filter({ hasText: /^Live$/ }).waitFor({ timeout: 15_000 });
      expectEqual(sockets.length, opened + 1, "one new WebSocket");
      await eventually("the list shows the position sent while the feed was down", async () =>
        (await entry.textContent()).includes(`${lat.toFixed(5)}, ${lon.toFixed(5)}`));
    });

    await check(`live ${label}: after a reload the marker is drawn from the last positions`, async () => {
      await page.reload();
      await marker.waitFor({ timeout: 10_000 });
      await entry.waitFor();
    });

    await check(`live ${label}: follow and fit all`, async () => {
      expectEqual(await page.getByLabel("Follow").isDisabled(), true, "follow needs a picked device");
      await entry.click();
      await page.getByLabel("Follow").check();
      await page.getByRole("button", { name: "Fit all" }).click();
      expectEqual(await page.getByLabel("Follow").isChecked(), false, "fit all stops following");
    });
    await context.close();
  }
}
