// The sign-in flow: login errors, disabled button, sign in, navigation, reload, sign out, deep
// links; at phone and desktop sizes.

export default async function login({ browser, base, USER, shots, check, expectEqual, throttle, errors }) {
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
}
