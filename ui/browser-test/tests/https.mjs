// HTTPS (`porchlight serve --https`, ADR 0017 "HTTPS"): a second server, started here with HTTPS
// on, and a Chromium that trusts exactly its server key once the key's certificate is checked
// to be signed by the server's own CA (GET /api/ca) for the name used. Headless Chromium reads
// no CA from the command line; `--ignore-certificate-errors-spki-list` (honoured with the
// `--user-data-dir` Playwright passes) trusts one key, the nearest to "trusting our CA" without
// an NSS database. A name that is not loopback (`porchlight.test`, mapped to 127.0.0.1 and
// added to the certificate by `[ca] server_names`) gets the redirect and HSTS that a
// LAN name would.
import { spawn } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { chromium } from "playwright-core";
import { signIn } from "../lib/app.mjs";

const NAME = "porchlight.test";

// The server's certificate as presented on `port` (not yet trusted: checked below).
function serverCertificate(port) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: "localhost", rejectUnauthorized: false }, () => {
      const certificate = socket.getPeerX509Certificate();
      socket.end();
      resolve(certificate);
    });
    socket.on("error", reject);
  });
}

export default async function https({ bin, USER, shots, check, expectEqual, errors }) {
  const dataDir = await mkdtemp(join(tmpdir(), "porchlight-https-"));
  await writeFile(join(dataDir, "config.toml"), `[ca]\nserver_names = ["${NAME}"]\n`);
  const server = spawn(
    bin,
    ["serve", "--data-dir", dataDir, "--http-port", "0", "--mqtt-port", "0", "--bind", "127.0.0.1", "--https"],
    {
      env: { ...process.env, PORCHLIGHT_ADMIN_PASSWORD: USER.password, PORCHLIGHT_LOG: "warn" },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const serverExit = new Promise((resolve) => server.on("exit", resolve));
  let browser;
  try {
    let runtime;
    for (let i = 0; i < 300 && !runtime; i += 1) {
      try {
        runtime = JSON.parse(await readFile(join(dataDir, "runtime.json"), "utf8"));
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (!runtime) throw new Error("the HTTPS server did not start");
    const port = runtime.http_port;
    const secureBase = `https://${NAME}:${port}/`;

    let spki;
    await check("https: the server certificate is signed by our CA for its names", async () => {
      expectEqual(runtime.https_url, `https://localhost:${port}/`, "runtime.json https_url");
      const ca = new X509Certificate(await (await fetch(`http://127.0.0.1:${port}/api/ca`)).text());
      const cert = await serverCertificate(port);
      if (!cert.verify(ca.publicKey)) throw new Error("not signed by GET /api/ca");
      for (const name of [NAME, "localhost"]) if (!cert.checkHost(name)) throw new Error(`no SAN ${name}`);
      if (!cert.checkIP("127.0.0.1")) throw new Error("no SAN 127.0.0.1");
      spki = createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest("base64");
    });
    if (!spki) return;

    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
        `--ignore-certificate-errors-spki-list=${spki}`,
        `--host-resolver-rules=MAP ${NAME} 127.0.0.1`,
      ],
    });
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`https: ${error.message}`));

    await check("https: http:// is redirected to https:// on the same port, which loads the UI", async () => {
      const response = await page.goto(`http://${NAME}:${port}/login`);
      expectEqual(page.url(), `${secureBase}login`, "address after the redirect");
      expectEqual(response.status(), 200, "status");
      expectEqual((await response.allHeaders())["strict-transport-security"], "max-age=31536000", "HSTS");
      const redirect = await response.request().redirectedFrom()?.response();
      expectEqual(redirect?.status(), 308, "the plain answer");
    });

    await check("https: signing in gives a Secure cookie and the live map", async () => {
      await signIn(page, secureBase, USER);
      const cookie = (await context.cookies(secureBase)).find((c) => c.name === "porchlight_session");
      if (!cookie) throw new Error("no session cookie");
      expectEqual(cookie.secure, true, "Secure");
      expectEqual(cookie.httpOnly, true, "HttpOnly");
      await page.goto(secureBase);
      await page.waitForSelector(".map.leaflet-container", { timeout: 10_000 });
      // The live feed's WebSocket (wss://) is connected.
      await page.getByRole("status").filter({ hasText: "Live" }).waitFor({ timeout: 10_000 });
      await page.screenshot({ path: join(shots, "https-live-map.png") });
    });

    await check("https: adding a phone says where to get the CA certificate to trust, and the link serves it", async () => {
      await page.goto(`${secureBase}devices`);
      await page.getByLabel("Device name").fill("tlsphone");
      await page.getByLabel("Connection").selectOption("http");
      await page.getByRole("button", { name: "Add device" }).click();
      const trust = page.locator(".ca-trust");
      await trust.waitFor({ timeout: 10_000 });
      expectEqual(await trust.getAttribute("data-ca-url"), `${secureBase}api/ca`, "ca_url shown");
      await trust.getByText("install it as a trusted CA").waitFor();
      const der = await trust.getByRole("link", { name: /DER/ }).evaluate(async (a) => {
        const r = await fetch(a.href);
        return { status: r.status, first: new Uint8Array(await r.arrayBuffer())[0] };
      });
      expectEqual(JSON.stringify(der), JSON.stringify({ status: 200, first: 0x30 }), "the DER download");
      await page.screenshot({ path: join(shots, "https-devices-ca.png"), fullPage: true });
    });
  } finally {
    await browser?.close();
    server.kill("SIGTERM");
    const code = await serverExit;
    await check("https: the HTTPS server stops cleanly on SIGTERM", async () => expectEqual(code, 0, "exit code"));
    await rm(dataDir, { recursive: true, force: true });
  }
}
