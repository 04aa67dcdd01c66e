//! From uploaded bytes to the stored avatar: sniff, decode within limits,
//! crop, resize, orient, encode.
//!
//! Re-encoding is the sanitiser. Nothing of the upload is stored but its
//! pixels: the files written are WebP files this module encoded from a
//! pixel buffer, so no EXIF block (a phone photo's GPS position), no ICC or
//! XMP chunk, no comment and no bytes appended after the image (a polyglot's
//! HTML or script) can survive.
//!
//! The format is decided by the bytes' own signature, never by the file
//! name or the Content-Type the browser sent. The decoder gets `Limits`
//! (width, height, memory) before it reads a pixel: a small file whose
//! header claims 60 000 × 60 000 pixels is refused from its header.
//!
//! Memory is reserved before it is allocated. `image` enforces
//! `Limits::max_alloc` only in `ImageReader::decode()`, not in the
//! `into_decoder()` + `DynamicImage::from_decoder()` used here (for the EXIF
//! orientation), so [`decode_cost`] reserves, from the header alone, the
//! decoded buffer (`total_bytes()`: an 8192 × 8192 16-bit RGBA PNG of 510 KB
//! is 512 MiB), the 8-bit copy made for the resizer when the decoded colour
//! type is another, and the resizer's intermediate rows, against
//! [`MAX_DECODE_BYTES`]; what passes is then reserved against the
//! [`Processor`]'s byte budget, shared by every upload of the process, before
//! the decode starts. So no decode allocates past its limit, and all decodes
//! together stay within the budget, however many uploads arrive.
//!
//! Centre square crop and EXIF orientation commute (rotating or mirroring a
//! picture maps its centred square onto the centred square of the result),
//! so the crop and the resize run on the sensor's pixels and the
//! orientation is applied to the small results: a 12 MP photo is never
//! rotated at full size, which would copy 36 MB per upload.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fast_image_resize as fr;
use image::codecs::webp::WebPEncoder;
use image::error::{ImageError, LimitErrorKind};
use image::metadata::Orientation;
use image::{
    ColorType, DynamicImage, ExtendedColorType, ImageDecoder, ImageFormat, ImageReader, Limits,
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::domain::{AvatarKey, AvatarRefusal, AVATAR_SIZES, MAX_AVATAR_SIDE};
use crate::error::AppError;
use crate::ssr::{Error, Result};

/// At most this much memory for one decode (the decoded pixels, the 8-bit
/// copy and the resizer's rows, see [`decode_cost`]): an 8192 × 8192 RGB
/// picture is 198 MiB; with alpha it would be 264 MiB, and is refused.
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

const MIB: u64 = 1024 * 1024;

/// How long an upload waits for a processing slot before the server says
/// it is busy (503) rather than queueing without end.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

/// An upload made into an avatar.
#[derive(Debug, Clone)]
pub struct Processed {
    pub key: AvatarKey,
    /// One WebP file per size of [`AVATAR_SIZES`], in that order.
    pub files: Vec<(u32, Vec<u8>)>,
    /// The upload's format and size, as decoded (before orientation).
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// Time spent decoding, and resizing and encoding.
    pub decode: Duration,
    pub resize_and_encode: Duration,
}

/// Runs [`process_now`] on the blocking pool, at most one per core at a
/// time (a decode is all CPU) and only while the bytes it will allocate fit
/// in the memory budget (a semaphore whose permits are MiB): the async
/// workers keep serving pages meanwhile, and a burst of uploads queues here
/// instead of holding a decoded photo each. Slots alone would not bound the
/// memory: two slots of 256 MiB pictures are 512 MiB.
#[derive(Clone)]
pub struct Processor {
    slots: Arc<Semaphore>,
    /// Permits are MiB of decoding memory.
    memory: Arc<Semaphore>,
    memory_mib: u32,
}

impl Default for Processor {
    fn default() -> Self {
        Self::new(default_slots(), MAX_DECODE_BYTES)
    }
}

/// One processing slot per core.
pub fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

impl Processor {
    /// `slots` decodes at a time, together within `memory_bytes` (raised to
    /// [`MAX_DECODE_BYTES`]: a picture allowed alone must fit).
    pub fn new(slots: usize, memory_bytes: u64) -> Self {
        let memory_mib = u32::try_from(memory_bytes.max(MAX_DECODE_BYTES).div_ceil(MIB))
            .unwrap_or(u32::MAX)
            .min(Semaphore::MAX_PERMITS as u32);
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            memory: Arc::new(Semaphore::new(memory_mib as usize)),
            memory_mib,
        }
    }

    /// The avatar made from `bytes`, or why it cannot be made.
    pub async fn process(
        &self,
        bytes: impl AsRef<[u8]> + Send + Sync + 'static,
    ) -> Result<std::result::Result<Processed, AvatarRefusal>> {
        let span = tracing::Span::current();
        let bytes = Arc::new(bytes);
        // The header only (no pixel is decoded), off the async workers all
        // the same: it is the client's bytes.
        let cost = {
            let (bytes, span) = (bytes.clone(), span.clone());
            tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                decode_cost((*bytes).as_ref())
            })
            .await?
        };
        let cost = match cost {
            Ok(cost) => cost,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let mib = u32::try_from(cost.div_ceil(MIB))
            .unwrap_or(u32::MAX)
            .clamp(1, self.memory_mib);
        let busy = |_| Error::App(AppError::Unavailable);
        // Memory first, then a core, always in this order: no upload holds
        // a slot while it waits for memory another one needs.
        let memory =
            tokio::time::timeout(QUEUE_TIMEOUT, self.memory.clone().acquire_many_owned(mib))
                .await
                .map_err(busy)?
                .map_err(|_| Error::App(AppError::Unavailable))?;
        let slot = tokio::time::timeout(QUEUE_TIMEOUT, self.slots.clone().acquire_owned())
            .await
            .map_err(busy)?
            .map_err(|_| Error::App(AppError::Unavailable))?;
        Ok(tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            let _reserved = (memory, slot);
            process_now((*bytes).as_ref())
        })
        .await?)
    }
}

