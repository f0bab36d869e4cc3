// Certificates (issue 15): an admin issues a client certificate for a device in the browser;
// the one-time PKCS#12 password is shown and the downloads the page offers are the real files
// (the PEM bundle starts with the certificate, the .otrp is DER that `openssl pkcs12 -legacy`
// opens with that password, and its certificate is the one GET /api/certificates lists); the
// CA downloads are the CA; revoking (after a confirmation that says live sessions are closed)
// marks the row revoked, as the API does. Settings → Certificate authority: the fingerprint
// shown is the API's, Rotate (confirmed) shows the new one and retires the old one, a broken
// import says why and a real one (made with openssl) becomes active. The MQTT settings show
// the certificate port. A user (not an admin) gets certificates for their own devices only and
// sees no CA settings (no link, "Admins only", no Rotate/Import). At phone and desktop sizes.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { apiAs, DESKTOP, PHONE, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const run = promisify(execFile);

// Clicks a download link and returns the file the browser saved (a real download: data: links
// built by the page and /api/ca's attachment alike).
async function download(page, selector) {
  const [saved] = await Promise.all([page.waitForEvent("download", { timeout: 10_000 }), page.locator(selector).click()]);
  return { name: saved.suggestedFilename(), bytes: await readFile(await saved.path()) };
}

const text = (bytes) => bytes.toString("utf8");

