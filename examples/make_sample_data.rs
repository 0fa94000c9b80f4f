//! Regenerates the small sample files in `data/`, all drawn by the synthetic generator
//! (never real FER2013 images), deterministically:
//!
//! ```text
//! cargo run --release --example make_sample_data            # writes data/
//! cargo run --release --example make_sample_data -- OUT     # writes OUT/ instead
//! cargo run --release --example make_sample_data -- --preview FILE.png [SEED] [COLS] [SCALE]
//! ```
//!
//! Files: `fer2013_sample.csv` (emotion,pixels,Usage: 14 Training, 4 PublicTest,
//! 3 PrivateTest rows), `train_sample.csv` (label,feature: 14 rows), `test_sample.csv`
//! (id,feature: 10 rows), `train_sample_crlf.csv` (7 rows with a UTF-8 BOM, CRLF line ends
//! and every field quoted) and `faces/<Class>/<n>.png` (2 per class, 48x48 gray).
//!
//! `--preview` writes only an RGB preview grid to look at: one class per row (FER2013
//! order), COLS samples each, the same again on the right with the expression masks
//! outlined in red (SEED 1, 10 columns, scale 3 by default).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use mien::data::{synthetic, Dataset, FER2013_CLASSES};

fn pixels(d: &Dataset, i: usize) -> String {
    let mut s = String::with_capacity(4 * d.h * d.w);
    for (k, v) in d.image(i).iter().enumerate() {
        if k > 0 {
            s.push(' ');
        }
        write!(s, "{}", (v * 255.0).round() as u8).unwrap();
    }
    s
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
}

/// RGB grid: one row per class, `cols` images each; with `masks`, a second block of the
/// same images with the mask boundary in red.
fn preview(seed: u64, cols: usize, scale: usize, masks: bool) -> image::RgbImage {
    let d = synthetic(7 * cols * 3, seed, (48, 48));
    let (h, w) = (d.h, d.w);
    let blocks = if masks { 2 } else { 1 };
    let gap = 2;
    let cell_w = (w + gap) * scale;
    let cell_h = (h + gap) * scale;
    let mut img = image::RgbImage::from_pixel((cell_w * cols * blocks + gap * scale * (blocks - 1) * 4) as u32, (cell_h * 7) as u32, image::Rgb([40, 40, 90]));
    for class in 0..7 {
        let idx: Vec<usize> = (0..d.n).filter(|&i| d.labels[i] as usize == class).take(cols).collect();
        for (col, &i) in idx.iter().enumerate() {
            let im = d.image(i);
            let mk = d.mask(i).unwrap();
            for b in 0..blocks {
                let x0 = (b * (cols * cell_w + gap * scale * 4)) + col * cell_w;
                let y0 = class * cell_h;
                for y in 0..h {
                    for x in 0..w {
                        let g = (im[y * w + x] * 255.0).round() as u8;
                        let mut px = image::Rgb([g, g, g]);
                        if b == 1 && mk[y * w + x] == 1 {
                            let edge = [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)].iter().any(|(dx, dy)| {
                                let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                                xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64 || mk[yy as usize * w + xx as usize] == 0
                            });
                            if edge {
                                px = image::Rgb([255, 40, 40]);
                            }
                        }
                        for sy in 0..scale {
                            for sx in 0..scale {
                                img.put_pixel((x0 + x * scale + sx) as u32, (y0 + y * scale + sy) as u32, px);
                            }
                        }
                    }
                }
            }
        }
    }
    img
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(|s| s.as_str()) == Some("--preview") {
        let file = PathBuf::from(args.get(1).expect("--preview FILE.png [SEED] [COLS] [SCALE]"));
        let seed = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1);
        let cols = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(10);
        let scale = args.get(4).map(|s| s.parse().unwrap()).unwrap_or(3);
        preview(seed, cols, scale, true).save(&file).unwrap();
        println!("wrote {}", file.display());
        return;
    }
    let out = PathBuf::from(args.first().cloned().unwrap_or_else(|| "data".into()));
    fs::create_dir_all(&out).unwrap();

    // Kaggle fer2013.csv layout.
    let d = synthetic(21, 2013, (48, 48));
    let mut s = String::from("emotion,pixels,Usage\n");
    for i in 0..d.n {
        let usage = match i {
            0..=13 => "Training",
            14..=17 => "PublicTest",
            _ => "PrivateTest",
        };
        writeln!(s, "{},{},{usage}", d.labels[i], pixels(&d, i)).unwrap();
    }
    write(&out.join("fer2013_sample.csv"), s.as_bytes());

    // Course train.csv / test.csv.
    let d = synthetic(14, 2014, (48, 48));
    let mut s = String::from("label,feature\n");
    for i in 0..d.n {
        writeln!(s, "{},{}", d.labels[i], pixels(&d, i)).unwrap();
    }
    write(&out.join("train_sample.csv"), s.as_bytes());

    let d = synthetic(10, 2015, (48, 48));
    let mut s = String::from("id,feature\n");
    for i in 0..d.n {
        writeln!(s, "{},{}", i + 1, pixels(&d, i)).unwrap();
    }
    write(&out.join("test_sample.csv"), s.as_bytes());

    // train.csv as a Windows spreadsheet saves it: BOM, CRLF, quoted fields.
    let d = synthetic(7, 2016, (48, 48));
    let mut s = String::from("\u{feff}\"label\",\"feature\"\r\n");
    for i in 0..d.n {
        write!(s, "\"{}\",\"{}\"\r\n", d.labels[i], pixels(&d, i)).unwrap();
    }
    write(&out.join("train_sample_crlf.csv"), s.as_bytes());

    // Folder layout: faces/<Class>/<n>.png, 2 per class.
    let d = synthetic(14, 2017, (48, 48));
    let faces = out.join("faces");
    if faces.exists() {
        fs::remove_dir_all(&faces).unwrap();
    }
    let mut count = [0usize; 7];
    for i in 0..d.n {
        let c = d.labels[i] as usize;
        let dir = faces.join(FER2013_CLASSES[c]);
        fs::create_dir_all(&dir).unwrap();
        let bytes: Vec<u8> = d.image(i).iter().map(|v| (v * 255.0).round() as u8).collect();
        let img = image::GrayImage::from_raw(d.w as u32, d.h as u32, bytes).unwrap();
        let path = dir.join(format!("{}.png", count[c]));
        img.save(&path).unwrap();
        count[c] += 1;
    }
    println!("wrote {} ({} images)", faces.display(), d.n);

}
