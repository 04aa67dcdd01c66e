import { test, expect, Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { ChildProcess } from "node:child_process";
import { E2E_PORT, PASSWORD, startInstance } from "./server";
import { signOut, signUp } from "./helpers";
import { linkIn, Sink, startSink } from "./smtp";

// The account lifecycle over email, against one more instance that mails a
// real SMTP server (the release build has no development mailbox): the
// forgotten-password flow from the form to the mailed link and back to
// signing in, confirming the address, changing it, and deleting the account
// (then its public page is 404), with JavaScript and without. Nothing waits for hydration
// before typing: a form submitted before the WASM arrives is a plain post.

const PORT = E2E_PORT + 5;
const BASE = `http://127.0.0.1:${PORT}`;
const NEW_PASSWORD = "copper-lantern-orchard-51";
const WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"];

test.describe.configure({ mode: "serial" });
test.use({ baseURL: BASE });

let sink: Sink | undefined;
let server: ChildProcess | undefined;
test.beforeAll(async () => {
  test.setTimeout(120_000);
  sink = await startSink();
  server = await startInstance(PORT, { SMTP_URL: sink.url });
});
test.afterAll(() => {
  server?.kill();
  sink?.stop();
});

async function expectAccessible(page: Page, what: string) {
  const results = await new AxeBuilder({ page }).withTags(WCAG).analyze();
  const violations = results.violations.map((v) => ({
    rule: v.id,
    help: v.help,
    elements: v.nodes.map((n) => n.target.join(" ")),
  }));
  expect(violations, `${what}: ${page.url()}`).toEqual([]);
}

for (const js of [true, false]) {
  test.describe(js ? "with JavaScript" : "without JavaScript", () => {
    test.use({ javaScriptEnabled: js });

    test("a forgotten password, from the form to the mailed link", async ({ page }) => {
      const username = await signUp(page, { js: false });
      const email = `${username}@example.com`;
      await signOut(page);

      await page.goto("/signin");
      await page.getByRole("link", { name: "Forgot your password?" }).click();
      await expect(page).toHaveURL(/\/forgot$/);
      await page.getByLabel("Email").fill(email);
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("reset-sent")).toBeVisible();
      if (js) await expectAccessible(page, "forgot, sent");

      const mail = await sink!.waitFor(email, "Choose a new Folio password");
      const link = linkIn(mail, `${BASE}/reset?token=`);
      expect(mail.html).toContain(`href="${link}"`);

      await page.goto(link);
      await expect(page.getByRole("heading", { name: "Choose a new password" })).toBeVisible();
      if (js) await expectAccessible(page, "reset form");
      // Too weak first: the error shows next to the field, the link still works.
      await page.getByLabel("New password").fill("short");
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("new_password-error")).toContainText("at least 8");
      await page.getByLabel("New password").fill(NEW_PASSWORD);
      await page.getByTestId("submit").click();
      await expect(page).toHaveURL(/\/signin\?reset=1$/);
      await expect(page.getByTestId("password-reset")).toBeVisible();
      if (js) await expectAccessible(page, "sign in after a reset");

      // The link is spent.
      await page.goto(link);
      await expect(page.getByTestId("link-refused")).toContainText("already used");
      if (js) await expectAccessible(page, "a used link");

      // The old password no longer works; the new one does.
      await page.goto("/signin");
      await page.getByLabel("Username or email").fill(username);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("form-error")).toBeVisible();
      await page.getByLabel("Username or email").fill(username);
      await page.getByLabel("Password").fill(NEW_PASSWORD);
      await page.getByTestId("submit").click();
      await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
    });
  });
}

for (const js of [true, false]) {
  test(`the mailed link confirms the address, then the account is deleted (${js ? "with" : "without"} JavaScript)`, async ({
    browser,
  }) => {
    const context = await browser.newContext({ baseURL: BASE, javaScriptEnabled: js });
    const page = await context.newPage();
    const username = await signUp(page, { js: false });
    const email = `${username}@example.com`;

    await page.goto("/account");
    await expect(page.getByTestId("verify-banner")).toContainText(email);
    if (js) await expectAccessible(page, "account, address not confirmed");
    const mail = await sink!.waitFor(email, "Confirm your Folio email address");
    await page.goto(linkIn(mail, `${BASE}/verify?token=`));
    await expect(page.getByTestId("email-verified")).toBeVisible();
    if (js) await expectAccessible(page, "address confirmed");
    await page.goto("/account");
    await expect(page.getByRole("heading", { name: "Delete your account" })).toBeVisible();
    await expect(page.getByTestId("verify-banner")).toHaveCount(0);

    await page.getByLabel("Your password").fill(PASSWORD);
    await page.getByTestId("delete-account").click();
    await expect(page).toHaveURL(`${BASE}/`);
    await expect(page.getByRole("link", { name: "Sign in" })).toBeVisible();
    const profile = await page.goto(`/u/${username}`);
    expect(profile?.status()).toBe(404);
    await context.close();
  });
}