export default async function certificates({ browser, base, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const tmp = await mkdtemp(join(tmpdir(), "porchlight-certs-"));
  const certUser = { username: "certuser", password: "certuser browser test pw" };
  const created = await admin("POST", "/api/users", { ...certUser, role: "user" });
  if (created.status !== 201) throw new Error(`adding ${certUser.username}: ${created.status}`);
  for (const [username, name] of [["admin", "certphone"], ["certuser", "certpixel"]]) {
    const r = await admin("POST", "/api/devices", { name, username });
    if (r.status !== 201 && r.status !== 200) throw new Error(`adding ${username}/${name}: ${r.status} ${JSON.stringify(r.body)}`);
  }

  const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`certificates: ${error.message}`));
  const nav = (name) => page.getByRole("navigation").getByRole("link", { name, exact: true });
  let serial;
  let password;

  try {
    await check("certificates: an admin issues one for a device; the password is shown once with the warning", async () => {
      await signIn(page, base, USER, "map");
      await nav("Certificates").click();
      await page.getByRole("heading", { name: "Certificates", level: 1 }).waitFor({ timeout: 10_000 });
      await page.getByLabel("For device").selectOption("admin/certphone");
      await page.getByRole("button", { name: "Issue a certificate" }).click();
      const secret = page.locator('[data-secret="p12-password"]');
      await secret.waitFor({ timeout: 10_000 });
      password = (await secret.textContent()).trim();
      if (password.length < 16) throw new Error(`password shown: ${JSON.stringify(password)}`);
      await page.getByText("The password and the private key are shown only now").waitFor();
      serial = await page.locator(".issued").getAttribute("data-serial");
      const listed = (await admin("GET", "/api/certificates")).body.find((c) => c.serial === serial);
      expectEqual(listed?.subject, "admin/certphone", "the API lists the new certificate");
      expectEqual(listed?.status, "active", "its status");
      await page.locator(`tr[data-serial="${serial}"][data-status="active"]`).waitFor({ timeout: 10_000 });
      // Where the certificate logs in: the certificate listener's port, as the admin API says.
      const broker = (await admin("GET", "/api/settings/mqtt/broker")).body;
      expectEqual((await page.locator("[data-cert-port]").textContent()).trim(), String(broker.cert_port), "the port shown with the certificate");
      await screenshotsAndAxe(page, shots, "certificates-issued");
    });

    await check("certificates: the downloads are the PEM bundle and a PKCS#12 that openssl opens with that password", async () => {
      const pem = await download(page, '[data-download="pem"]');
      if (!text(pem.bytes).startsWith("-----BEGIN CERTIFICATE-----")) throw new Error(`PEM bundle starts ${JSON.stringify(text(pem.bytes).slice(0, 40))}`);
      if (!text(pem.bytes).includes("PRIVATE KEY-----")) throw new Error("no key in the PEM bundle");
      const otrp = await download(page, '[data-download="otrp"]');
      expectEqual(otrp.name, "admin-certphone.otrp", "the .otrp file name");
      if (otrp.bytes.length < 500 || otrp.bytes[0] !== 0x30) throw new Error(`.otrp: ${otrp.bytes.length} bytes starting ${otrp.bytes[0]}`);
      const p12 = await download(page, '[data-download="p12"]');
      expectEqual(Buffer.compare(p12.bytes, otrp.bytes), 0, ".p12 is the same file");
      const file = join(tmp, "cert.otrp");
      await writeFile(file, otrp.bytes);
      const { stdout } = await run("openssl", ["pkcs12", "-in", file, "-legacy", "-passin", `pass:${password}`, "-nokeys", "-clcerts"]);
      const certFile = join(tmp, "cert.pem");
      await writeFile(certFile, stdout);
      const { stdout: serialLine } = await run("openssl", ["x509", "-in", certFile, "-noout", "-serial"]);
      expectEqual(serialLine.trim().replace(/^serial=0*/i, "").toLowerCase(), serial.replace(/^0+/, ""), "the PKCS#12's certificate is the listed one");
      const caPem = await download(page, '[data-download="ca-pem"]');
      expectEqual(caPem.name, "porchlight-ca.pem", "CA PEM file name");
      if (!text(caPem.bytes).startsWith("-----BEGIN CERTIFICATE-----")) throw new Error("the CA PEM download is not PEM");
      const caDer = await download(page, '[data-download="ca-der"]');
      if (caDer.bytes[0] !== 0x30 || caDer.bytes.length < 200) throw new Error("the CA DER download is not DER");
    });

    await check("certificates: Revoke asks first (live sessions closed), then the row and the API say revoked", async () => {
      await page.getByRole("button", { name: "Done, hide the password" }).click();
      expectEqual(await page.locator('[data-secret="p12-password"]').count(), 0, "the password is hidden");
      await page.locator(`tr[data-serial="${serial}"]`).getByRole("button", { name: /^Revoke/ }).click();
      const dialog = page.getByRole("alertdialog");
      await dialog.getByText("live MQTT sessions that use it are closed now").waitFor({ timeout: 5_000 });
      await dialog.getByRole("button", { name: "Revoke certificate" }).click();
      await page.locator(`tr[data-serial="${serial}"][data-status="revoked"]`).waitFor({ timeout: 10_000 });
      expectEqual((await admin("GET", "/api/certificates")).body.find((c) => c.serial === serial)?.status, "revoked", "API status");
      expectEqual(await page.locator(`tr[data-serial="${serial}"]`).getByRole("button", { name: /^Revoke/ }).count(), 0, "no Revoke on a revoked one");
      await screenshotsAndAxe(page, shots, "certificates");
    });

    await check("certificates: the MQTT settings show the certificate port as the API does", async () => {
      await nav("MQTT settings").click();
      const shown = page.locator('[data-field="cert_port"]');
      await shown.waitFor({ timeout: 10_000 });
      const { body } = await admin("GET", "/api/settings/mqtt/broker");
      expectEqual((await shown.textContent()).trim(), body.cert_port == null ? "—" : String(body.cert_port), "cert_port");
    });

    const fingerprint = page.locator('[data-ca="active"] [data-field="fingerprint"]');
    await check("certificates: Settings → Certificate authority shows the active CA; Rotate (confirmed) changes it", async () => {
      await nav("CA settings").click();
      await fingerprint.waitFor({ timeout: 10_000 });
      const before = await fingerprint.getAttribute("data-hex");
      expectEqual(before, (await admin("GET", "/api/ca/info")).body.active.fingerprint, "fingerprint shown");
      await screenshotsAndAxe(page, shots, "ca-settings");
      await page.getByRole("button", { name: "Rotate the CA…" }).click();
      await page.getByRole("alertdialog").getByText("Certificates from the old CA keep working until they are reissued").waitFor({ timeout: 5_000 });
      await page.getByRole("button", { name: "Rotate now" }).click();
      await page.getByText("A new CA is active.").waitFor({ timeout: 10_000 });
      const after = await fingerprint.getAttribute("data-hex");
      if (after === before) throw new Error("the fingerprint did not change");
      const info = (await admin("GET", "/api/ca/info")).body;
      expectEqual(after, info.active.fingerprint, "the new fingerprint is the API's");
      await page.locator(`.retired li[data-fingerprint="${before}"]`).waitFor();
    });

    await check("certificates: Import refuses what is not a CA, and makes a real one active", async () => {
      await page.getByLabel("CA certificate (PEM)").fill("-----BEGIN CERTIFICATE-----\nnot one\n-----END CERTIFICATE-----\n");
      await page.getByLabel("CA private key (PEM)").fill("nothing");
      await page.getByRole("button", { name: "Import CA" }).click();
      await page.getByRole("alert").filter({ hasText: "Couldn't import the CA" }).waitFor({ timeout: 10_000 });
      const key = join(tmp, "ca.key");
      const cert = join(tmp, "ca.crt");
      await run("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
        "-subj", "/CN=Browser test CA", "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
      const { stdout } = await run("openssl", ["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]);
      const expected = stdout.trim().split("=")[1].replaceAll(":", "").toLowerCase();
      await page.getByLabel("CA certificate (PEM)").fill(await readFile(cert, "utf8"));
      await page.getByLabel("CA private key (PEM)").fill(await readFile(key, "utf8"));
      await page.getByRole("button", { name: "Import CA" }).click();
      await page.getByText("The imported CA is active.").waitFor({ timeout: 10_000 });
      expectEqual(await fingerprint.getAttribute("data-hex"), expected, "the imported CA is shown active");
      expectEqual((await admin("GET", "/api/ca/info")).body.active.fingerprint, expected, "and the API agrees");
      expectEqual(await page.getByLabel("CA private key (PEM)").inputValue(), "", "the key field is emptied");
    });
  } finally {
    await context.close();
  }

  const phone = await browser.newContext({ viewport: PHONE });
  const userPage = await phone.newPage();
  userPage.on("pageerror", (error) => errors.push(`certificates (user): ${error.message}`));
  try {
    await check("certificates: a user issues for their own device only and sees no CA settings", async () => {
      await signIn(userPage, base, certUser, "certificates");
      await userPage.getByRole("heading", { name: "Certificates", level: 1 }).waitFor({ timeout: 10_000 });
      const options = await userPage.getByLabel("For device").locator("option").allTextContents();
      expectEqual(JSON.stringify(options), JSON.stringify(["certuser/certpixel"]), "devices offered");
      await userPage.getByRole("button", { name: "Issue a certificate" }).click();
      await userPage.locator('[data-secret="p12-password"]').waitFor({ timeout: 10_000 });
      const mine = (await (await apiAs(base, certUser))("GET", "/api/certificates")).body;
      expectEqual(JSON.stringify(mine.map((c) => c.subject)), JSON.stringify(["certuser/certpixel"]), "the user's list (API)");
      await userPage.locator('tr[data-status="active"]').first().waitFor();
      // The narrowest phones (360 px): the list, the one-time password and its downloads fit.
      await userPage.setViewportSize({ width: 360, height: 740 });
      await userPage.waitForTimeout(150);
      const width = await userPage.evaluate(() => document.documentElement.scrollWidth);
      if (width > 360) throw new Error(`the certificates page is ${width} px wide at 360 px`);
      await userPage.screenshot({ path: `${shots}/certificates-user-360.png`, fullPage: true });
      expectEqual(await userPage.locator("tbody tr").count(), 1, "rows shown to the user");
      expectEqual(await userPage.getByRole("navigation").getByRole("link", { name: "CA settings" }).count(), 0, "no CA link");
      expectEqual(await userPage.getByRole("button", { name: /Rotate|Import/ }).count(), 0, "no Rotate/Import on the certificates page");
      await userPage.goto(`${base}settings/ca`);
      await userPage.getByRole("heading", { name: "Admins only" }).waitFor({ timeout: 10_000 });
      expectEqual(await userPage.getByRole("button", { name: /Rotate|Import/ }).count(), 0, "no Rotate/Import on /settings/ca");
    });
  } finally {
    await phone.close();
    await rm(tmp, { recursive: true, force: true });
  }
}
