import { test, expect, Page } from "@playwright/test";
import { hydrated, signOut, signUp } from "./helpers";
import { PASSWORD, uniqueName } from "./server";

// What a person (or a password manager) puts into a form before the WASM has
// arrived must survive hydration, and a submit pressed before it arrives is a
// plain form post. None of these tests waits for `data-hydrated` before typing:
// the WASM is held back until the test has filled the form, which is what a
// slow connection does.

/** Holds every `.wasm` response of `page` until `release()` is called (or
 * `ms` have passed: a slow connection, not a dead one). */
function holdWasm(page: Page, ms = 1_500): { release: () => void } {
  let release = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  void page.route("**/*.wasm", async (route) => {
    await Promise.race([gate, new Promise((resolve) => setTimeout(resolve, ms))]);
    await route.continue().catch(() => {});
  });
  return { release };
}

/** Opens `path` and returns as soon as the HTML is there, before hydration. */
async function openUnhydrated(page: Page, path: string) {
  await page.goto(path, { waitUntil: "domcontentloaded" });
  await expect(page.locator("body[data-hydrated]")).toHaveCount(0);
}

/** The typing really happened before hydration (else the test proves nothing). */
async function stillUnhydrated(page: Page) {
  expect(await page.locator("body[data-hydrated]").count()).toBe(0);
}

/** Sets an input's value the way password managers do: no input events. */
async function setWithoutEvents(page: Page, id: string, value: string) {
  await page.evaluate(
    ([id, value]) => {
      (document.getElementById(id) as HTMLInputElement).value = value;
    },
    [id, value],
  );
}

async function signedUpAndOut(page: Page): Promise<string> {
  const username = await signUp(page);
  await signOut(page);
  return username;
}

