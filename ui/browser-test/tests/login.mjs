// The sign-in flow: login errors, disabled button, sign in, navigation by real URLs, reload,
// sign out, deep links (?next=), session expiry and the first sign-in with a one-time password;
// at phone and desktop sizes.
import { apiAs, screenshotsAndAxe } from "../lib/app.mjs";

export default async function login({ browser, base, USER, shots, check, expectEqual, throttle, errors }) {
  const admin = await apiAs(base, USER);

  for (const [label, viewport] of [["desktop", { width: 1280, height: 800 }], ["phone", { width: 375, height: 812 }]]) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on("pageerror", (error) => errors.push(`${label}: ${error.message}`));
    const username = page.locator("#login-username");
    const password = page.locator("#login-password");
    const submit = page.getByRole("button", { name: /Sign(ing)? in/ });
    const alert = page.getByRole("alert");
    const path = () => new URL(page.url()).pathname;

    await check(`${label}: signed out, / shows the login form at /login`, async () => {
      await page.goto(base);
      await username.waitFor({ timeout: 10_000 });
      expectEqual(await password.getAttribute("type"), "password", "password field type");
      expectEqual(path(), "/login", "path");
      if (label === "desktop") await screenshotsAndAxe(page, shots, "login");
    });

    await check(`${label}: wrong password, Enter submits, button disabled, 401 message shown`, async () => {
      await username.fill(USER.username);
      await password.fill("wrong");
      await password.press("Enter");
      await page.getByRole("button", { name: "Signing in…" }).waitFor({ timeout: 2_000 });
      expectEqual(await submit.isDisabled(), true, "button disabled while signing in");
      expectEqual((await alert.textContent({ timeout: 5_000 })).trim(), "Wrong user name or password.", "alert");
      expectEqual(await submit.isDisabled(), false, "button enabled again");
      expectEqual(await password.inputValue(), "", "password cleared after failure");
    });

    await check(`${label}: 429 shows the server's message`, async () => {
      await username.fill("locked");
      await password.fill("x");
      await throttle("locked");
      await submit.click();
      await page.getByText(/too many sign-in attempts\. try again in \d+ seconds?\./i).waitFor({ timeout: 5_000 });
      await page.screenshot({ path: `${shots}/${label}-login-error.png` });
    });

    await check(`${label}: right password opens the shell at /map`, async () => {
      await username.fill(USER.username);
      await password.fill(USER.password);
      await password.press("Enter");
      await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 5_000 });
      await page.getByText(USER.username, { exact: true }).waitFor();
      await page.getByRole("heading", { name: "Map", level: 1 }).waitFor();
      expectEqual(path(), "/map", "path after sign-in");
      await page.screenshot({ path: `${shots}/${label}-shell.png` });
    });

    await check(`${label}: the navigation changes the URL, marks the current page, and Back works`, async () => {
      const nav = page.getByRole("navigation");
      for (const [name, url] of [["History", "/history"], ["Devices", "/devices"], ["Alarm", "/alarm"], ["MQTT settings", "/settings/mqtt"], ["Users", "/users"], ["Profile", "/profile"], ["Audit log", "/audit"], ["Map", "/map"]]) {
        await nav.getByRole("link", { name, exact: true }).click();
        await page.getByRole("heading", { name, level: 1 }).waitFor({ timeout: 5_000 });
        expectEqual(path(), url, `${name} path`);
        expectEqual(await nav.getByRole("link", { name, exact: true }).getAttribute("aria-current"), "page", `${name} aria-current`);
      }
      await page.goBack();
      await page.getByRole("heading", { name: "Audit log", level: 1 }).waitFor({ timeout: 5_000 });
      expectEqual(path(), "/audit", "path after Back");
    });

    await check(`${label}: reload keeps the session and the page`, async () => {
      await page.goto(`${base}alarm`);
      await page.getByRole("heading", { name: "Alarm", level: 1 }).waitFor({ timeout: 10_000 });
      await page.reload();
      await page.getByRole("heading", { name: "Alarm", level: 1 }).waitFor({ timeout: 10_000 });
      expectEqual(path(), "/alarm", "path after reload");
    });

    await check(`${label}: the session ending elsewhere sends the next request to login, then back`, async () => {
      await page.goto(`${base}map`);
      await page.getByRole("heading", { name: "Map", level: 1 }).waitFor({ timeout: 10_000 });
      // End this browser's session on the server, as an expiry would.
      const cookie = (await context.cookies()).find((c) => c.name === "porchlight_session");
      const r = await fetch(`${base}api/logout`, { method: "POST", headers: { cookie: `${cookie.name}=${cookie.value}` } });
      expectEqual(r.status, 204, "logout elsewhere");
      await page.getByRole("navigation").getByRole("link", { name: "MQTT settings" }).click();
      await username.waitFor({ timeout: 10_000 });
      await page.getByText("Your session has ended").waitFor();
      expectEqual(path(), "/login", "path");
      expectEqual(new URL(page.url()).searchParams.get("next"), "/settings/mqtt", "next");
      await username.fill(USER.username);
      await password.fill(USER.password);
      await password.press("Enter");
      await page.getByRole("heading", { name: "MQTT settings", level: 1 }).waitFor({ timeout: 10_000 });
      expectEqual(path(), "/settings/mqtt", "back where the user was");
    });

    await check(`${label}: sign out returns to /login, and reload stays there`, async () => {
      await page.getByRole("button", { name: "Sign out" }).click();
      await username.waitFor({ timeout: 5_000 });
      expectEqual(path(), "/login", "path");
      await page.reload();
      await username.waitFor({ timeout: 10_000 });
    });

    await check(`${label}: a deep link signed out → login with ?next=, then that page`, async () => {
      await page.goto(`${base}alarm`);
      await username.waitFor({ timeout: 10_000 });
      expectEqual(new URL(page.url()).searchParams.get("next"), "/alarm", "next");
      await username.fill(USER.username);
      await password.fill(USER.password);
      await password.press("Enter");
      await page.getByRole("heading", { name: "Alarm", level: 1 }).waitFor({ timeout: 10_000 });
      expectEqual(path(), "/alarm", "path");
    });

    await check(`${label}: an unknown path says so, with a way back`, async () => {
      await page.goto(`${base}no/such/page`);
      await page.getByRole("heading", { name: "Page not found" }).waitFor({ timeout: 10_000 });
      await page.getByRole("link", { name: "Go to the map" }).click();
      await page.getByRole("heading", { name: "Map", level: 1 }).waitFor({ timeout: 5_000 });
    });

    await check(`${label}: first sign-in with a one-time password asks for a new one`, async () => {
      const name = `newbie-${label}`;
      const created = await admin("POST", "/api/users", { username: name });
      expectEqual(created.status, 201, "user created");
      const oneTime = created.body.password;
      await page.getByRole("button", { name: "Sign out" }).click();
      await username.waitFor({ timeout: 5_000 });
      await username.fill(name);
      await password.fill(oneTime);
      await password.press("Enter");
      await page.getByRole("heading", { name: "Choose your password" }).waitFor({ timeout: 10_000 });
      if (label === "desktop") await screenshotsAndAxe(page, shots, "first-password");
      await page.getByLabel("New password", { exact: true }).fill("a brand new password");
      await page.getByLabel("New password again").fill("not the same password");
      await page.getByRole("button", { name: "Set password" }).click();
      await page.getByText("The two new passwords are not the same.").waitFor({ timeout: 5_000 });
      await page.getByLabel("New password again").fill("a brand new password");
      await page.getByRole("button", { name: "Set password" }).click();
      await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 10_000 });
      await page.getByRole("heading", { name: "Map", level: 1 }).waitFor();
      // A user, not an admin: no admin pages in the navigation.
      expectEqual(await page.getByRole("navigation").getByRole("link", { name: "Users" }).count(), 0, "Users link for a user");
      const old = await fetch(`${base}api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: name, password: oneTime }) });
      expectEqual(old.status, 401, "the one-time password no longer works");
      await page.getByRole("button", { name: "Sign out" }).click();
      await username.waitFor({ timeout: 5_000 });
    });
    await context.close();
  }
}
