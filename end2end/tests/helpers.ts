import { expect, Page } from "@playwright/test";
import { PASSWORD, uniqueName } from "./server";

/** Waits until the WASM has hydrated the page's islands (set by the last island, `HydrationMarker`). */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated=true]")).toHaveCount(1);
}

/** Signs up a new user through the form; returns the username. */
export async function signUp(page: Page, opts: { js: boolean } = { js: true }): Promise<string> {
  const username = uniqueName("u");
  await page.goto("/signup");
  if (opts.js) await hydrated(page);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
  return username;
}

export async function signIn(page: Page, identifier: string, opts: { js: boolean } = { js: true }) {
  await page.goto("/signin");
  if (opts.js) await hydrated(page);
  await page.getByLabel("Username or email").fill(identifier);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(new RegExp(`@`));
}

export async function signOut(page: Page) {
  await page.getByTestId("sign-out").click();
  await expect(page.getByRole("link", { name: "Sign in" })).toBeVisible();
}
