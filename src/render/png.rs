//! PNG output, written atomically (crate::io::write_atomic).

pub use crate::io::write_atomic;
use crate::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// Encode `img` as PNG and write it atomically to `path` (parent directories created).
pub fn save_png(img: &RgbImage, path: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| Error::new(format!("encoding {} as PNG: {e}", path.display())))?;
    write_atomic(path, &bytes)
}
