// Devices: adding a phone shows its credentials and QR code once; the QR code (read by
// Debian's zbarimg from the image as the browser drew it) is an owntracks:///config?inline=
// URL whose configuration names this server's host and MQTT port and the user; the .otrc
// download is the same configuration; once the phone reports, "Report location now" reaches
// it over MQTT; friends are granted and removed; deleting (with its history) removes the row.
// The desktop pass adds its phone after the phone pass deleted one, so the new key reuses the
// deleted key's id (SQLite): its reports must still be stored (an ingest cache once kept the
// old name).
// At phone and desktop sizes.
import { execFile, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { apiAs, publishMqtt, signIn, eventually, VIEWPORTS } from "../lib/maps.mjs";

const run = promisify(execFile);

export default async function devices({ browser, base, runtime, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER.username, USER.password);
  const password = "dora browser test pw";
  await admin("POST", "api/users", { username: "dora", password, role: "user" });
  await admin("POST", "api/users", { username: "erik", password: "erik browser test pw", role: "user" });

  for (const [label, viewport] of VIEWPORTS) {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`devices ${label}: ${error.message}`));
    const name = `${label}-phone`;
    const row = page.locator(`tr[data-device="dora/${name}"]`);
    let key;

    await check(`devices ${label}: adding one shows credentials and a QR code that decodes`, async () => {
      await signIn(page, base, "dora", password);
      await page.getByRole("navigation").getByRole("link", { name: "Devices" }).click();
      await page.getByLabel("Device name").fill(name);
      await page.getByRole("button", { name: "Add device" }).click();
      const qr = page.getByRole("img", { name: "QR code with the OwnTracks configuration" });
      await qr.waitFor({ timeout: 10_000 });
      expectEqual(await page.locator('[data-secret="username"]').textContent(), "dora", "user name shown");
      key = await page.locator('[data-secret="password"]').textContent();
      if (key.length < 16) throw new Error(`password shown: ${key}`);
      await row.waitFor();
      await page.screenshot({ path: `${shots}/${label}-devices-added.png`, fullPage: true });
      const png = `${shots}/${label}-qr.png`;
      await qr.screenshot({ path: png });
      const { stdout } = await run("zbarimg", ["--raw", "-q", png]);
      const url = stdout.trim();
      if (!url.startsWith("owntracks:///config?inline=")) throw new Error(`QR says ${url}`);
      const inline = decodeURIComponent(url.slice("owntracks:///config?inline=".length));
      const config = JSON.parse(Buffer.from(inline, "base64").toString("utf8"));
      expectEqual(config.host, "127.0.0.1", "host");
      expectEqual(config.port, runtime.mqtt_port, "port");
      expectEqual(config.username, "dora", "user");
      expectEqual(config.password, key, "password");
      expectEqual(config.deviceId, name, "device id");
    });

    await check(`devices ${label}: the .otrc download is the configuration`, async () => {
      const [download] = await Promise.all([
        page.waitForEvent("download"),
        page.getByRole("link", { name: "Download .otrc" }).click(),
      ]);
      expectEqual(download.suggestedFilename(), `${name}.otrc`, "file name");
      const otrc = JSON.parse(await readFile(await download.path(), "utf8"));
      expectEqual(otrc.username, "dora", ".otrc user");
      expectEqual(otrc.port, runtime.mqtt_port, ".otrc port");
    });

    await check(`devices ${label}: the credentials are shown once`, async () => {
      await page.getByRole("button", { name: "Done, hide the credentials" }).click();
      expectEqual(await page.getByText(key).count(), 0, "password gone after Done");
      await page.reload();
      await page.getByRole("navigation").getByRole("link", { name: "Devices" }).click();
      await row.waitFor({ timeout: 10_000 });
      expectEqual(await page.getByText(key).count(), 0, "password not shown after reload");
      expectEqual(await page.locator("img[alt^='QR code']").count(), 0, "no QR after reload");
    });

    await check(`devices ${label}: once it reports, "Report location now" reaches the phone over MQTT`, async () => {
      const phone = { username: "dora", device: name, key };
      await publishMqtt(runtime, phone, { lat: 59.33, lon: 18.06, tst: Math.floor(Date.now() / 1000), batt: 64 });
      await eventually("the phone's report stored", async () =>
        (await admin("GET", "api/owntracks/devices")).some((d) => d.user === "dora" && d.device === name));
      await page.reload();
      await page.getByRole("navigation").getByRole("link", { name: "Devices" }).click();
      await row.getByRole("button", { name: "Report location now" }).waitFor({ timeout: 10_000 });
      if (!(await row.textContent()).includes("64%")) throw new Error(`no battery: ${await row.textContent()}`);
      // The phone listens on its command topic, as the OwnTracks app does.
      const sub = spawn("mosquitto_sub", [
        "-h", "127.0.0.1", "-p", String(runtime.mqtt_port), "-u", "dora", "-P", key,
        "-i", `sub-${label}-${process.pid}`, "-t", `owntracks/dora/${name}/cmd`, "-C", "1", "-W", "10",
      ]);
      let got = "";
      sub.stdout.on("data", (d) => { got += d; });
      const done = new Promise((r) => sub.on("exit", r));
      await new Promise((r) => setTimeout(r, 500)); // subscribed
      await row.getByRole("button", { name: "Report location now" }).click();
      await page.getByText("Sent to the phone.").waitFor({ timeout: 5_000 });
      await done;
      expectEqual(JSON.parse(got).action, "reportLocation", "command on the phone's topic");
    });

    await check(`devices ${label}: a region is checked, then sent as setWaypoints`, async () => {
      await row.getByRole("button", { name: "Add region…" }).click();
      await page.getByRole("button", { name: "Send region" }).click();
      await page.getByText("Give the region a name").waitFor({ timeout: 5_000 });
      const sub = spawn("mosquitto_sub", [
        "-h", "127.0.0.1", "-p", String(runtime.mqtt_port), "-u", "dora", "-P", key,
        "-i", `sub2-${label}-${process.pid}`, "-t", `owntracks/dora/${name}/cmd`, "-C", "1", "-W", "10",
      ]);
      let got = "";
      sub.stdout.on("data", (d) => { got += d; });
      const done = new Promise((r) => sub.on("exit", r));
      await new Promise((r) => setTimeout(r, 500));
      await page.getByLabel("Region name").fill("Home");
      await page.getByLabel("Latitude").fill("59.3293");
      await page.getByLabel("Longitude").fill("18.0686");
      await page.getByLabel("Radius (m)").fill("150");
      await page.getByRole("button", { name: "Send region" }).click();
      await page.getByText("Sent to the phone.").waitFor({ timeout: 5_000 });
      await done;
      const command = JSON.parse(got);
      expectEqual(command.action, "setWaypoints", "action");
      const region = command.waypoints.waypoints[0];
      expectEqual([region.desc, region.lat, region.lon, region.rad].join(" "), "Home 59.3293 18.0686 150", "region");
    });

    await check(`devices ${label}: friends are granted and removed`, async () => {
      await page.getByLabel("User name").fill("erik");
      await page.getByRole("button", { name: "Allow" }).click();
      await page.getByText("may see my devices").waitFor({ timeout: 5_000 });
      const grants = await admin("GET", "api/friends");
      if (!grants.some((g) => g.owner === "dora" && g.viewer === "erik")) throw new Error("no grant on the server");
      await page.screenshot({ path: `${shots}/${label}-devices.png` });
      await page.screenshot({ path: `${shots}/${label}-devices-full.png`, fullPage: true });
      await page.locator("ul.friends").getByRole("button", { name: "Remove" }).click();
      await page.getByText("Nobody else sees your devices.").waitFor({ timeout: 5_000 });
    });

    await check(`devices ${label}: delete with history removes the device`, async () => {
      await row.getByRole("button", { name: "Delete…" }).click();
      await page.getByRole("button", { name: "Delete with its history" }).click();
      await eventually("row gone", async () => (await row.count()) === 0);
      const left = await admin("GET", "api/owntracks/devices");
      if (left.some((d) => d.user === "dora" && d.device === name)) throw new Error("history not purged");
    });
    await context.close();
  }
}
