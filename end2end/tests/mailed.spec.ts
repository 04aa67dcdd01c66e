import { test, expect, Page } from "@playwright/test";
import { ChildProcess } from "node:child_process";
import { E2E_PORT, PASSWORD, serverEnv, startInstance } from "./server";
import { hydrated, signOut, signUp } from "./helpers";
import { linkIn, Sink, startSink } from "./smtp";

// The forms reached through mailed links, and a second tab around what those
// links and the account page do, against one more instance that mails a real
// SMTP server (as in lifecycle.spec.ts):
// - the reset and change-of-address forms keep what was typed before the
//   WASM arrived (held back, as a slow connection does), and a submit
//   pressed before it is a plain post;
// - a second tab of the same person, after a reset or a deletion in the
//   first, answers its next action with "sign in", never an error page.

const PORT = E2E_PORT + 14;
// A Folio of its own (database and Redis prefix): no other instance's mail
// consumer, in this file or another running beside it, takes its mail.
const OWN = {
  DATABASE_URL: `${serverEnv(PORT).DATABASE_URL}_mailed`,
  FOLIO_REDIS_PREFIX: `${serverEnv(PORT).FOLIO_REDIS_PREFIX}mailed:`,
};
const BASE = `http://127.0.0.1:${PORT}`;
const NEW_PASSWORD = "copper-lantern-orchard-52";

test.use({ baseURL: BASE });

let sink: Sink | undefined;
let server: ChildProcess | undefined;
test.beforeAll(async () => {
  test.setTimeout(120_000);
  sink = await startSink();
  server = await startInstance(PORT, { ...OWN, SMTP_URL: sink.url });
});
test.afterAll(() => {
  server?.kill();
  sink?.stop();
});

/** Holds every `.wasm` response of `page` until `release()` is called. */
function holdWasm(page: Page): { release: () => void } {
  let release = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  void page.route("**/*.wasm", async (route) => {
    await Promise.race([gate, new Promise((resolve) => setTimeout(resolve, 60_000))]);
    await route.continue().catch(() => {});
  });
  return { release };
}

async function openUnhydrated(page: Page, path: string) {
  await page.goto(path, { waitUntil: "domcontentloaded" });
  await expect(page.locator("body[data-hydrated]")).toHaveCount(0);
}

async function stillUnhydrated(page: Page) {
  expect(await page.locator("body[data-hydrated]").count()).toBe(0);
}

/** Asks for a reset of `email`'s password and returns the mailed link. */
async function resetLink(page: Page, email: string): Promise<string> {
  const asked = await page.request.post("/api/request_password_reset", { form: { email }, maxRedirects: 0 });
  expect(asked.status()).toBe(200);
  const mail = await sink!.waitFor(email, "Choose a new Folio password");
  return linkIn(mail, `${BASE}/reset?token=`);
}

/** The editor's next save, in a tab whose session has ended: a message next
 * to the form asks to sign in, and the page stays what it was. */
async function saveSaysSignIn(tab: Page) {
  await tab.getByLabel("Display name").fill("Still Here");
  await tab.getByTestId("save").click();
  await expect(tab.getByTestId("form-error")).toHaveText("Please sign in to continue.");
  await expect(tab.getByRole("heading", { name: "Edit your profile" })).toBeVisible();
  await expect(tab.getByTestId("saved")).toHaveCount(0);
  // Reloaded, the page is no error page, and the tab is signed out.
  const reloaded = await tab.reload();
  expect(reloaded?.status()).toBeLessThan(500);
  await expect(tab.getByRole("link", { name: "Sign in" })).toBeVisible();
}

test("reset: a new password typed before hydration survives it, and the reset succeeds", async ({ page }) => {
  const username = await signUp(page, { js: false });
  await signOut(page);
  const link = await resetLink(page, `${username}@example.com`);

  const wasm = holdWasm(page);
  await openUnhydrated(page, link);
  await page.getByLabel("New password").fill(NEW_PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("New password")).toHaveValue(NEW_PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/signin\?reset=1$/);
  await expect(page.getByTestId("password-reset")).toBeVisible();
});