/// The bytes decoding `bytes` will allocate at most (the decoded picture,
/// an 8-bit copy when it decodes to another colour type, the resizer's
/// rows), read from its header alone; refused when that passes
/// [`MAX_DECODE_BYTES`] or the header does (see the module comment).
pub fn decode_cost(bytes: &[u8]) -> std::result::Result<u64, AvatarRefusal> {
    let (_, decoder) = open(bytes)?;
    reserve(&decoder)
}

/// The format and a decoder that has read the header (and has `Limits`).
fn open(bytes: &[u8]) -> std::result::Result<(ImageFormat, impl ImageDecoder + '_), AvatarRefusal> {
    let format = sniff(bytes)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(AvatarRefusal::NotAnImage);
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits());
    Ok((format, reader.into_decoder().map_err(refusal)?))
}

/// Reserves what decoding with `decoder` allocates against the limit, with
/// `image`'s own accounting (`Limits::reserve`), which
/// `DynamicImage::from_decoder` skips.
fn reserve(decoder: &impl ImageDecoder) -> std::result::Result<u64, AvatarRefusal> {
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    let color = decoder.color_type();
    let eight_bit = if color.has_alpha() {
        ColorType::Rgba8
    } else {
        ColorType::Rgb8
    };
    let channels = u64::from(eight_bit.bytes_per_pixel());
    let decoded = decoder.total_bytes();
    let copy = if color == eight_bit {
        0
    } else {
        pixels.saturating_mul(channels)
    };
    // Lanczos3 resizes rows first: the largest size's width by every row
    // of the source.
    let largest = u64::from(*AVATAR_SIZES.last().expect("sizes"));
    let rows = largest * u64::from(height) * channels;
    let mut limits = limits();
    for amount in [decoded, copy, rows] {
        limits.reserve(amount).map_err(refusal)?;
    }
    Ok(decoded.saturating_add(copy).saturating_add(rows))
}

/// The whole pipeline, on the calling thread (see the module comment).
pub fn process_now(bytes: &[u8]) -> std::result::Result<Processed, AvatarRefusal> {
    let started = Instant::now();
    let (format, mut decoder) = open(bytes)?;
    // Before a pixel is allocated (module comment).
    reserve(&decoder)?;
    // An orientation that cannot be read is no orientation: the picture
    // is still the picture.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(refusal)?;
    let decode = started.elapsed();

    let started = Instant::now();
    let (width, height) = (image.width(), image.height());
    let has_alpha = image.color().has_alpha();
    let (pixels, pixel_type, color) = if has_alpha {
        let rgba = image.into_rgba8().into_raw();
        (rgba, fr::PixelType::U8x4, ExtendedColorType::Rgba8)
    } else {
        let rgb = image.into_rgb8().into_raw();
        (rgb, fr::PixelType::U8x3, ExtendedColorType::Rgb8)
    };
    let source = fr::images::ImageRef::new(width, height, &pixels, pixel_type)
        .map_err(|_| AvatarRefusal::NotAnImage)?;
    let side = width.min(height);
    let largest = *AVATAR_SIZES.last().expect("sizes");
    let mut resizer = fr::Resizer::new();
    let lanczos = fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3);
    // The largest size from the upload, centre square; the smaller ones
    // from it (exact halvings of a sharp image are as good, and cost
    // nothing next to the first).
    let mut top = fr::images::Image::new(largest, largest, pixel_type);
    resizer
        .resize(
            &source,
            &mut top,
            &fr::ResizeOptions::new().resize_alg(lanczos).crop(
                f64::from(width - side) / 2.0,
                f64::from(height - side) / 2.0,
                f64::from(side),
                f64::from(side),
            ),
        )
        .map_err(|_| AvatarRefusal::NotAnImage)?;
    drop(pixels);
    let mut files = Vec::with_capacity(AVATAR_SIZES.len());
    for size in AVATAR_SIZES {
        let buffer = if size == largest {
            top.buffer().to_vec()
        } else {
            let mut small = fr::images::Image::new(size, size, pixel_type);
            resizer
                .resize(
                    &top,
                    &mut small,
                    &fr::ResizeOptions::new().resize_alg(lanczos),
                )
                .map_err(|_| AvatarRefusal::NotAnImage)?;
            small.into_vec()
        };
        let upright = oriented(buffer, size, has_alpha, orientation)?;
        files.push((size, encode(&upright, size, color)?));
    }
    let key_hex = format!("{:x}", Sha256::digest(&files.last().expect("sizes").1));
    let key = AvatarKey::parse(&key_hex).map_err(|_| AvatarRefusal::NotAnImage)?;
    Ok(Processed {
        key,
        files,
        format,
        width,
        height,
        decode,
        resize_and_encode: started.elapsed(),
    })
}

