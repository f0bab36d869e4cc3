// History: points published over HTTP (POST /pub) at known local times on a past date; picking
// the date shows them all; dragging the start handle and moving the end handle with the
// keyboard narrows the window, and the point count shown always equals the points published
// inside the window the labels name (the end minute included whole); the URL keeps the view,
// and reloading it reproduces it. At phone and desktop sizes.
import { apiAs, memberWithPhone, publishHttp, signIn, eventually, VIEWPORTS } from "../lib/maps.mjs";

export default async function history({ browser, base, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER.username, USER.password);
  const phone = await memberWithPhone(admin, "hugo", "fairphone");
  // Three days ago, local time (the browser and this test share the machine's time zone).
  const day = new Date();
  day.setDate(day.getDate() - 3);
  const [y, m, d] = [day.getFullYear(), day.getMonth(), day.getDate()];
  const date = `${y}-${String(m + 1).padStart(2, "0")}-${String(d).padStart(2, "0")}`;
  // 14 points, 07:00 to 16:45 every 45 min, walking north-east; one at 12:59:30 to check the
  // end minute is included whole.
  const times = [];
  for (let i = 0; i < 14; i += 1) times.push(new Date(y, m, d, 7, i * 45).getTime());
  times.push(new Date(y, m, d, 12, 59, 30).getTime());
  times.sort((a, b) => a - b);
  await publishHttp(base, phone, times.map((t, i) => ({ tst: Math.floor(t / 1000), lat: 47.37 + i * 0.002, lon: 8.54 + i * 0.003, acc: 8 })));
  // A region entry at 09:10, shown as a pin in any window that holds it.
  const entered = new Date(y, m, d, 9, 10).getTime() / 1000;
  await publishHttp(base, phone, [{ _type: "transition", event: "enter", desc: "Office", t: "c", tst: entered, wtst: entered - 86400, lat: 47.375, lon: 8.55, acc: 10 }]);
  const minuteOf = (hhmm) => new Date(y, m, d, Number(hhmm.slice(0, 2)), Number(hhmm.slice(3, 5))).getTime();
  const expected = (from, to) => times.filter((t) => t >= minuteOf(from) && t < minuteOf(to) + 60_000).length;

  for (const [label, viewport] of VIEWPORTS) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`history ${label}: ${error.message}`));
    const count = page.locator('[data-stat="points"]');
    const fromLabel = page.locator('output[data-label="from"]');
    const toLabel = page.locator('output[data-label="to"]');
    const shown = async () => Number(await count.textContent());
    const matches = async (what) => {
      const [from, to] = [await fromLabel.textContent(), await toLabel.textContent()];
      const want = expected(from, to);
      await eventually(`${what}: ${want} points in ${from}–${to}`, async () => (await shown()) === want);
      return { from, to, want };
    };

    await check(`history ${label}: picking the date shows every point of that day`, async () => {
      await signIn(page, base, "hugo", phone.password);
      await page.getByRole("navigation").getByRole("link", { name: "History" }).click();
      await page.getByLabel("Device").waitFor({ timeout: 10_000 });
      await page.getByLabel("Date").fill(date);
      await eventually("15 points", async () => (await shown()) === 15);
      expectEqual(await fromLabel.textContent(), "00:00", "from label");
      expectEqual(await toLabel.textContent(), "23:59", "to label");
      const dots = await page.locator(".track-point").count();
      expectEqual(dots, 15, "points drawn on the map");
      await page.locator('.leaflet-marker-icon[title^="Entered Office 09:10"]').waitFor({ timeout: 5_000 });
    });

    await check(`history ${label}: dragging the start handle narrows the window (labels live)`, async () => {
      const slider = await page.locator(".span-slider").boundingBox();
      const y0 = slider.y + slider.height / 2;
      await page.mouse.move(slider.x + 8, y0);
      await page.mouse.down();
      await page.mouse.move(slider.x + slider.width * 0.2, y0, { steps: 5 });
      const midDrag = await fromLabel.textContent();
      await page.mouse.move(slider.x + slider.width * 0.42, y0, { steps: 5 });
      await page.mouse.up();
      const { from, want } = await matches("after the drag");
      if (from === "00:00" || midDrag === "00:00") throw new Error(`labels did not follow the drag (${midDrag}, ${from})`);
      if (want === 15 || want === 0) throw new Error(`the drag to ${from} should leave some points out`);
    });

    await check(`history ${label}: the keyboard moves the end handle; its minute counts whole`, async () => {
      await page.locator("#history-to").focus();
      await page.keyboard.press("PageDown");
      await page.keyboard.press("PageDown");
      const { to } = await matches("after PageDown");
      if (to === "23:59") throw new Error("PageDown did not move the end handle");
      // Set the end to exactly 12:59 with the arrow keys: the point at 12:59:30 is inside.
      const target = 12 * 60 + 59;
      const now = Number(await page.locator("#history-to").inputValue());
      const key = now > target ? "ArrowLeft" : "ArrowRight";
      for (let i = 0; i < Math.abs(now - target); i += 1) await page.keyboard.press(key);
      expectEqual(await toLabel.textContent(), "12:59", "end label");
      const { from, want } = await matches("end at 12:59");
      expectEqual(want, expected(from, "12:58") + 1, "the 12:59:30 point is counted");
      await page.screenshot({ path: `${shots}/${label}-history.png` });
    });

    await check(`history ${label}: the URL keeps the view and reloading reproduces it`, async () => {
      const [from, to, points] = [await fromLabel.textContent(), await toLabel.textContent(), await shown()];
      const url = new URL(page.url());
      expectEqual(url.searchParams.get("date"), date, "date in the URL");
      expectEqual(url.searchParams.get("to"), to, "end in the URL");
      await page.reload();
      await eventually(`${points} points after reload`, async () => (await shown()) === points);
      expectEqual(await fromLabel.textContent(), from, "from after reload");
      expectEqual(await toLabel.textContent(), to, "to after reload");
      expectEqual(await page.getByLabel("Date").inputValue(), date, "date after reload");
    });

    await check(`history ${label}: quick range "Yesterday" and back`, async () => {
      await page.getByRole("button", { name: "Yesterday" }).click();
      await eventually("no points yesterday", async () => (await shown()) === 0);
      await page.getByText("No points in this window.").waitFor();
    });
    await context.close();
  }
}
