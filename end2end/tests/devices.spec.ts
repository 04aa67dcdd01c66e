import { test, expect, Page } from "@playwright/test";
import { signIn, signOut, signUp } from "./helpers";
import { E2E_PORT, PASSWORD } from "./server";

// Someone guesses a password from their own browser until the account is
// locked; its owner, in the browser they signed up with, still signs in.
// A stranger's browser (no device cookie, no JavaScript needed) stays locked
// out even with the right password.

async function tryPassword(page: Page, username: string, password: string) {
  await page.goto("/signin");
  await page.getByLabel("Username or email").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByTestId("submit").click();
  await expect(page.getByTestId("form-error")).toBeVisible();
  return (await page.getByTestId("form-error").textContent()) ?? "";
}

test("strangers' wrong passwords never lock the owner's browser out", async ({ page, browser }) => {
  const username = await signUp(page);
  await signOut(page);

  const stranger = await browser.newContext({
    javaScriptEnabled: false,
    baseURL: `http://127.0.0.1:${E2E_PORT}`,
  });
  const guesser = await stranger.newPage();
  for (let attempt = 0; attempt < 5; attempt++) {
    await tryPassword(guesser, username, `wrong-guess-${attempt}-xyz`);
  }
  // Locked for browsers that never signed in, the right password included.
  expect(await tryPassword(guesser, username, PASSWORD)).toContain("Too many attempts");

  // The owner's browser signs in (and sees, on the account page, that
  // someone was guessing, once the event has been applied).
  await signIn(page, username);
  await expect(async () => {
    await page.goto("/account");
    await expect(page.getByText(/Too many wrong passwords/)).toBeVisible({ timeout: 1_000 });
  }).toPass({ timeout: 20_000 });

  // The stranger is still locked out.
  expect(await tryPassword(guesser, username, PASSWORD)).toContain("Too many attempts");
  await stranger.close();
});
