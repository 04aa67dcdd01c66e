import { test, expect, Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { hydrated, signOut, signUp } from "./helpers";
import { E2E_PORT } from "./server";

// Every page, signed out and signed in, with and without its errors and
// banners showing, must have no WCAG 2.0, 2.1 or 2.2 A or AA violation that
// axe-core finds, on a desktop screen and on a phone's (where reflow, target
// sizes and overlapping content differ). A new page belongs in this list.

const WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"];

/** Runs axe on the page as it is; fails with each violation's rule and elements. */
async function expectAccessible(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).withTags(WCAG).analyze();
  const violations = results.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    elements: v.nodes.map((n) => n.target.join(" ")),
  }));
  expect(violations, `${what}: ${page.url()}`).toEqual([]);
}

/** Opens `path`, waits for the islands, and checks the page. */
async function check(page: Page, path: string, what: string) {
  await page.goto(path);
  await hydrated(page);
  await expectAccessible(page, what);
}

const DEVICES = [
  { name: "desktop (1280 × 720)", use: {} },
  {
    name: "phone (390 × 844)",
    use: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 3 },
  },
];

for (const device of DEVICES) {
  test.describe(device.name, () => {
    test.use(device.use);

    test("signed-out pages", async ({ page }) => {
      await check(page, "/", "home");
      await page.getByTestId("how-toggle").click();
      await expect(page.getByTestId("how-it-works")).toBeVisible();
      await expectAccessible(page, "home, how it works open");
      await check(page, "/signup", "sign up");
      await check(page, "/signin", "sign in");
      await check(page, "/no/such/page", "not found");
      await check(page, "/u/nobody_here_at_all", "unknown profile");
      await check(page, "/forgot", "forgot password");
      await check(page, "/reset?token=abc", "a damaged reset link");
      await check(page, "/verify?token=abc", "a damaged verification link");
      await check(page, "/confirm-email?token=abc", "a damaged address-change link");
      await check(page, "/confirm-email?changed=1", "address changed");
      await check(page, "/cancel-email-change?token=abc", "a damaged cancel link");
      await check(page, "/cancel-email-change?cancelled=1", "address change cancelled");
      await check(page, "/people", "people, recently updated");
      await check(page, "/people?q=zzyzx_nobody", "people, no one matches");
    });

    test("forms with their errors showing", async ({ page }) => {
      await page.goto("/signup");
      await hydrated(page);
      await page.getByLabel("Username").fill("ab");
      await page.getByLabel("Email").fill("not-an-email");
      await page.getByLabel("Password").fill("short");
      await expect(page.getByTestId("password-error")).not.toHaveText("");
      await expectAccessible(page, "sign up, live errors");
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("username-error")).not.toHaveText("");
      await expectAccessible(page, "sign up, server errors");

      await page.goto("/signin");
      await hydrated(page);
      await page.getByLabel("Username or email").fill("nobody_here_at_all");
      await page.getByLabel("Password").fill("not-the-password-1");
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("form-error")).toBeVisible();
      await expectAccessible(page, "sign in, wrong password");
    });

    test("a failed plain form post, reopened with its error in the page", async ({ browser, page }) => {
      const noJs = await browser.newContext({
        ...device.use,
        javaScriptEnabled: false,
        baseURL: `http://127.0.0.1:${E2E_PORT}`,
      });
      const plain = await noJs.newPage();
      await plain.goto("/signin");
      await plain.getByLabel("Username or email").fill("nobody_here_at_all");
      await plain.getByLabel("Password").fill("not-the-password-1");
      await plain.getByTestId("submit").click();
      await expect(plain.getByTestId("form-error")).toBeVisible();
      // axe runs in the page, so the page is checked where JavaScript runs.
      const failedUrl = plain.url();
      await noJs.close();

      await check(page, failedUrl, "sign in with the error from the URL");
    });

    test("signed-in pages", async ({ page }) => {
      const username = await signUp(page);
      await check(page, "/", "home, signed in");
      await check(page, `/u/${username}`, "own profile, empty");
      await check(page, "/account", "account");
      await check(page, "/settings/profile", "profile editor");

      // The editor with its errors, then saved.
      await page.getByLabel("Bio").fill("x".repeat(501));
      await page.getByLabel("Website").fill("not a url");
      await expect(page.getByTestId("bio-error")).not.toHaveText("");
      await expectAccessible(page, "profile editor, live errors");
      await Promise.all([page.waitForResponse(/\/api\/update_profile/), page.getByTestId("save").click()]);
      await expect(page.getByTestId("bio-error")).toContainText("at most 500");
      await expectAccessible(page, "profile editor, server errors");

      await page.getByLabel("Display name").fill("Ada Lovelace");
      await page.getByLabel("Bio").fill("First programmer.\nAnalytical engines.");
      await page.getByLabel("Avatar URL").fill("");
      await page.getByLabel("Location").fill("London");
      await page.getByLabel("Website").fill("https://example.com/ada");
      await page.getByTestId("save").click();
      await expect(page.getByTestId("saved")).toBeVisible();
      await expectAccessible(page, "profile editor, saved");
      await check(page, `/u/${username}`, "filled profile, signed in");

      // The account page with a refused, then a successful password change.
      await page.goto("/account");
      await hydrated(page);
      await page.getByLabel("Current password", { exact: true }).fill("not-the-password-1");
      await page.getByLabel("New password", { exact: true }).fill("short");
      await Promise.all([
        page.waitForResponse(/\/api\/change_password/),
        page.getByRole("button", { name: "Change password" }).click(),
      ]);
      await expect(page.getByRole("button", { name: "Change password" })).toBeEnabled();
      await expectAccessible(page, "account, password change refused");

      await signOut(page);
      await check(page, `/u/${username}`, "filled profile, signed out");
    });

    test("a stale edit's conflict message", async ({ page, context }) => {
      await signUp(page);
      const other = await context.newPage();
      await page.goto("/settings/profile");
      await hydrated(page);
      await other.goto("/settings/profile");
      await hydrated(other);
      await page.getByLabel("Bio").fill("From the first tab.");
      await page.getByTestId("save").click();
      await expect(page.getByTestId("saved")).toBeVisible();
      await other.getByLabel("Bio").fill("From the second tab.");
      await other.getByTestId("save").click();
      await expect(other.getByTestId("conflict")).toBeVisible();
      await expectAccessible(other, "profile editor, conflict");
    });
  });
}