test("sign-up: typing before hydration survives it, and the submit succeeds", async ({ page }) => {
  const username = uniqueName("h");
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/signup");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);

  await expect(page.getByLabel("Username")).toHaveValue(username);
  await expect(page.getByLabel("Email")).toHaveValue(`${username}@example.com`);
  await expect(page.getByLabel("Password")).toHaveValue(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});

test("sign-up: a submit pressed before the WASM arrives posts the typed values", async ({ page }) => {
  const username = uniqueName("h");
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/signup");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await page.getByLabel("Password").fill(PASSWORD);
  await stillUnhydrated(page);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});

test("sign-in: a password manager's fill before hydration survives it", async ({ page }) => {
  const username = await signedUpAndOut(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/signin");
  await setWithoutEvents(page, "field-identifier", username);
  await setWithoutEvents(page, "field-password", PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);

  await expect(page.getByLabel("Username or email")).toHaveValue(username);
  await expect(page.getByLabel("Password")).toHaveValue(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});

test("sign-in: typing before hydration survives it; a submit before it is a plain post", async ({ page }) => {
  const username = await signedUpAndOut(page);
  const wasm = holdWasm(page);
  await openUnhydrated(page, "/signin");
  await page.getByLabel("Username or email").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("Username or email")).toHaveValue(username);
  await expect(page.getByLabel("Password")).toHaveValue(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);

  await signOut(page);
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/signin");
  await page.getByLabel("Username or email").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await stillUnhydrated(page);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});

test("sign-up: a password manager's fill before hydration survives it", async ({ page }) => {
  const username = uniqueName("h");
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/signup");
  await setWithoutEvents(page, "field-username", username);
  await setWithoutEvents(page, "field-email", `${username}@example.com`);
  await setWithoutEvents(page, "field-password", PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("Username")).toHaveValue(username);
  await expect(page.getByLabel("Password")).toHaveValue(PASSWORD);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.locator(".nav-user")).toHaveText(`@${username}`);
});

test("profile editor: edits made before hydration survive it and are saved", async ({ page }) => {
  const username = await signUp(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/settings/profile");
  await page.getByLabel("Display name").fill("Grace Hopper");
  await page.getByLabel("Bio").fill("Compilers.\nCOBOL.");
  await page.getByLabel("Location").fill("Arlington");
  await page.getByLabel("Website").fill("https://example.com/grace");
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);

  await expect(page.getByLabel("Display name")).toHaveValue("Grace Hopper");
  await expect(page.getByLabel("Bio")).toHaveValue("Compilers.\nCOBOL.");
  await expect(page.getByLabel("Location")).toHaveValue("Arlington");
  await expect(page.getByLabel("Website")).toHaveValue("https://example.com/grace");
  // The counters count what is in the fields, not the values the page was rendered with.
  await expect(page.getByTestId("display_name-counter")).toHaveText(/^12 \//);
  await expect(page.getByTestId("bio-counter")).toHaveText(/^17 \//);
  await page.getByTestId("save").click();
  await expect(page.getByTestId("saved")).toBeVisible();

  await page.goto(`/u/${username}`);
  await expect(page.getByTestId("display-name")).toHaveText("Grace Hopper");
  await expect(page.getByTestId("bio")).toHaveText("Compilers.\nCOBOL.");
  await expect(page.getByTestId("location")).toContainText("Arlington");
});

test("profile editor: a save pressed before the WASM arrives posts the typed values", async ({ page }) => {
  const username = await signUp(page);
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/settings/profile");
  await page.getByLabel("Display name").fill("Katherine Johnson");
  await page.getByLabel("Bio").fill("Trajectories.");
  await stillUnhydrated(page);
  await page.getByTestId("save").click();
  await expect(page).toHaveURL(/\/settings\/profile\?saved/);
  await expect(page.getByTestId("saved")).toBeVisible();

  await page.goto(`/u/${username}`);
  await expect(page.getByTestId("display-name")).toHaveText("Katherine Johnson");
  await expect(page.getByTestId("bio")).toHaveText("Trajectories.");
});

test("change password: typing before hydration survives it, and the change succeeds", async ({ page }) => {
  await signUp(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/account");
  await page.getByLabel("Current password", { exact: true }).fill(PASSWORD);
  await page.getByLabel("New password", { exact: true }).fill("amber-lantern-orchard-71");
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);

  await expect(page.getByLabel("Current password", { exact: true })).toHaveValue(PASSWORD);
  await expect(page.getByLabel("New password", { exact: true })).toHaveValue("amber-lantern-orchard-71");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByTestId("password-changed")).toBeVisible();
});

test("change password: a submit pressed before the WASM arrives posts the typed values", async ({ page }) => {
  await signUp(page);
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/account");
  await setWithoutEvents(page, "field-current_password", PASSWORD);
  await page.getByLabel("New password", { exact: true }).fill("amber-lantern-orchard-72");
  await stillUnhydrated(page);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page).toHaveURL(/\/account\?password_changed/);
  await expect(page.getByTestId("password-changed")).toBeVisible();
});

test("forgot password: typing before hydration survives it; a submit before it is a plain post", async ({ page }) => {
  const username = await signedUpAndOut(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/forgot");
  await page.getByLabel("Email").fill(`${username}@example.com`);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("Email")).toHaveValue(`${username}@example.com`);
  await page.getByTestId("submit").click();
  await expect(page.getByTestId("reset-sent")).toBeVisible();
  await expect(page).toHaveURL(/\/forgot$/);

  holdWasm(page, 60_000);
  await openUnhydrated(page, "/forgot");
  await setWithoutEvents(page, "field-email", `${username}@example.com`);
  await stillUnhydrated(page);
  await page.getByTestId("submit").click();
  await expect(page).toHaveURL(/\/forgot\?sent=1$/);
  await expect(page.getByTestId("reset-sent")).toBeVisible();
});

test("delete account: the password typed before hydration survives it, and the deletion succeeds", async ({ page }) => {
  const username = await signUp(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/account");
  await page.getByLabel("Your password").fill(PASSWORD);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByLabel("Your password")).toHaveValue(PASSWORD);
  await page.getByTestId("delete-account").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("link", { name: "Sign in" })).toBeVisible();
  expect((await page.goto(`/u/${username}`))?.status()).toBe(404);
});

test("delete account: a submit pressed before the WASM arrives posts the typed password", async ({ page }) => {
  const username = await signUp(page);
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/account");
  await setWithoutEvents(page, "field-password", PASSWORD);
  await stillUnhydrated(page);
  await page.getByTestId("delete-account").click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("link", { name: "Sign in" })).toBeVisible();
  expect((await page.goto(`/u/${username}`))?.status()).toBe(404);
});

/** Signs `username` up through the API (the context keeps its cookie) and
 * gives the profile a display name; resolves once people search finds it
 * (the index is fed by events). */