test("reset: a submit pressed before the WASM arrives posts the typed password", async ({ page }) => {
  const username = await signUp(page, { js: false });
  await signOut(page);
  const link = await resetLink(page, `${username}@example.com`);

  holdWasm(page);
  await openUnhydrated(page, link);
  await page.getByLabel("New password").fill(NEW_PASSWORD);
  await stillUnhydrated(page);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/signin\?reset=1$/);
  await expect(page.getByTestId("password-reset")).toBeVisible();
});

test("change of address: typing before hydration survives it, and the request succeeds", async ({ page }) => {
  const username = await signUp(page, { js: false });
  const wasm = holdWasm(page);
  await openUnhydrated(page, "/account");
  await page.getByLabel("New email address").fill(`${username}@new.example`);
  await page.getByLabel("Password, to confirm").fill(PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("New email address")).toHaveValue(`${username}@new.example`);
  await expect(page.getByLabel("Password, to confirm")).toHaveValue(PASSWORD);
  await page.getByTestId("change-email").click();
  await expect(page.getByTestId("email-change-sent")).toBeVisible();
  await sink!.waitFor(`${username}@new.example`, "Confirm your new Folio email address");
});

test("change of address: a submit pressed before the WASM arrives posts the typed values", async ({ page }) => {
  const username = await signUp(page, { js: false });
  holdWasm(page);
  await openUnhydrated(page, "/account");
  await page.getByLabel("New email address").fill(`${username}@new.example`);
  await page.getByLabel("Password, to confirm").fill(PASSWORD);
  await stillUnhydrated(page);
  await page.getByTestId("change-email").click();
  await expect(page).toHaveURL(/\/account\?email_change_sent=1$/);
  await expect(page.getByTestId("email-change-sent")).toBeVisible();
  await sink!.waitFor(`${username}@new.example`, "Confirm your new Folio email address");
});

test("two tabs: after a reset in one, the other's next save asks to sign in", async ({ page }) => {
  const username = await signUp(page);
  const other = await page.context().newPage();
  await other.goto("/settings/profile");
  await hydrated(other);

  await page.goto(await resetLink(page, `${username}@example.com`));
  await hydrated(page);
  await page.getByLabel("New password").fill(NEW_PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/signin\?reset=1$/);

  await saveSaysSignIn(other);
});

test("two tabs: after the account is deleted in one, the other's edit fails with a message", async ({ page }) => {
  const username = await signUp(page);
  const other = await page.context().newPage();
  await other.goto("/settings/profile");
  await hydrated(other);

  await page.goto("/account");
  await hydrated(page);
  await page.getByLabel("Your password").fill(PASSWORD);
  await page.getByTestId("delete-account").click();
  await expect(page).toHaveURL(`${BASE}/`);
  expect((await page.goto(`/u/${username}`))?.status()).toBe(404);

  await saveSaysSignIn(other);
});

test("two tabs without JavaScript: after a deletion, the other's save lands on the sign-in page", async ({ browser }) => {
  const context = await browser.newContext({ baseURL: BASE, javaScriptEnabled: false });
  try {
    const page = await context.newPage();
    await signUp(page, { js: false });
    const other = await context.newPage();
    await other.goto("/settings/profile");

    await page.goto("/account");
    await page.getByLabel("Your password").fill(PASSWORD);
    await page.getByTestId("delete-account").click();
    await expect(page).toHaveURL(`${BASE}/`);

    await other.getByLabel("Display name").fill("Still Here");
    const answered = other.waitForResponse((response) => response.request().method() === "POST");
    await other.getByTestId("save").click();
    expect((await answered).status()).toBeLessThan(500);
    await expect(other).toHaveURL(/\/signin$/);
    await expect(other.getByRole("heading", { name: "Sign in" })).toBeVisible();
  } finally {
    await context.close();
  }
});
