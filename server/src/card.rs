//! The picture of a profile's link preview when it has no avatar
//! (`/card/<username>.png`): a symmetric 5×5 pattern in a colour, both
//! derived from the username, like the identicons of code hosts.
//!
//! PNG rather than SVG: the crawlers that build link previews (Facebook,
//! X, LinkedIn, Slack, Discord) take PNG and JPEG, and most ignore SVG.
//! A pattern rather than the person's initial or name: drawing text needs a
//! font and a rasteriser in the server, and no user text goes into the
//! image at all, so there is nothing to escape.
//! Derived from the name alone, so it needs no database read, is the same
//! for a name that exists and one that does not (it reveals nothing), and
//! can be cached by anyone for a day.

use app::domain::Username;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// 600 × 600: square for a `summary` card, above every crawler's minimum
/// (200 px), and a few KB as a two-colour PNG.
pub const SIZE: u32 = 600;
const CELLS: u32 = 5;
const MARGIN: u32 = 50;
const CELL: u32 = (SIZE - 2 * MARGIN) / CELLS;

/// `GET /card/{file}`, where `file` is `<username>.png`.
pub async fn png(Path(file): Path<String>) -> Response {
    let username = file
        .strip_suffix(".png")
        .and_then(|name| Username::parse(name).ok().filter(|u| u.as_str() == name));
    let Some(username) = username else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match render(username.as_str()) {
        Ok(image) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            image,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode a profile card");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// FNV-1a: stable across builds and platforms (the std hasher is not), and
/// nothing here needs more than spreading names over colours and patterns.
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The pattern (which of the 5 × 5 cells are filled, mirrored left to right)
/// and the colour for `name`.
fn design(name: &str) -> ([[bool; CELLS as usize]; CELLS as usize], [u8; 3]) {
    let hash = fnv1a(name);
    let mut cells = [[false; CELLS as usize]; CELLS as usize];
    for (row, cells_of_row) in cells.iter_mut().enumerate() {
        for column in 0..3 {
            let filled = hash >> (row * 3 + column) & 1 == 1;
            cells_of_row[column] = filled;
            cells_of_row[CELLS as usize - 1 - column] = filled;
        }
    }
    (cells, colour((hash >> 20) % 360))
}

/// A hue at a saturation and lightness dark enough to stand out on the light
/// background.
fn colour(hue: u64) -> [u8; 3] {
    let (saturation, lightness) = (0.6_f64, 0.38_f64);
    let chroma = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let h = hue as f64 / 60.0;
    let x = chroma * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match hue / 60 {
        0 => (chroma, x, 0.0),
        1 => (x, chroma, 0.0),
        2 => (0.0, chroma, x),
        3 => (0.0, x, chroma),
        4 => (x, 0.0, chroma),
        _ => (chroma, 0.0, x),
    };
    let m = lightness - chroma / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round() as u8;
    [byte(r), byte(g), byte(b)]
}

/// A two-colour indexed PNG, one bit per pixel.
pub fn render(name: &str) -> Result<Vec<u8>, png::EncodingError> {
    let (cells, foreground) = design(name);
    let row_bytes = SIZE.div_ceil(8) as usize;
    let mut pixels = vec![0u8; row_bytes * SIZE as usize];
    for y in 0..SIZE {
        for x in 0..SIZE {
            let inside =
                (MARGIN..SIZE - MARGIN).contains(&x) && (MARGIN..SIZE - MARGIN).contains(&y);
            if inside && cells[((y - MARGIN) / CELL) as usize][((x - MARGIN) / CELL) as usize] {
                pixels[y as usize * row_bytes + x as usize / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, SIZE, SIZE);
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::One);
    let [r, g, b] = foreground;
    encoder.set_palette(vec![0xf4, 0xf4, 0xf5, r, g, b]);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_always_gets_the_same_picture_and_names_differ() {
        assert_eq!(render("ada").unwrap(), render("ada").unwrap());
        assert_ne!(render("ada").unwrap(), render("grace").unwrap());
    }

    #[test]
    fn the_picture_is_a_small_png_of_the_advertised_size() {
        let image = render("ada").unwrap();
        assert!(image.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&image[16..24], &[0, 0, 2, 0x58, 0, 0, 2, 0x58], "600 × 600");
        assert!(image.len() < 8_000, "{} bytes", image.len());
    }

    #[test]
    fn the_pattern_is_mirrored() {
        for name in ["ada", "grace", "katherine_j", "x_1"] {
            let (cells, _) = design(name);
            for row in cells {
                assert_eq!(row[0], row[4]);
                assert_eq!(row[1], row[3]);
            }
        }
    }
}