async function searchable(page: Page, username: string, displayName: string) {
  const api = (fn: string, form: Record<string, string>) =>
    page.request.post(`/api/${fn}`, { form, maxRedirects: 0 });
  const registered = await api("register", { username, email: `${username}@example.com`, password: PASSWORD });
  expect(registered.status()).toBe(200);
  const saved = await api("update_profile", {
    display_name: displayName,
    bio: "",
    avatar_url: "",
    location: "",
    website: "",
    expected_version: "1",
  });
  expect(saved.status()).toBe(200);
  await expect
    .poll(async () => JSON.stringify(await (await api("search_people", { q: username })).json()), { timeout: 60_000 })
    .toContain(username);
}

test("people search: a query typed before hydration is searched once hydrated", async ({ page }) => {
  const username = uniqueName("hs");
  await searchable(page, username, "Hedy Lamarr");
  await page.context().clearCookies();
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/people");
  await page.getByTestId("people-q").fill(username);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByTestId("people-q")).toHaveValue(username);
  // The island searched what was typed: the results and the URL follow it.
  await expect(page.locator(".person-username")).toHaveText([`@${username}`]);
  await expect(page).toHaveURL(new RegExp(`/people\\?q=${username}$`));
  await expect(page.getByTestId("result-count")).toHaveText("1 person found.");
});

test("search boxes: a search sent before the WASM arrives is a plain GET", async ({ page }) => {
  const username = uniqueName("hg");
  await searchable(page, username, "Radia Perlman");
  await page.context().clearCookies();
  // The header's box (on every page, no island).
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/");
  await page.getByTestId("header-search").fill(username);
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  await expect(page.getByTestId("header-search")).toHaveValue(username);
  await page.getByTestId("header-search").press("Enter");
  await expect(page).toHaveURL(new RegExp(`/people\\?q=${username}$`));
  await expect(page.locator(".person-username")).toHaveText([`@${username}`]);

  // The people page's own box, submitted before hydration.
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/people");
  await page.getByTestId("people-q").fill(username);
  await stillUnhydrated(page);
  await page.getByTestId("people-q").press("Enter");
  await expect(page).toHaveURL(new RegExp(`/people\\?q=${username}$`));
  await expect(page.locator(".person-username")).toHaveText([`@${username}`]);
});

/** A small PNG drawn by the browser's canvas. */
async function picture(page: Page): Promise<Buffer> {
  const base64 = await page.evaluate(() => {
    const canvas = document.createElement("canvas");
    canvas.width = 64;
    canvas.height = 48;
    const ctx = canvas.getContext("2d")!;
    ctx.fillStyle = "#c33";
    ctx.fillRect(0, 0, 32, 48);
    ctx.fillStyle = "#33c";
    ctx.fillRect(32, 0, 32, 48);
    return canvas.toDataURL("image/png").split(",")[1];
  });
  return Buffer.from(base64, "base64");
}

test("avatar: a photo chosen before hydration is still chosen after it, and uploads", async ({ page }) => {
  const username = await signUp(page);
  const png = await picture(page);
  const wasm = holdWasm(page, 60_000);
  await openUnhydrated(page, "/settings/profile");
  await page.getByTestId("avatar-input").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: png });
  await stillUnhydrated(page);
  wasm.release();
  await hydrated(page);
  expect(await page.getByTestId("avatar-input").evaluate((input: HTMLInputElement) => input.files?.length)).toBe(1);
  await page.getByTestId("avatar-upload").click();
  await expect(page.getByTestId("avatar-status")).toHaveText("Your new photo is saved.");
  await expect(page.getByTestId("current-avatar")).toBeVisible();
  await page.goto(`/u/${username}`);
  await expect(page.getByTestId("avatar")).toHaveAttribute("src", /^\/media\//);
});

test("avatar: an upload pressed before the WASM arrives is a plain multipart post", async ({ page }) => {
  await signUp(page);
  const png = await picture(page);
  holdWasm(page, 60_000);
  await openUnhydrated(page, "/settings/profile");
  await page.getByTestId("avatar-input").setInputFiles({ name: "me.png", mimeType: "image/png", buffer: png });
  await stillUnhydrated(page);
  await page.getByTestId("avatar-upload").click();
  await expect(page).toHaveURL(/\/settings\/profile\?avatar=saved/);
  await expect(page.getByTestId("avatar-status")).toHaveText("Your new photo is saved.");
  await expect(page.getByTestId("current-avatar")).toBeVisible();
});
