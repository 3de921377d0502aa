//! Making a thumbnail: decode an upload (PNG or JPEG, within bounds that keep a hostile file from taking the
//! instance's memory), scale it to fit a square keeping its proportions, and encode it as PNG.

use image::{ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// The longest side of a thumbnail, in pixels.
pub const THUMBNAIL_SIDE: u32 = 320;
/// The largest photo accepted, per side.
const MAX_SIDE: u32 = 6000;
/// The most memory decoding may take (a 4000 x 4000 RGBA photo is 61 MiB).
const MAX_DECODE_BYTES: u64 = 72 << 20;

/// A thumbnail and the size of the photo it shows.
#[derive(Debug)]
pub struct Thumbnail {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub photo_width: u32,
    pub photo_height: u32,
}

/// The thumbnail of `photo`'s bytes, or why the bytes are not a photo this gallery takes (a message for its owner).
pub fn make(photo: &[u8]) -> Result<Thumbnail, String> {
    let mut reader = ImageReader::new(Cursor::new(photo))
        .with_guessed_format()
        .map_err(|error| format!("the file could not be read: {error}"))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => return Err(format!("{other:?} images are not taken here: upload a PNG or a JPEG")),
        None => return Err("the file is not an image: upload a PNG or a JPEG".into()),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let photo = reader.decode().map_err(|error| format!("the image could not be decoded: {error}"))?;
    let thumbnail = photo.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE);
    let mut png = Vec::new();
    thumbnail
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|error| format!("the thumbnail could not be encoded: {error}"))?;
    Ok(Thumbnail {
        png,
        width: thumbnail.width(),
        height: thumbnail.height(),
        photo_width: photo.width(),
        photo_height: photo.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut bytes = Vec::new();
        image.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).expect("encode");
        bytes
    }

    #[test]
    fn a_photo_fits_the_square_keeping_its_proportions() {
        let made = make(&png(640, 480)).expect("a thumbnail");
        assert_eq!((made.width, made.height, made.photo_width, made.photo_height), (320, 240, 640, 480));
        let decoded = image::load_from_memory(&made.png).expect("the thumbnail is a PNG");
        assert_eq!((decoded.width(), decoded.height()), (320, 240));
        let tall = make(&png(100, 400)).expect("a thumbnail");
        assert_eq!((tall.width, tall.height), (80, 320));
    }

    #[test]
    fn what_is_not_a_photo_is_refused_with_the_reason() {
        let error = make(b"hello, not an image").expect_err("refused");
        assert!(error.contains("not an image"), "{error}");
        let error = make(&png(MAX_SIDE + 1, 1)).expect_err("refused");
        assert!(error.contains("could not be decoded"), "{error}");
    }
}
