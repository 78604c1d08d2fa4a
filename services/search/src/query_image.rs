//! Query images: carried base64 in JSON requests, decoded with limits before any model sees
//! them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use folio_core::PageImage;
use image::{ImageReader, Limits};
use serde::{Deserialize, Deserializer, Serializer};

/// Largest accepted query image, encoded (20 MiB).
pub const MAX_QUERY_IMAGE_BYTES: usize = 20 * 1024 * 1024;
/// Largest accepted side of a decoded query image, in pixels.
pub const MAX_QUERY_IMAGE_SIDE: u32 = 16_384;
/// Largest allocation decoding may make (a decompression bomb stops here).
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;

/// Decodes a PNG or JPEG query image to RGB, refusing images over the size limits.
pub fn decode_query_image(bytes: &[u8]) -> Result<PageImage, String> {
    if bytes.len() > MAX_QUERY_IMAGE_BYTES {
        return Err(format!(
            "image is {} bytes; the limit is {MAX_QUERY_IMAGE_BYTES}",
            bytes.len()
        ));
    }
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("image: {e}"))?;
    if reader.format().is_none() {
        return Err("image: not a PNG or JPEG file".into());
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_QUERY_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_QUERY_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| format!("image cannot be decoded: {e}"))?
        .into_rgb8();
    if img.width() == 0 || img.height() == 0 {
        return Err("image has no pixels".into());
    }
    Ok(PageImage {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    })
}

/// Serde for `Option<Vec<u8>>` as a standard base64 string.
pub(crate) mod base64_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => serializer.serialize_str(&STANDARD.encode(b)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(deserializer)?;
        text.map(|t| {
            STANDARD
                .decode(t.trim())
                .map_err(|e| serde::de::Error::custom(format!("image is not valid base64: {e}")))
        })
        .transpose()
    }
}
