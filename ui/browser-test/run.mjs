// Browser test of the built UI: login errors, disabled button, sign in, navigation, reload,
// sign out; plus screenshots at phone and desktop sizes. Run after scripts/build-ui.sh:
//   cd ui/browser-test && npm install && npm test
// Env: CHROMIUM (default /usr/bin/chromium), SHOTS (screenshot dir, default /tmp/porchlight-ui).
import { mkdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startFakeServer, USER } from "./fake-api.mjs";

const dist = fileURLToPath(new URL("../dist/", import.meta.url));
const shots = process.env.SHOTS ?? "/tmp/porchlight-ui";
await mkdir(shots, { recursive: true });

const server = await startFakeServer(dist);
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});

let failures = 0;
async function check(name, body) {
  try {
    await body();
    console.log(`ok   ${name}`);
  } catch (error) {
    failures += 1;
    console.log(`FAIL ${name}\n     ${String(error.message ?? error).split("\n")[0]}`);
  }
}
function expectEqual(actual, expected, what) {
  if (actual !== expected) throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

const errors = [];
for (const [label, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 390, height: 844 }]]) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`${label}: ${error.message}`));
  const username = page.getByLabel("Username");
  const password = page.getByLabel("Password");
  const submit = page.getByRole("button", { name: /Sign(ing)? in/ });
  const alert = page.getByRole("alert");

  await check(`${label}: signed out, / shows the login form`, async () => {
    await page.goto(base);
    await username.waitFor({ timeout: 10_000 });
    expectEqual(await password.getAttribute("type"), "password", "password field type");
    await page.screenshot({ path: `${shots}/${label}-login.png` });
  });

  await check(`${label}: wrong password, Enter submits, button disabled, 401 message shown`, async () => {
    await username.fill(USER.username);
    await password.fill("wrong");
    await password.press("Enter");
    await page.getByRole("button", { name: "Signing in…" }).waitFor({ timeout: 2_000 });
    expectEqual(await submit.isDisabled(), true, "button disabled while signing in");
    expectEqual((await alert.textContent({ timeout: 5_000 })).trim(), "Wrong username or password.", "alert");
    expectEqual(await submit.isDisabled(), false, "button enabled again");
    expectEqual(await password.inputValue(), "", "password cleared after failure");
  });

  await check(`${label}: 429 shows the server's message`, async () => {
    await username.fill("locked");
    await password.fill("x");
    await submit.click();
    await page.getByText("Too many attempts. Try again in 5 minutes.").waitFor({ timeout: 5_000 });
    await page.screenshot({ path: `${shots}/${label}-login-error.png` });
  });

  await check(`${label}: right password opens the shell`, async () => {
    await username.fill(USER.username);
    await password.fill(USER.password);
    await password.press("Enter");
    await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 5_000 });
    await page.getByText(USER.username, { exact: true }).waitFor();
    await page.getByRole("heading", { name: "Map" }).waitFor();
    await page.screenshot({ path: `${shots}/${label}-shell.png` });
  });

  await check(`${label}: navigation shows each placeholder section`, async () => {
    for (const name of ["History", "Alarm", "MQTT settings", "Map"]) {
      await page.getByRole("navigation").getByRole("button", { name }).click();
      await page.getByRole("heading", { name }).waitFor({ timeout: 2_000 });
      const current = page.getByRole("navigation").getByRole("button", { name });
      expectEqual(await current.getAttribute("aria-current"), "page", `${name} aria-current`);
    }
  });

  await check(`${label}: reload keeps the session (GET /api/me)`, async () => {
    await page.reload();
    await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 10_000 });
  });

  await check(`${label}: sign out returns to login, and reload stays there`, async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await username.waitFor({ timeout: 5_000 });
    await page.reload();
    await username.waitFor({ timeout: 10_000 });
  });

  await check(`${label}: a deep link gets index.html and the app`, async () => {
    await page.goto(`${base}alarm`);
    await username.waitFor({ timeout: 10_000 });
  });
  await context.close();
}

await check("no uncaught page errors", async () => {
  if (errors.length) throw new Error(errors.join("; "));
});

await browser.close();
server.close();
console.log(failures ? `${failures} failed` : `all passed; screenshots in ${shots}`);
process.exit(failures ? 1 : 0);
