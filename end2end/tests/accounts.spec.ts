import { test, expect } from "@playwright/test";
import { hydrated, signIn, signOut, signUp } from "./helpers";
import { E2E_PORT, PASSWORD, startInstance } from "./server";

for (const js of [true, false]) {
  test.describe(js ? "with JavaScript" : "without JavaScript", () => {
    test.use({ javaScriptEnabled: js });

    test("sign up, sign out, sign in, sign out everywhere", async ({ page, context }) => {
      const username = await signUp(page, { js });

      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === "__Host-folio_session");
      expect(session?.httpOnly).toBe(true);
      expect(session?.secure).toBe(true);
      expect(session?.sameSite).toBe("Lax");

      await signOut(page);
      await signIn(page, username, { js });

      await page.goto("/account");
      if (js) await hydrated(page);
      await expect(page.getByTestId("sessions")).toContainText("This device");
      await page.getByTestId("sign-out-everywhere").click();
      await expect(page).toHaveURL(/\/signin$/);
      await page.goto("/account");
      await expect(page).toHaveURL(/\/signin$/);
    });

    test("a wrong password is refused with one message", async ({ page }) => {
      const username = await signUp(page, { js });
      await signOut(page);
      await page.goto("/signin");
      if (js) await hydrated(page);
      await page.getByLabel("Username or email").fill(username);
      await page.getByLabel("Password").fill("not-the-password-1");
      await page.getByTestId("submit").click();
      await expect(page.getByTestId("form-error")).toHaveText("Incorrect username, email or password.");
    });
  });
}

test("field errors appear while typing, from the shared domain types", async ({ page }) => {
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Username").fill("ab");
  await expect(page.getByTestId("username-error")).toHaveText("Username must be 3–30 characters.");
  await page.getByLabel("Username").fill("abc");
  await expect(page.getByTestId("username-error")).toHaveText("");
  await page.getByLabel("Password").fill("short");
  await expect(page.getByTestId("password-error")).toHaveText("Password must be at least 8 characters.");
});

test("a weak password is refused by the server next to the field", async ({ page }) => {
  await page.goto("/signup");
  await hydrated(page);
  await page.getByLabel("Username").fill("weakling_user");
  await page.getByLabel("Email").fill("weakling@example.com");
  await page.getByLabel("Password").fill("password1");
  await page.getByTestId("submit").click();
  await expect(page.getByTestId("password-error")).toContainText("too weak");
});

test("a session made on one instance is valid on another", async ({ page }) => {
  const username = await signUp(page);
  const second = await startInstance(E2E_PORT + 1);
  try {
    // Cookies are not isolated by port: the browser sends the same cookie.
    await page.goto(`http://127.0.0.1:${E2E_PORT + 1}/account`);
    await expect(page.getByText(`Signed in as @${username}`)).toBeVisible();
  } finally {
    second.kill();
  }
});

test("a failed form post reopened with JavaScript shows its error and hydrates", async ({ browser, page }) => {
  const username = await signUp(page);
  await signOut(page);
  // Without JavaScript the post comes back with the error in the URL.
  const noJs = await browser.newContext({ javaScriptEnabled: false, baseURL: `http://127.0.0.1:${E2E_PORT}` });
  const plain = await noJs.newPage();
  await plain.goto("/signin");
  await plain.getByLabel("Username or email").fill(username);
  await plain.getByLabel("Password").fill("not-the-password-1");
  await plain.getByTestId("submit").click();
  await expect(plain).toHaveURL(/__err=/);
  const failedUrl = plain.url();
  await noJs.close();

  // The same URL in a browser with JavaScript: the island hydrates with the
  // error the server rendered, and the form works.
  await page.goto(failedUrl);
  await hydrated(page);
  await expect(page.getByTestId("form-error")).toHaveText("Incorrect username, email or password.");
  await page.getByLabel("Username or email").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});
