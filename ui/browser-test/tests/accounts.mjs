// Profile (/profile) and Users (/users): display name, password change with the current
// password, API tokens shown once and revoked; an admin adds a user with a one-time password
// and removes one; screenshots and axe. (The audit log's filters: audit.mjs.)
import { apiAs, screenshotsAndAxe, signIn } from "../lib/app.mjs";

export default async function accounts({ browser, base, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const pat = { username: "pat", password: "pat's first password" };
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`accounts: ${error.message}`));
  const bearer = (token) => fetch(`${base}api/me`, { headers: { authorization: `Bearer ${token}` } });
  try {
    await check("profile: display name, a wrong current password, then a password change", async () => {
      expectEqual((await admin("POST", "/api/users", { username: pat.username, password: pat.password })).status, 201, "pat created");
      await signIn(page, base, pat, "profile");
      await page.getByRole("heading", { name: "Profile", level: 1 }).waitFor();
      await page.getByLabel("Display name").fill("Pat Doe");
      await page.getByRole("button", { name: "Save name" }).click();
      await page.getByText("Name saved.").waitFor({ timeout: 10_000 });
      await page.getByLabel("Current password").fill("not my password");
      await page.getByLabel("New password", { exact: true }).fill("pat's second password");
      await page.getByLabel("New password again").fill("pat's second password");
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByText("The current password is wrong.").waitFor({ timeout: 10_000 });
      await page.getByLabel("Current password").fill(pat.password);
      await page.getByRole("button", { name: "Change password" }).click();
      await page.getByText(/^Password changed/).waitFor({ timeout: 10_000 });
      const r = await fetch(`${base}api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "pat", password: "pat's second password" }) });
      expectEqual(r.status, 200, "new password works");
      // Still signed in here (the change keeps this session).
      await page.reload();
      await page.getByRole("heading", { name: "Profile", level: 1 }).waitFor({ timeout: 10_000 });
    });

    await check("profile: an API token is shown once, works, and is revoked", async () => {
      await page.getByLabel("Token name").fill("ci-script");
      await page.getByRole("button", { name: "Create token" }).click();
      const secret = page.locator("code.secret");
      await secret.waitFor({ timeout: 10_000 });
      const token = (await secret.textContent()).trim();
      expectEqual((await bearer(token)).status, 200, "token works");
      await page.locator('.token-list [data-token="ci-script"]').waitFor();
      await screenshotsAndAxe(page, shots, "profile");
      await page.getByRole("button", { name: "Revoke ci-script" }).click();
      await page.getByText("No API tokens.").waitFor({ timeout: 10_000 });
      expectEqual((await bearer(token)).status, 401, "revoked token refused");
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.locator("#login-username").waitFor();
    });

    await check("users: an admin adds a user with a one-time password and removes another", async () => {
      await signIn(page, base, USER, "users");
      await page.getByRole("heading", { name: "Users", level: 1 }).waitFor();
      await page.locator('.user-list [data-user="pat"]').waitFor({ timeout: 10_000 });
      await page.getByLabel("Username", { exact: true }).fill("guest1");
      await page.getByRole("button", { name: "Add user" }).click();
      const secret = page.locator("code.secret");
      await secret.waitFor({ timeout: 10_000 });
      const oneTime = (await secret.textContent()).trim();
      await page.locator('.user-list [data-user="guest1"]').waitFor({ timeout: 10_000 });
      const login = await fetch(`${base}api/login`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "guest1", password: oneTime }) });
      expectEqual(login.status, 200, "one-time password works");
      expectEqual((await login.json()).must_change_password, true, "must change it");
      await screenshotsAndAxe(page, shots, "users");
      await page.getByRole("button", { name: "Remove pat" }).click();
      await page.getByRole("button", { name: "Remove pat" }).getByText("Really remove").waitFor();
      await page.getByRole("button", { name: "Remove pat" }).click();
      await page.locator('.user-list [data-user="pat"]').waitFor({ state: "detached", timeout: 10_000 });
      const names = (await admin("GET", "/api/users")).body.map((u) => u.username);
      expectEqual(names.includes("pat"), false, "pat removed on the server");
    });

  } finally {
    await context.close();
  }
}
