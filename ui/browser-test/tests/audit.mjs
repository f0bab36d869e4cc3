// Audit log (/audit): the filters (kind, user, result) are answered by the server, the rows
// shown are exactly the server's for that selection, the selection is in the URL (a reload
// or a shared link shows the same view), and "Load older" pages back without repeating or
// skipping a row; screenshots and axe.
import { apiAs, screenshotsAndAxe, signIn } from "../lib/app.mjs";

const DORA = { username: "audra", password: "audra password 1" };

async function failLogin(base, username) {
  await fetch(`${base}api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username, password: "not the password" }),
  });
}

export default async function audit({ browser, base, USER, shots, check, expectEqual, errors }) {
  const admin = await apiAs(base, USER);
  const created = await admin("POST", "/api/users", DORA);
  if (created.status !== 201) throw new Error(`creating audra: ${created.status}`);
  // 130 sign-ins of audra's (more than one page of 100): successes, then two failures.
  for (let i = 0; i < 128; i += 1) await apiAs(base, DORA);
  await failLogin(base, "audra");
  await failLogin(base, "audra");
  // The server writes audit rows in batches: wait until all 130 are there.
  for (let i = 0; i < 100; i += 1) {
    const rows = (await admin("GET", "/api/audit?kind=http_login&user=audra&limit=1000")).body;
    if (rows.length >= 130) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`audit: ${error.message}`));
  const shownIds = () => page.locator(".audit-entry").evaluateAll((els) => els.map((e) => Number(e.dataset.id)));
  // Waits until the page shows exactly `ids` (the server's answer for its selection).
  async function showsExactly(ids, what) {
    try {
      await page.waitForFunction(
        (want) => JSON.stringify([...document.querySelectorAll(".audit-entry")].map((e) => Number(e.dataset.id))) === JSON.stringify(want),
        ids, { timeout: 10_000 });
    } catch {
      throw new Error(`${what}: shown ${JSON.stringify((await shownIds()).slice(0, 5))}… (${(await shownIds()).length}), server ${JSON.stringify(ids.slice(0, 5))}… (${ids.length})`);
    }
  }

  try {
    await check("audit: a user and result filter shows exactly the server's rows, in the URL", async () => {
      await signIn(page, base, USER, "audit");
      await page.getByRole("heading", { name: "Audit log", level: 1 }).waitFor();
      await page.locator(".audit-entry").first().waitFor({ timeout: 10_000 });
      await page.getByLabel("User").selectOption("audra");
      await page.getByLabel("Result").selectOption("failed");
      const failed = (await admin("GET", "/api/audit?user=audra&result=failed&limit=100")).body;
      if (failed.length < 1) throw new Error("no failed sign-in of audra's on the server");
      await showsExactly(failed.map((e) => e.id), "audra's failures");
      const url = new URL(page.url());
      expectEqual(url.searchParams.get("user"), "audra", "user in the URL");
      expectEqual(url.searchParams.get("result"), "failed", "result in the URL");
      await page.reload();
      await showsExactly(failed.map((e) => e.id), "after a reload");
      expectEqual(await page.getByLabel("Result").inputValue(), "failed", "result kept");
      expectEqual(await page.getByLabel("User").inputValue(), "audra", "user kept");
      await screenshotsAndAxe(page, shots, "audit");
    });

    await check("audit: a kind filter, then Load older pages back without repeats or gaps", async () => {
      await page.goto(`${base}audit?kind=http_login&user=audra`);
      const server = [];
      let before = "";
      for (;;) {
        const page_ = (await admin("GET", `/api/audit?kind=http_login&user=audra&limit=100${before}`)).body;
        if (!page_.length) break;
        server.push(...page_.map((e) => e.id));
        before = `&before=${page_.at(-1).id}`;
      }
      if (server.length < 130) throw new Error(`server has ${server.length} sign-ins of audra's`);
      await showsExactly(server.slice(0, 100), "the first page");
      expectEqual(await page.getByLabel("Kind").inputValue(), "http_login", "kind from the URL");
      await page.locator("[data-action=load-older]").click();
      await showsExactly(server, "after Load older");
      await page.locator("[data-older=none]").waitFor({ timeout: 10_000 });
      const kinds = await page.locator(".audit-entry").evaluateAll((els) => [...new Set(els.map((e) => e.dataset.kind))]);
      expectEqual(JSON.stringify(kinds), JSON.stringify(["http_login"]), "one kind");
    });

    await check("audit: a selection without rows says so", async () => {
      await page.getByLabel("Kind").selectOption("alarm_code_refused");
      await page.locator("[data-empty=audit]").waitFor({ timeout: 10_000 });
    });
  } finally {
    await context.close();
  }
}
