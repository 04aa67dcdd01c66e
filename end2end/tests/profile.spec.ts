import { test, expect, Page } from "@playwright/test";
import { hydrated, signOut, signUp } from "./helpers";

async function openEditor(page: Page, js: boolean) {
  await page.goto("/settings/profile");
  if (js) await hydrated(page);
  await expect(page.getByRole("heading", { name: "Edit your profile" })).toBeVisible();
}

for (const js of [true, false]) {
  test.describe(js ? "with JavaScript" : "without JavaScript", () => {
    test.use({ javaScriptEnabled: js });

    test("edit the profile and see it on the public page", async ({ page }) => {
      const username = await signUp(page, { js });
      await openEditor(page, js);
      await page.getByLabel("Display name").fill("Ada Lovelace");
      await page.getByLabel("Bio").fill("First programmer.\nAnalytical engines.");
      await page.getByLabel("Location").fill("London");
      await page.getByLabel("Website").fill("https://example.com/ada");
      await page.getByTestId("save").click();
      await expect(page.getByTestId("saved")).toBeVisible();

      await page.goto(`/u/${username}`);
      await expect(page.getByTestId("display-name")).toHaveText("Ada Lovelace");
      await expect(page.getByTestId("bio")).toHaveText("First programmer.\nAnalytical engines.");
      await expect(page.getByTestId("location")).toContainText("London");
      await expect(page).toHaveTitle(`Ada Lovelace (@${username}) · Folio`);
      await page.reload();
      await expect(page.getByTestId("display-name")).toHaveText("Ada Lovelace");

      await signOut(page);
      await page.goto("/settings/profile");
      await expect(page).toHaveURL(/\/signin$/);
    });
  });
}

test("an over-long bio shows the inline error and nothing is saved", async ({ page }) => {
  const username = await signUp(page);
  await openEditor(page, true);
  await page.getByLabel("Bio").fill("x".repeat(501));
  await expect(page.getByTestId("bio-error")).toContainText("at most 500 characters");
  await expect(page.getByTestId("bio-counter")).toHaveText("501 / 500");
  await page.getByTestId("save").click();
  await expect(page.getByTestId("bio-error")).toContainText("at most 500 characters");
  await page.goto(`/u/${username}`);
  await expect(page.getByTestId("bio")).toHaveText("");
});

test("two tabs editing the same profile: the second gets the conflict message", async ({ page, context }) => {
  await signUp(page);
  const other = await context.newPage();
  await openEditor(page, true);
  await openEditor(other, true);

  await page.getByLabel("Bio").fill("Saved from the first tab.");
  await page.getByTestId("save").click();
  await expect(page.getByTestId("saved")).toBeVisible();

  await other.getByLabel("Bio").fill("Saved from the second tab.");
  await other.getByTestId("save").click();
  await expect(other.getByTestId("conflict")).toBeVisible();
  await expect(other.getByRole("link", { name: "Reload to see the latest version" })).toBeVisible();
});

test("user-supplied text is escaped", async ({ page }) => {
  let dialogs = 0;
  page.on("dialog", (d) => {
    dialogs += 1;
    void d.dismiss();
  });
  const username = await signUp(page);
  await openEditor(page, true);
  await page.getByLabel("Bio").fill("<script>alert(1)</script>");
  await page.getByTestId("save").click();
  await expect(page.getByTestId("saved")).toBeVisible();
  await page.goto(`/u/${username}`);
  await expect(page.getByTestId("bio")).toHaveText("<script>alert(1)</script>");
  expect(dialogs).toBe(0);
});

test("an unknown profile is a 404 page", async ({ page }) => {
  const response = await page.goto("/u/nobody_here_at_all");
  expect(response?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "Page not found" })).toBeVisible();
});
