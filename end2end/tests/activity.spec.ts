import { test, expect, devices, Page } from "@playwright/test";
import { ChildProcess } from "node:child_process";
import { hydrated, signIn, signUp } from "./helpers";
import { E2E_PORT, PASSWORD, serverEnv, startInstance } from "./server";
import { linkIn, startSink } from "./smtp";

// A sign-in from another device reaches the first browser's account page
// through the event pipeline (outbox, relay, Redis Streams, the activity
// consumer): a second or so after it happened, so the page is reloaded until
// the entry is there, as a person would.
for (const js of [true, false]) {
  test(`a sign-in from a phone shows as a new sign-in on the account page (${js ? "with" : "without"} JavaScript)`, async ({ browser }) => {
    const laptop = await browser.newContext({ javaScriptEnabled: js, baseURL: `http://127.0.0.1:${E2E_PORT}` });
    const phone = await browser.newContext({ ...devices["Pixel 7"], baseURL: `http://127.0.0.1:${E2E_PORT}` });
    try {
      const page = await laptop.newPage();
      const username = await signUp(page, { js });
      await page.goto("/account");
      await expect(page.getByRole("heading", { name: "Security activity" })).toBeVisible();

      const mobile = await phone.newPage();
      await signIn(mobile, username);

      await expect(async () => {
        await page.goto("/account");
        await expect(page.getByTestId("activity")).toContainText("New sign-in from Chrome on Android", { timeout: 1_000 });
      }).toPass({ timeout: 30_000 });
      await expect(page.getByTestId("activity")).toContainText("127.0.0.1");
      if (js) await hydrated(page);
    } finally {
      await phone.close();
      await laptop.close();
    }
  });
}

async function signInWith(page: Page, identifier: string, password: string) {
  await page.goto("/signin");
  await hydrated(page);
  await page.getByLabel("Username or email").fill(identifier);
  await page.getByLabel("Password").fill(password);
  await page.getByTestId("submit").click();
  await expect(page.locator(".nav-user")).toHaveText(/^@/);
}

/** Reloads the account page until its security activity lists `entry`
 * (the consumer writes it a moment after the change). */
async function expectActivity(page: Page, entry: RegExp) {
  await expect(async () => {
    await page.goto("/account");
    await expect(page.getByTestId("activity")).toContainText(entry, { timeout: 1_000 });
  }).toPass({ timeout: 30_000 });
}

// A password change, another device signed out, and a change of address,
// each made on the account page (the address through its mailed link, so
// against one more instance that mails a real SMTP server), each show in
// the account's security activity.
test("a password change, a device signed out and an address change show on the account page", async ({ browser }) => {
  test.setTimeout(120_000);
  const port = E2E_PORT + 13;
  const base = `http://127.0.0.1:${port}`;
  const sink = await startSink();
  let server: ChildProcess | undefined;
  const laptop = await browser.newContext({ baseURL: base });
  const phone = await browser.newContext({ ...devices["Pixel 7"], baseURL: base });
  try {
    // A Folio of its own (database and Redis prefix): no other instance's
    // mail consumer takes its mail.
    server = await startInstance(port, {
      DATABASE_URL: `${serverEnv(port).DATABASE_URL}_activity`,
      FOLIO_REDIS_PREFIX: `${serverEnv(port).FOLIO_REDIS_PREFIX}activity:`,
      SMTP_URL: sink.url,
    });
    const page = await laptop.newPage();
    const username = await signUp(page);
    await signIn(await phone.newPage(), username);

    // Sign the phone out from the laptop's session list.
    await page.goto("/account");
    await hydrated(page);
    const sessions = page.getByTestId("sessions");
    await expect(sessions.locator(".session")).toHaveCount(2);
    await sessions.locator(".session", { hasNotText: "This device" }).getByRole("button", { name: "Sign out" }).click();
    await expect(sessions.locator(".session")).toHaveCount(1);
    await expectActivity(page, /Another device signed out from /);

    await hydrated(page);
    const newPassword = "amber-lantern-orchard-73";
    await page.getByLabel("Current password", { exact: true }).fill(PASSWORD);
    await page.getByLabel("New password", { exact: true }).fill(newPassword);
    await page.getByRole("button", { name: "Change password" }).click();
    await expect(page.getByTestId("password-changed")).toBeVisible();
    await expectActivity(page, /Password changed from /);

    await hydrated(page);
    const newEmail = `${username}@new.example`;
    await page.getByLabel("New email address").fill(newEmail);
    await page.getByLabel("Password, to confirm").fill(newPassword);
    await page.getByTestId("change-email").click();
    await expect(page.getByTestId("email-change-sent")).toBeVisible();
    const mail = await sink.waitFor(newEmail, "Confirm your new Folio email address");
    await page.goto(linkIn(mail, `${base}/confirm-email?token=`));
    // The link's page confirms by itself, or asks for a press of its button.
    const confirm = page.getByRole("button", { name: /confirm/i });
    if ((await confirm.count()) > 0) await confirm.click();
    await expectActivity(page, /Email address changed from /);
    await expect(page.locator("strong", { hasText: newEmail })).toBeVisible();

    // All three, newest first, each with where it came from.
    const entries = page.getByTestId("activity").locator(".activity-entry");
    await expect(entries.nth(0)).toContainText("Email address changed from");
    await expect(entries.nth(1)).toContainText("Password changed from");
    await expect(entries.nth(2)).toContainText("Another device signed out from");
    await expect(entries.nth(2)).toContainText("127.0.0.1");

    // Signing out everywhere ends both sessions (the phone signed in again).
    const mobile = await phone.newPage();
    await signInWith(mobile, newEmail, newPassword);
    await page.goto("/account");
    await hydrated(page);
    await page.getByTestId("sign-out-everywhere").click();
    await expect(page).toHaveURL(/\/signin$/);
    await signInWith(page, username, newPassword);
    await expectActivity(page, /2 sessions signed out from /);
  } finally {
    await phone.close();
    await laptop.close();
    server?.kill();
    sink.stop();
  }
});
