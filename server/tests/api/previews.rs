//! Link previews of public profiles: Open Graph and Twitter card tags, the
//! canonical address from the configured public URL, the generated picture,
//! and the tags of a stored page after an edit.

use crate::support::{spawn_app_with, Cookie, Edit, TestApp, PLAIN};

const PUBLIC_URL: &str = "https://folio.example";

async fn app() -> TestApp {
    spawn_app_with(|settings| settings.service.public_url = PUBLIC_URL.to_owned()).await
}

/// One `<meta>` or `<link>` tag of the page's `<head>`: its attributes,
/// unescaped.
#[derive(Debug)]
struct Tag {
    name: String,
    attributes: Vec<(String, String)>,
}

impl Tag {
    fn get(&self, attribute: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(name, _)| name == attribute)
            .map(|(_, value)| value.as_str())
    }
}

fn unescape(value: &str) -> String {
    value
        .replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `<meta>` and `<link>` tags of `html`'s head. Attribute values are
/// read up to the next `"`, as a browser does: an unescaped quote in a value
/// would cut it short and the comparisons below would fail.
fn head_tags(html: &str) -> Vec<Tag> {
    let head = html.split("</head>").next().unwrap_or("");
    let mut tags = Vec::new();
    for (index, _) in head.match_indices('<') {
        let rest = &head[index + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if name != "meta" && name != "link" {
            continue;
        }
        let body = &rest[name.len()..rest.find('>').unwrap_or(rest.len())];
        let mut attributes = Vec::new();
        let mut remaining = body;
        while let Some(eq) = remaining.find("=\"") {
            let key = remaining[..eq]
                .trim()
                .rsplit(' ')
                .next()
                .unwrap_or("")
                .to_owned();
            let after = &remaining[eq + 2..];
            let end = after.find('"').unwrap_or(after.len());
            attributes.push((key, unescape(&after[..end])));
            remaining = &after[(end + 1).min(after.len())..];
        }
        tags.push(Tag { name, attributes });
    }
    tags
}

/// The `content` of `<meta property=…>` (or `name=…`).
fn meta<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .filter(|tag| tag.name == "meta")
        .find(|tag| tag.get("property") == Some(key) || tag.get("name") == Some(key))
        .and_then(|tag| tag.get("content"))
}

fn canonical(tags: &[Tag]) -> Option<&str> {
    tags.iter()
        .filter(|tag| tag.name == "link")
        .find(|tag| tag.get("rel") == Some("canonical"))
        .and_then(|tag| tag.get("href"))
}

async fn anonymous_page(app: &TestApp, path: &str) -> (u16, String) {
    app.page(path, &Cookie(None)).await
}

#[tokio::test]
async fn a_profile_page_carries_its_link_preview() {
    let app = app().await;
    app.register("frank").await;

    let (status, html) = anonymous_page(&app, "/u/frank").await;
    assert_eq!(status, 200);
    let tags = head_tags(&html);

    assert_eq!(meta(&tags, "og:type"), Some("profile"));
    assert_eq!(meta(&tags, "og:title"), Some("frank (@frank)"));
    assert_eq!(
        meta(&tags, "og:description"),
        Some("frank (@frank) on Folio")
    );
    assert_eq!(meta(&tags, "og:url"), Some("https://folio.example/u/frank"));
    assert_eq!(canonical(&tags), Some("https://folio.example/u/frank"));
    assert_eq!(
        meta(&tags, "og:image"),
        Some("https://folio.example/card/frank.png")
    );
    assert_eq!(meta(&tags, "twitter:card"), Some("summary"));
    assert_eq!(meta(&tags, "profile:username"), Some("frank"));
}

#[tokio::test]
async fn the_canonical_address_ignores_the_requests_host() {
    let app = app().await;
    app.register("frank").await;

    for _ in 0..2 {
        let html = app
            .client
            .get(app.url("/u/frank"))
            .header("Host", "evil.example")
            .header("X-Forwarded-Host", "evil.example")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let tags = head_tags(&html);
        assert_eq!(canonical(&tags), Some("https://folio.example/u/frank"));
        assert!(!html.contains("evil.example"), "{html}");
    }
}

#[tokio::test]
async fn a_display_name_with_quotes_and_markup_is_escaped_in_the_tags() {
    let app = app().await;
    let cookie = app.register("frank").await;
    let name = r#"Fr"ank </title><b>&amp; 'co'"#;
    let bio = r#"Says "hi" <script>alert(1)</script>"#;
    let (status, _) = app
        .update_profile(
            &cookie,
            &Edit {
                display_name: name,
                bio,
                ..PLAIN
            },
            1,
        )
        .await;
    assert_eq!(status, 200);

    let (_, html) = anonymous_page(&app, "/u/frank").await;
    let tags = head_tags(&html);

    assert_eq!(
        meta(&tags, "og:title"),
        Some(format!("{name} (@frank)").as_str())
    );
    assert_eq!(meta(&tags, "og:description"), Some(bio));
    assert!(
        !html.contains("<b>") && !html.contains("<script>alert"),
        "{html}"
    );
}

#[tokio::test]
async fn an_edit_updates_the_tags_of_the_stored_page() {
    let app = app().await;
    let cookie = app.register("frank").await;
    // Rendered once and stored, then served from the store.
    anonymous_page(&app, "/u/frank").await;
    let (_, before) = anonymous_page(&app, "/u/frank").await;
    assert_eq!(app.metric("folio_page_cache_hits_total").await, 1);
    assert_eq!(
        meta(&head_tags(&before), "og:title"),
        Some("frank (@frank)")
    );

    let avatar = "https://images.example/frank.png";
    let (status, _) = app
        .update_profile(
            &cookie,
            &Edit {
                display_name: "Frank Renamed",
                bio: "New bio.",
                avatar_url: avatar,
                ..PLAIN
            },
            1,
        )
        .await;
    assert_eq!(status, 200);

    let (_, after) = anonymous_page(&app, "/u/frank").await;
    let tags = head_tags(&after);
    assert_eq!(meta(&tags, "og:title"), Some("Frank Renamed (@frank)"));
    assert_eq!(meta(&tags, "og:description"), Some("New bio."));
    assert_eq!(meta(&tags, "og:image"), Some(avatar));
    assert_eq!(
        meta(&tags, "og:image:width"),
        None,
        "the size of an avatar is not known"
    );
}

#[tokio::test]
async fn the_website_link_says_rel_me() {
    let app = app().await;
    let cookie = app.register("frank").await;
    let (status, _) = app
        .update_profile(
            &cookie,
            &Edit {
                website: "https://frank.example/",
                ..PLAIN
            },
            1,
        )
        .await;
    assert_eq!(status, 200);

    let (_, html) = anonymous_page(&app, "/u/frank").await;
    let link = html
        .split("<a ")
        .find(|a| a.contains(r#"data-testid="website""#))
        .expect("the website link");
    let rel = link
        .split("rel=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(rel.split(' ').any(|r| r == "me"), "{link}");
}

#[tokio::test]
async fn the_generated_picture_is_a_cacheable_png() {
    let app = app().await;
    app.register("frank").await;

    let response = app
        .client
        .get(app.url("/card/frank.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(header("content-type").as_deref(), Some("image/png"));
    assert_eq!(
        header("cache-control").as_deref(),
        Some("public, max-age=86400")
    );
    let body = response.bytes().await.unwrap();
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"));

    for path in [
        "/card/Frank.png",
        "/card/frank",
        "/card/a.png",
        "/card/%3Cb%3E.png",
    ] {
        let status = app.client.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(status, 404, "{path}");
    }
}