for (const js of [true, false]) {
  test(`a new address is used once its mailed link confirms it (${js ? "with" : "without"} JavaScript)`, async ({
    browser,
  }) => {
    const context = await browser.newContext({ baseURL: BASE, javaScriptEnabled: js });
    const page = await context.newPage();
    const username = await signUp(page, { js: false });
    const newEmail = `${username}@new.example`;

    await page.goto("/account");
    await page.getByLabel("New email address").fill(newEmail);
    await page.getByLabel("Password, to confirm").fill(PASSWORD);
    await page.getByTestId("change-email").click();
    await expect(page.getByTestId("email-change-sent")).toBeVisible();
    if (js) await expectAccessible(page, "account, change of address asked");

    const mail = await sink!.waitFor(newEmail, "Confirm your new Folio email address");
    await sink!.waitFor(`${username}@example.com`, "A change of your Folio email address was asked for");
    // Opening the link only asks (a mail scanner may open it first): the
    // button confirms.
    await page.goto(linkIn(mail, `${BASE}/confirm-email?token=`));
    await expect(page.getByTestId("confirm-email-form")).toBeVisible();
    await expect(page.locator("strong", { hasText: newEmail })).toBeVisible();
    if (js) await expectAccessible(page, "confirm the new address");
    await page.getByTestId("confirm").click();
    await expect(page.getByTestId("email-changed")).toBeVisible();
    if (js) await expectAccessible(page, "address changed");
    await page.goto("/account");
    await expect(page.getByRole("heading", { name: "Email address" })).toBeVisible();
    await expect(page.locator("strong", { hasText: newEmail })).toBeVisible();
    await context.close();
  });
}

for (const js of [true, false]) {
  test(`"this wasn't me" on the old address cancels a change without signing in (${js ? "with" : "without"} JavaScript)`, async ({
    browser,
  }) => {
    const context = await browser.newContext({ baseURL: BASE, javaScriptEnabled: js });
    const page = await context.newPage();
    const username = await signUp(page, { js: false });
    const newEmail = `${username}@elsewhere.example`;
    await page.goto("/account");
    await page.getByLabel("New email address").fill(newEmail);
    await page.getByLabel("Password, to confirm").fill(PASSWORD);
    await page.getByTestId("change-email").click();
    await expect(page.getByTestId("email-change-sent")).toBeVisible();
    const confirm = await sink!.waitFor(newEmail, "Confirm your new Folio email address");
    const notice = await sink!.waitFor(
      `${username}@example.com`,
      "A change of your Folio email address was asked for",
    );

    // The owner of the old address, in a browser that is not signed in.
    const owner = await browser.newContext({ baseURL: BASE, javaScriptEnabled: js });
    const ownerPage = await owner.newPage();
    await ownerPage.goto(linkIn(notice, `${BASE}/cancel-email-change?token=`));
    await expect(ownerPage.getByTestId("cancel-email-change-form")).toBeVisible();
    if (js) await expectAccessible(ownerPage, "cancel a change of address");
    await ownerPage.getByTestId("cancel-change").click();
    await expect(ownerPage.getByTestId("email-change-cancelled")).toBeVisible();
    if (js) await expectAccessible(ownerPage, "change cancelled");
    await owner.close();

    // The confirmation link is dead; the address and the session stay.
    const response = await page.goto(linkIn(confirm, `${BASE}/confirm-email?token=`));
    expect(response?.status()).toBe(410);
    await expect(page.getByTestId("link-refused")).toBeVisible();
    await page.goto("/account");
    await expect(page.getByRole("region", { name: "Email address", exact: true }).getByRole("strong")).toHaveText(`${username}@example.com`);
    await context.close();
  });
}

test("a damaged link says so", async ({ page }) => {
  const response = await page.goto("/reset?token=abc");
  expect(response?.status()).toBe(400);
  await expect(page.getByTestId("link-refused")).toContainText("incomplete or damaged");
  await expectAccessible(page, "a damaged link");
});
