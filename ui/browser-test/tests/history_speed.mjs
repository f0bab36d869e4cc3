// History coloured by speed: a phone publishes points over MQTT with known speeds (`vel`, km/h)
// and one without; choosing "speed" draws each point in the colour of its step on the legend
// (read from the SVG paths Leaflet renders), the point without a speed in the legend's grey,
// the legend names every step in text; the choice is kept in the URL and by a reload; "time"
// brings the time colours back. At phone and desktop sizes (full-page screenshots, axe).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { apiAs, memberWithPhone, publishMqtt, signIn, eventually, VIEWPORTS } from "../lib/maps.mjs";
import { assertAccessible } from "../lib/app.mjs";

// Speeds published in this order, and the legend text of the step each falls in.
const SPEEDS = [
  [5, "0–29 km/h"],
  [45, "30–59 km/h"],
  [75, "60–89 km/h"],
  [105, "90–119 km/h"],
  [150, "120+ km/h"],
  [null, "no speed reported"],
  [31, "30–59 km/h"],
];

export default async function historySpeed({ browser, base, dataDir, USER, shots, check, expectEqual, errors }) {
  const runtime = JSON.parse(await readFile(join(dataDir, "runtime.json"), "utf8"));
  const admin = await apiAs(base, USER.username, USER.password);
  const phone = await memberWithPhone(admin, "vera", "bike");
  const day = new Date();
  day.setDate(day.getDate() - 2);
  const [y, m, d] = [day.getFullYear(), day.getMonth(), day.getDate()];
  const date = `${y}-${String(m + 1).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
  for (const [i, [vel]] of SPEEDS.entries()) {
    const tst = Math.floor(new Date(y, m, d, 10, i * 10).getTime() / 1000);
    const point = { tst, lat: 47.3 + i * 0.004, lon: 8.5 + i * 0.006, acc: 5 };
    if (vel !== null) point.vel = vel;
    await publishMqtt(runtime, phone, point);
  }
  const vera = await apiAs(base, phone.username, phone.password);
  const [device] = await vera("GET", "api/owntracks/devices");

  await check("history speed: the track API carries each point's vel", async () => {
    const from = new Date(y, m, d).getTime();
    const track = await vera("GET", `api/owntracks/devices/${device.device_id}/track?from=${from}&to=${from + 86_400_000}`);
    expectEqual(JSON.stringify(track.vel), JSON.stringify(SPEEDS.map(([v]) => v)), "vel");
    expectEqual(track.points[0].length, 3, "points keep [ms, lat, lon]");
  });

  for (const [label, viewport] of VIEWPORTS) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`history speed ${label}: ${error.message}`));
    const fills = () => page.locator("path.track-point").evaluateAll((paths) => paths.map((p) => p.getAttribute("fill")));
    const legendColour = async (text) => page.locator(".speed-legend li").filter({ hasText: text }).getAttribute("data-speed-colour");

    await check(`history speed ${label}: choosing speed colours the points by the legend's steps`, async () => {
      await signIn(page, base, phone.username, phone.password);
      await page.getByRole("navigation").getByRole("link", { name: "History" }).click();
      await page.getByLabel("Device").waitFor({ timeout: 10_000 });
      await page.getByLabel("Date").fill(date);
      await eventually(`${SPEEDS.length} points`, async () => (await page.locator("path.track-point").count()) === SPEEDS.length);
      const byTime = await fills();
      await page.getByRole("group", { name: "Colour" }).getByLabel("speed").check();
      // Every step is named in text, and the grey of "no speed".
      for (const text of ["0–29 km/h", "30–59 km/h", "60–89 km/h", "90–119 km/h", "120+ km/h", "no speed reported"]) {
        await page.locator(".speed-legend li").filter({ hasText: text }).waitFor({ timeout: 5_000 });
      }
      const expected = [];
      for (const [, text] of SPEEDS) expected.push(await legendColour(text));
      if (new Set(expected).size !== 6) throw new Error(`legend colours not distinct: ${expected}`);
      await eventually("speed colours", async () => JSON.stringify(await fills()) === JSON.stringify(expected));
      if (JSON.stringify(byTime) === JSON.stringify(expected)) throw new Error("time and speed colours are the same");
      // The line follows the speeds too: one run per change of step.
      const lines = await page.locator("path.leaflet-interactive:not(.track-point)").evaluateAll((paths) =>
        paths.map((p) => p.getAttribute("stroke")).filter((s) => s && s !== "#7c3aed"));
      if (!expected.slice(1).every((c) => lines.includes(c))) throw new Error(`line colours ${lines} miss some of ${expected}`);
      const url = new URL(page.url());
      expectEqual(url.searchParams.get("colour"), "speed", "colour in the URL");
      await page.screenshot({ path: `${shots}/${label}-history-speed.png`, fullPage: true });
      await assertAccessible(page, `history by speed (${label})`);
    });

    await check(`history speed ${label}: a reload keeps the speed colours; time brings the time colours back`, async () => {
      const expected = await fills();
      await page.reload();
      await eventually("speed colours after reload", async () => JSON.stringify(await fills()) === JSON.stringify(expected));
      if (!(await page.getByRole("group", { name: "Colour" }).getByLabel("speed").isChecked())) throw new Error("speed not chosen after reload");
      await page.getByRole("group", { name: "Colour" }).getByLabel("time").check();
      await eventually("time colours", async () => (await fills()).every((f) => f.startsWith("hsl(")));
      await page.locator(".speed-legend").waitFor({ state: "detached" });
      expectEqual(new URL(page.url()).searchParams.get("colour"), null, "no colour in the URL for time");
    });
    await context.close();
  }
}