fn limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_AVATAR_SIDE);
    limits.max_image_height = Some(MAX_AVATAR_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    limits
}

/// The format, from the bytes' signature alone.
fn sniff(bytes: &[u8]) -> std::result::Result<ImageFormat, AvatarRefusal> {
    if bytes.is_empty() {
        return Err(AvatarRefusal::Empty);
    }
    if is_heif(bytes) {
        return Err(AvatarRefusal::Heic);
    }
    match image::guess_format(bytes) {
        Ok(format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => Ok(format),
        Ok(_) => Err(AvatarRefusal::Unsupported),
        Err(_) if looks_like_svg(bytes) => Err(AvatarRefusal::Unsupported),
        Err(_) => Err(AvatarRefusal::NotAnImage),
    }
}

/// Whether a JPEG's last scan is followed by its end marker. The JPEG
/// decoder fills a file that stops early with grey and reports no error;
/// a photo cut off in transfer is refused instead. (In the compressed data
/// a 0xFF byte is always followed by 0x00 or a restart marker, so the
/// markers found are real; an EXIF thumbnail's end marker comes before the
/// picture's scans.)
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xff, 0xda]);
    let last_end = bytes.windows(2).rposition(|w| w == [0xff, 0xd9]);
    matches!((last_scan, last_end), (Some(scan), Some(end)) if end > scan)
}

/// An ISO media file (`....ftyp`) whose brand is one of HEIF's: what an
/// iPhone saves by default.
fn is_heif(bytes: &[u8]) -> bool {
    const BRANDS: [&[u8; 4]; 8] = [
        b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
    ];
    bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && BRANDS.iter().any(|brand| &bytes[8..12] == *brand)
}

/// SVG is text: refused as a format Folio does not take (it can carry
/// script), rather than as "not an image".
fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(1024)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    text.trim_start().starts_with('<') && text.contains("<svg")
}

fn refusal(error: ImageError) -> AvatarRefusal {
    match error {
        ImageError::Limits(limit) => match limit.kind() {
            LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory => {
                AvatarRefusal::TooManyPixels
            }
            _ => AvatarRefusal::Unsupported,
        },
        ImageError::Unsupported(_) => AvatarRefusal::Unsupported,
        // Decoding errors, and a file that ends early (an I/O error on the
        // in-memory reader).
        _ => AvatarRefusal::NotAnImage,
    }
}

/// `buffer` (a `size` square) turned as the EXIF orientation says.
fn oriented(
    buffer: Vec<u8>,
    size: u32,
    has_alpha: bool,
    orientation: Orientation,
) -> std::result::Result<DynamicImage, AvatarRefusal> {
    let mut image = if has_alpha {
        image::RgbaImage::from_raw(size, size, buffer).map(DynamicImage::ImageRgba8)
    } else {
        image::RgbImage::from_raw(size, size, buffer).map(DynamicImage::ImageRgb8)
    }
    .ok_or(AvatarRefusal::NotAnImage)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Lossless WebP: what the `image` crate encodes, in pure Rust (no C
/// library to build or patch). At 256 px that is tens of KB, against the
/// few MB of the upload.
fn encode(
    image: &DynamicImage,
    size: u32,
    color: ExtendedColorType,
) -> std::result::Result<Vec<u8>, AvatarRefusal> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .encode(image.as_bytes(), size, size, color)
        .map_err(|_| AvatarRefusal::NotAnImage)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_bytes() {
        assert_eq!(sniff(b"").unwrap_err(), AvatarRefusal::Empty);
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic").unwrap_err(),
            AvatarRefusal::Heic
        );
        assert_eq!(
            sniff(b"GIF89a\x01\0\x01\0").unwrap_err(),
            AvatarRefusal::Unsupported
        );
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>")
                .unwrap_err(),
            AvatarRefusal::Unsupported
        );
        assert_eq!(
            sniff(b"MZ\x90\0\x03\0\0\0this program").unwrap_err(),
            AvatarRefusal::NotAnImage
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n").unwrap(), ImageFormat::Png);
    }
}
