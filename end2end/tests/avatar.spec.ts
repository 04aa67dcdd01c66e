import { test, expect, Browser, Page } from "@playwright/test";
import AxeBuilder from "@axe-core/playwright";
import { hydrated, signUp } from "./helpers";

/** A picture made by the browser's canvas: noise (so it is big enough for
 * the upload to take a while when throttled), left half reddish. */
async function makePicture(browser: Browser, width: number, height: number): Promise<Buffer> {
  const context = await browser.newContext();
  const page = await context.newPage();
  const base64 = await page.evaluate(
    ([w, h]) => {
      const canvas = document.createElement("canvas");
      canvas.width = w;
      canvas.height = h;
      const ctx = canvas.getContext("2d")!;
      const pixels = ctx.createImageData(w, h);
      for (let i = 0; i < pixels.data.length; i += 4) {
        const x = (i / 4) % w;
        pixels.data[i] = x < w / 2 ? 200 + Math.random() * 55 : Math.random() * 60;
        pixels.data[i + 1] = Math.random() * 80;
        pixels.data[i + 2] = x < w / 2 ? Math.random() * 60 : 200 + Math.random() * 55;
        pixels.data[i + 3] = 255;
      }
      ctx.putImageData(pixels, 0, 0);
      return canvas.toDataURL("image/jpeg", 0.95).split(",")[1];
    },
    [width, height] as const,
  );
  await context.close();
  return Buffer.from(base64, "base64");
}

async function openEditor(page: Page, js: boolean) {
  await page.goto("/settings/profile");
  if (js) await hydrated(page);
  await expect(page.getByRole("heading", { name: "Edit your profile" })).toBeVisible();
}

const MEDIA_128 = /^\/media\/[0-9a-f]{64}-128\.webp$/;

test("with JavaScript: preview, progress, and the new avatar on the public page", async ({ page, browser }) => {
  const picture = await makePicture(browser, 900, 700);
  const username = await signUp(page);
  await openEditor(page, true);
  await expect(page.getByTestId("no-avatar")).toBeVisible();

  // Keyboard: the file input is an ordinary, focusable control.
  const input = page.getByLabel("Choose a photo, or drop one here");
  await input.focus();
  await expect(input).toBeFocused();

  await input.setInputFiles({ name: "me.jpg", mimeType: "image/jpeg", buffer: picture });
  const preview = page.getByTestId("avatar-preview");
  await expect(preview).toBeVisible();
  await expect(preview).toHaveAttribute("src", /^blob:/);

  // A slow uplink, so the progress bar is there long enough to see.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 20,
    downloadThroughput: -1,
    uploadThroughput: Math.max(20_000, picture.length / 3),
  });
  await page.getByTestId("avatar-upload").click();
  await expect(page.getByTestId("avatar-progress")).toBeVisible();
  await expect(page.getByTestId("avatar-status")).toHaveText("Your new photo is saved.", { timeout: 30_000 });
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: -1,
  });
  await expect(page.getByTestId("avatar-progress")).toHaveCount(0);
  await expect(preview).toHaveCount(0);
  await expect(page.getByTestId("current-avatar")).toHaveAttribute("src", MEDIA_128);

  // The text form moved on to the new version: saving it is no conflict.
  await page.getByLabel("Bio").fill("Has a photo now.");
  await page.getByTestId("save").click();
  await expect(page.getByTestId("saved")).toBeVisible();

  await page.goto(`/u/${username}`);
  const avatar = page.getByTestId("avatar");
  await expect(avatar).toHaveAttribute("src", MEDIA_128);
  await expect(avatar).toHaveAttribute("srcset", /-256\.webp 256w/);
  await expect(avatar).toHaveAttribute("width", "96");
  await expect(avatar).toHaveAttribute("alt", `Avatar of ${username}`);
  await expect
    .poll(() => avatar.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth))
    .toBeGreaterThan(0);
});

test("with JavaScript: a file dropped on the zone that is not an image is refused", async ({ page }) => {
  await signUp(page);
  await openEditor(page, true);
  const dataTransfer = await page.evaluateHandle(() => {
    const data = new DataTransfer();
    data.items.add(new File(["MZ this is a program"], "photo.jpg", { type: "image/jpeg" }));
    return data;
  });
  await page.getByTestId("avatar-dropzone").dispatchEvent("drop", { dataTransfer });
  await expect(page.getByTestId("avatar-preview")).toBeVisible();
  await page.getByTestId("avatar-upload").click();
  await expect(page.getByTestId("avatar-error")).toHaveText(/not an image Folio can read/);
  await expect(page.getByTestId("no-avatar")).toBeVisible();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the plain form uploads, shows refusals next to the field, and removes", async ({ page, browser }) => {
    const picture = await makePicture(browser, 300, 200);
    const username = await signUp(page, { js: false });
    await openEditor(page, false);

    const input = page.getByLabel("Choose a photo, or drop one here");
    await input.setInputFiles({ name: "notes.jpg", mimeType: "image/jpeg", buffer: Buffer.from("just some text") });
    await page.getByTestId("avatar-upload").click();
    await expect(page).toHaveURL(/avatar_error=not_an_image/);
    await expect(page.getByTestId("avatar-error")).toHaveText(/not an image Folio can read/);

    await input.setInputFiles({ name: "me.jpg", mimeType: "image/jpeg", buffer: picture });
    await page.getByTestId("avatar-upload").click();
    await expect(page).toHaveURL(/avatar=saved/);
    await expect(page.getByTestId("avatar-status")).toHaveText("Your new photo is saved.");
    await expect(page.getByTestId("current-avatar")).toHaveAttribute("src", MEDIA_128);

    await page.goto(`/u/${username}`);
    await expect(page.getByTestId("avatar")).toHaveAttribute("src", MEDIA_128);

    await openEditor(page, false);
    await page.getByTestId("avatar-remove").click();
    await expect(page).toHaveURL(/avatar=removed/);
    await expect(page.getByTestId("no-avatar")).toBeVisible();
  });
});

test("the editor with its upload control passes axe (WCAG 2.2 AA)", async ({ page }) => {
  await signUp(page);
  await openEditor(page, true);
  await page
    .getByLabel("Choose a photo, or drop one here")
    .setInputFiles({ name: "x.jpg", mimeType: "image/jpeg", buffer: Buffer.from("x") });
  const results = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"])
    .analyze();
  expect(results.violations.map((v) => v.id)).toEqual([]);
});
