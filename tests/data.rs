//! The data layer: CSV and folder loaders (good and bad input), the synthetic generator
//! (determinism, balance, masks, difficulty), and the Dataset helpers.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use mien::data::{
    load, synthetic, synthetic_loaded, synthetic_with, Dataset, Format, SynthOptions, FER2013_CLASSES, FER2013_HW,
};
use mien::rng::Rng;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A fresh empty directory for one test.
fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mien-data-tests-{}", std::process::id())).join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// `n` space-separated pixel values starting at `start`.
fn px(n: usize, start: usize) -> String {
    (0..n).map(|i| ((start + i * 7) % 256).to_string()).collect::<Vec<_>>().join(" ")
}

/// Loads, expecting an error that contains every one of `parts`.
fn load_err(path: &Path, hw: (usize, usize), parts: &[&str]) -> String {
    let e = match load(path, hw) {
        Ok(_) => panic!("{}: loaded, expected an error containing {parts:?}", path.display()),
        Err(e) => e.to_string(),
    };
    for p in parts {
        assert!(e.contains(p), "error message {e:?} lacks {p:?}");
    }
    e
}

// ------------------------------------------------------------------ CSV: good input

#[test]
fn fer2013_sample_splits_by_usage() {
    let l = load(&repo("data/fer2013_sample.csv"), FER2013_HW).unwrap();
    assert_eq!(l.format, Format::Fer2013Csv);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let (tr, va, te) = (l.train.as_ref().unwrap(), l.val.as_ref().unwrap(), l.test.as_ref().unwrap());
    assert_eq!((tr.n, va.n, te.n), (14, 4, 3));
    for d in [tr, va, te] {
        assert!(d.labelled);
        assert_eq!((d.h, d.w), (48, 48));
        assert_eq!(d.images.len(), d.n * 48 * 48);
        assert_eq!(d.class_names, FER2013_CLASSES);
        assert!(d.labels.iter().all(|&c| c < 7));
        assert!(d.images.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(d.masks.is_none());
    }
    // Ids are line numbers: the first data row is line 2.
    assert_eq!(tr.ids[0], "2");
    assert_eq!(va.ids[0], "16");
    assert_eq!(te.ids[2], "22");
    let (t, v) = l.train_val(0.2, 1).unwrap();
    assert_eq!((t.n, v.n), (14, 4), "PublicTest is the validation set");
}

#[test]
fn course_csvs_load() {
    let l = load(&repo("data/train_sample.csv"), FER2013_HW).unwrap();
    assert_eq!(l.format, Format::TrainCsv);
    assert!(l.val.is_none() && l.test.is_none());
    let tr = l.require_train().unwrap();
    assert_eq!(tr.n, 14);
    assert_eq!(tr.class_counts(), vec![2; 7]);
    let (t, v) = l.train_val(0.5, 3).unwrap();
    assert_eq!((t.n, v.n), (7, 7));
    assert_eq!(v.class_counts(), vec![1; 7], "stratified");

    let l = load(&repo("data/test_sample.csv"), FER2013_HW).unwrap();
    assert_eq!(l.format, Format::TestCsv);
    assert!(l.train.is_none() && l.val.is_none());
    let te = l.test.as_ref().unwrap();
    assert_eq!(te.n, 10);
    assert!(!te.labelled && te.labels.is_empty() && te.label(0).is_none());
    assert_eq!(te.ids, (1..=10).map(|i| i.to_string()).collect::<Vec<_>>());
    let e = l.require_train().unwrap_err().to_string();
    assert!(e.contains("test_sample.csv") && e.contains("no labelled training images"), "{e}");
}

#[test]
fn bom_crlf_and_quotes_load_like_plain() {
    // The sample file was written from synthetic(7, 2016): the values must round-trip.
    let l = load(&repo("data/train_sample_crlf.csv"), FER2013_HW).unwrap();
    let tr = l.train.unwrap();
    let want = synthetic(7, 2016, FER2013_HW);
    assert_eq!(tr.labels, want.labels);
    assert_eq!(tr.ids[0], "2");
    let worst = tr.images.iter().zip(&want.images).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1.0 / 255.0 + 1e-6, "round trip differs by {worst}");

    // The same rows, LF and CRLF, plain and quoted, with and without BOM: same dataset.
    let dir = tmp("bom_crlf");
    let rows = [(3, px(16, 0)), (0, px(16, 5)), (6, px(16, 9))];
    let mut plain = String::from("emotion,pixels,Usage\n");
    let mut fancy = String::from("\u{feff}\"emotion\",\"pixels\",\"Usage\"\r\n");
    for (i, (l, p)) in rows.iter().enumerate() {
        let usage = if i < 2 { "Training" } else { "PrivateTest" };
        writeln!(plain, "{l},{p},{usage}").unwrap();
        write!(fancy, "\"{l}\",\"{p}\",\"{usage}\"\r\n").unwrap();
    }
    fancy.push_str("\r\n"); // a trailing blank line is fine
    let a = load(&write(&dir.join("plain.csv"), &plain), (4, 4)).unwrap();
    let b = load(&write(&dir.join("fancy.csv"), &fancy), (4, 4)).unwrap();
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    let t = a.train.unwrap();
    assert_eq!(t.labels, vec![3, 0]);
    assert_eq!(t.image(1)[1], 12.0 / 255.0);

    // The ICML variant: spaces after commas, columns in another order, any case.
    let icml = format!("emotion, Usage, pixels\n4, Training, {}\n", px(16, 1));
    let c = load(&write(&dir.join("icml.csv"), icml), (4, 4)).unwrap();
    assert_eq!(c.train.unwrap().labels, vec![4]);
    let course = format!("FEATURE,Label\n\"{}\",2\n", px(16, 1));
    let c = load(&write(&dir.join("upper.csv"), course), (4, 4)).unwrap();
    assert_eq!(c.format, Format::TrainCsv);
    assert_eq!(c.train.unwrap().labels, vec![2]);
}

#[test]
fn csv_of_another_size_is_resized_with_one_warning() {
    let dir = tmp("resize_csv");
    let mut s = String::from("label,feature\n");
    for i in 0..5 {
        writeln!(s, "{},{}", i % 7, px(16, i)).unwrap();
    }
    let f = write(&dir.join("small.csv"), s);
    let l = load(&f, (48, 48)).unwrap();
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(l.warnings[0].contains("resized all 5 images from 4x4 to 48x48"), "{:?}", l.warnings);
    let t = l.train.unwrap();
    assert_eq!((t.n, t.h, t.w, t.images.len()), (5, 48, 48, 5 * 48 * 48));
    assert!(load(&f, (4, 4)).unwrap().warnings.is_empty());
}

// ------------------------------------------------------------------ CSV: bad input

#[test]
fn csv_errors_name_file_line_found_and_expected() {
    let dir = tmp("csv_errors");
    let p16 = px(16, 0);
    let case = |name: &str, text: String, parts: &[&str]| {
        let f = write(&dir.join(name), text);
        let mut all = vec![name];
        all.extend_from_slice(parts);
        load_err(&f, (4, 4), &all)
    };
    load_err(&dir.join("missing.csv"), (4, 4), &["missing.csv", "cannot read", "expected"]);
    case("empty.csv", String::new(), &["empty.csv:1", "empty file", "expected a header", "label,feature"]);
    case("blank.csv", "\n\n".into(), &["blank.csv:1", "empty file"]);
    case(
        "header.csv",
        format!("emotion;pixels\n0;{p16}\n"),
        &["header.csv:1", "unknown header 'emotion;pixels'", "emotion,pixels,Usage", "label,feature", "id,feature"],
    );
    case("headonly.csv", "label,feature\n".into(), &["headonly.csv:2", "no data rows", "expected at least one row"]);
    case(
        "count.csv",
        format!("label,feature\n0,{p16}\n1,{}\n", px(15, 0)),
        &["count.csv:3", "found 15 pixels", "expected 16 (4x4, as on the first data row)"],
    );
    case(
        "square.csv",
        format!("label,feature\n0,{}\n", px(15, 0)),
        &["square.csv:2", "found 15 pixels", "expected a perfect square"],
    );
    case(
        "nan.csv",
        format!("label,feature\n0,{p16}\n0,1 2 x7 4\n"),
        &["nan.csv:3", "pixel 3 of 16", "'x7'", "not a number", "expected an integer 0..255"],
    );
    case("neg.csv", "label,feature\n0,1 -2 3 4\n".into(), &["neg.csv:2", "'-2'", "expected an integer 0..255"]);
    case(
        "range.csv",
        format!("label,feature\n0,{p16}\n0,1 2 3 256 {}\n", px(12, 0)),
        &["range.csv:3", "pixel 4 of 16", "'256'", "out of range", "expected an integer 0..255"],
    );
    case("label.csv", format!("label,feature\n7,{p16}\n"), &["label.csv:2", "label '7'", "expected an integer 0..6"]);
    case("label2.csv", format!("emotion,pixels,Usage\n-1,{p16},Training\n"), &["label2.csv:2", "emotion '-1'", "0..6"]);
    case("label3.csv", format!("label,feature\n,{p16}\n"), &["label3.csv:2", "label ''", "0..6"]);
    case(
        "usage.csv",
        format!("emotion,pixels,Usage\n0,{p16},Training\n1,{p16},Validation\n"),
        &["usage.csv:3", "Usage 'Validation'", "expected Training, PublicTest or PrivateTest"],
    );
    case(
        "fields.csv",
        format!("emotion,pixels,Usage\n0,{p16}\n"),
        &["fields.csv:2", "found 2 field(s), expected 3 (emotion,pixels,Usage)"],
    );
    case("id.csv", format!("id,feature\n,{p16}\n"), &["id.csv:2", "empty id"]);
    // Line numbers count CRLF lines and a BOM correctly.
    case(
        "crlf_bad.csv",
        format!("\u{feff}label,feature\r\n0,{p16}\r\n1,{p16}\r\n9,{p16}\r\n"),
        &["crlf_bad.csv:4", "label '9'"],
    );
    // A quoted field may span lines; later line numbers stay right.
    case(
        "multiline.csv",
        format!("label,feature\n0,\"{}\n{}\"\n7,{p16}\n", px(8, 0), px(8, 8)),
        &["multiline.csv:4", "label '7'"],
    );
    case("unclosed.csv", format!("label,feature\n0,\"{p16}\n"), &["unclosed.csv:2", "not closed", "expected a closing"]);
    // A PNG handed to the CSV loader: an unknown header, not a crash.
    let png = image::GrayImage::from_pixel(4, 4, image::Luma([9u8]));
    png.save(dir.join("image.png")).unwrap();
    load_err(&dir.join("image.png"), (4, 4), &["image.png:1", "unknown header"]);
}

// ------------------------------------------------------------------ folders

#[test]
fn sample_faces_folder_loads_in_fer_order() {
    let l = load(&repo("data/faces"), FER2013_HW).unwrap();
    assert_eq!(l.format, Format::ImageFolder);
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let t = l.train.unwrap();
    assert_eq!(t.class_names, FER2013_CLASSES);
    assert_eq!(t.class_counts(), vec![2; 7]);
    assert!(t.ids.iter().any(|id| id == "Happy/0.png"), "{:?}", t.ids);
    let i = t.ids.iter().position(|id| id.starts_with("Sad/")).unwrap();
    assert_eq!(t.labels[i], 4);
}

#[test]
fn kaggle_train_test_folders_with_a_colour_image_of_another_size() {
    let root = tmp("kaggle_folders");
    let gray = |v: u8| image::GrayImage::from_pixel(48, 48, image::Luma([v]));
    for (k, name) in ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"].iter().enumerate() {
        for split in ["train", "test"] {
            let dir = root.join(split).join(name);
            fs::create_dir_all(&dir).unwrap();
            gray(10 * k as u8).save(dir.join("im0.png")).unwrap();
        }
    }
    // A 64x40 colour JPEG and a stray text file in train/happy.
    let rgb = image::RgbImage::from_fn(64, 40, |x, _| image::Rgb([200, (x * 3) as u8, 10]));
    rgb.save(root.join("train/happy/big.jpg")).unwrap();
    write(&root.join("train/happy/notes.txt"), "not an image");
    write(&root.join("README.md"), "about");

    let l = load(&root, (48, 48)).unwrap();
    let (tr, te) = (l.train.as_ref().unwrap(), l.test.as_ref().unwrap());
    assert!(l.val.is_none());
    assert_eq!(tr.class_names, FER2013_CLASSES, "Kaggle's lowercase folders map to FER2013 order");
    assert_eq!(tr.class_counts(), vec![1, 1, 1, 2, 1, 1, 1]);
    assert_eq!(te.class_counts(), vec![1; 7]);
    let big = tr.ids.iter().position(|id| id == "train/happy/big.jpg").unwrap();
    assert_eq!(tr.labels[big], 3);
    assert_eq!(tr.image(big).len(), 48 * 48);
    let neutral = tr.ids.iter().position(|id| id == "train/neutral/im0.png").unwrap();
    assert_eq!((tr.labels[neutral], tr.image(neutral)[0]), (6, 60.0 / 255.0));
    // One summary line, naming each conversion once.
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    let w = &l.warnings[0];
    for part in ["converted 1 colour image(s) of 15 to grayscale", "resized 1 image(s) of 15 to 48x48", "64x40", "skipped 2", "notes.txt"] {
        assert!(w.contains(part), "warning {w:?} lacks {part:?}");
    }
    // A class-folder root directly (ROOT/<class>/...), other names sorted.
    let root2 = tmp("named_folders");
    for name in ["dog", "cat", "Bird"] {
        let dir = root2.join(name);
        fs::create_dir_all(&dir).unwrap();
        image::GrayImage::from_pixel(20, 20, image::Luma([1])).save(dir.join("a.png")).unwrap();
    }
    let l = load(&root2, (8, 8)).unwrap();
    let t = l.train.unwrap();
    assert_eq!(t.class_names, vec!["Bird", "cat", "dog"]);
    assert_eq!(t.labels, vec![0, 1, 2]);
    assert!(l.warnings[0].contains("resized 3 image(s) of 3 to 8x8"), "{:?}", l.warnings);
}

#[test]
fn folder_errors_name_the_folder_or_file() {
    let root = tmp("folder_errors");
    fs::create_dir_all(root.join("none")).unwrap();
    load_err(&root.join("none"), (48, 48), &["none", "no class folders"]);

    let r = root.join("emptyclass");
    image::GrayImage::new(48, 48).save(write(&r.join("happy/a.png"), "").as_path()).unwrap();
    fs::create_dir_all(r.join("sad")).unwrap();
    write(&r.join("sad/readme.txt"), "x");
    load_err(&r, (48, 48), &["sad", "no .png/.jpg/.jpeg images", "expected at least one image of class 'sad'"]);

    let r = root.join("broken");
    image::GrayImage::new(48, 48).save(write(&r.join("happy/a.png"), "").as_path()).unwrap();
    write(&r.join("happy/b.png"), "this is not a png");
    load_err(&r, (48, 48), &["happy/b.png", "cannot decode", "expected a valid PNG or JPEG"]);

    let r = root.join("unknown_test_class");
    image::GrayImage::new(48, 48).save(write(&r.join("train/happy/a.png"), "").as_path()).unwrap();
    image::GrayImage::new(48, 48).save(write(&r.join("test/goat/a.png"), "").as_path()).unwrap();
    load_err(&r, (48, 48), &["goat", "not among the training classes", "Happy"]);

    let r = root.join("stray");
    image::GrayImage::new(48, 48).save(write(&r.join("train/happy/a.png"), "").as_path()).unwrap();
    image::GrayImage::new(48, 48).save(write(&r.join("extra/happy/a.png"), "").as_path()).unwrap();
    load_err(&r, (48, 48), &["'extra'", "expected only train/, test/ and val/"]);
}

// ------------------------------------------------------------------ synthetic

#[test]
fn synthetic_is_deterministic_balanced_and_any_size() {
    let a = synthetic(50, 42, FER2013_HW);
    let b = synthetic(50, 42, FER2013_HW);
    assert_eq!(a, b);
    let bytes = |d: &Dataset| d.images.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>();
    assert_eq!(bytes(&a), bytes(&b));
    let c = synthetic(50, 43, FER2013_HW);
    assert_ne!(a.images, c.images);
    assert_ne!(a.masks, c.masks);
    // A prefix of a longer set draws the same images for the same labels.
    a.validate().unwrap();
    assert!(a.images.iter().all(|&v| (v * 255.0 - (v * 255.0).round()).abs() < 1e-3), "quantized to 1/255");

    for n in [0, 1, 6, 13, 700] {
        let d = synthetic(n, 5, FER2013_HW);
        d.validate().unwrap();
        assert_eq!(d.n, n);
        let c = d.class_counts();
        assert_eq!(c.iter().sum::<usize>(), n);
        assert!(c.iter().max().unwrap() - c.iter().min().unwrap() <= 1, "n={n}: {c:?}");
    }
    let d = synthetic(700, 5, FER2013_HW);
    assert!(d.labels[..14].iter().any(|&l| l != d.labels[0]) && d.labels[..7] != [0, 1, 2, 3, 4, 5, 6], "shuffled");
    let r = synthetic(14, 9, (64, 40));
    r.validate().unwrap();
    assert_eq!((r.h, r.w, r.images.len(), r.masks.as_ref().unwrap().len()), (64, 40, 14 * 64 * 40, 14 * 64 * 40));

    let l = synthetic_loaded(70, 35, 1, FER2013_HW);
    assert_eq!(l.format, Format::Synthetic);
    let (t, v) = l.train_val(0.5, 0).unwrap();
    assert_eq!((t.n, v.n), (70, 35));
    assert_ne!(t.image(0), v.image(0));
}

fn centroid(weights: impl Iterator<Item = f64>, w: usize) -> (f64, f64) {
    let (mut sx, mut sy, mut s) = (0.0, 0.0, 0.0);
    for (k, v) in weights.enumerate() {
        sx += v * ((k % w) as f64 + 0.5);
        sy += v * ((k / w) as f64 + 0.5);
        s += v;
    }
    (sx / s, sy / s)
}

#[test]
fn masks_follow_the_drawn_features() {
    let n = 140;
    let full = synthetic(n, 77, FER2013_HW);
    let no_occ = synthetic_with(n, 77, &SynthOptions { occluders: false, ..SynthOptions::default() });
    let features = synthetic_with(
        n,
        77,
        &SynthOptions { occluders: false, background: false, lighting: false, noise: false, features_only: true, ..SynthOptions::default() },
    );
    assert_eq!(full.labels, features.labels);
    assert_eq!(no_occ.masks, features.masks, "masks do not depend on what is drawn around the features");
    let (mf, mn) = (full.masks.as_ref().unwrap(), no_occ.masks.as_ref().unwrap());
    assert!(mf.iter().zip(mn).all(|(a, b)| a <= b), "occluders only remove mask pixels");
    assert!(mf.iter().zip(mn).any(|(a, b)| a < b), "some occluder covers a feature");

    let s = 48 * 48;
    let mut dists = Vec::new();
    let mut mask_c = Vec::new();
    let mut dark_c = Vec::new();
    for i in 0..n {
        let m = features.mask(i).unwrap();
        let img = features.image(i);
        let area = m.iter().filter(|&&v| v == 1).count();
        assert!(area > 40 && area < s / 3, "image {i}: mask area {area}");
        // Everything drawn (darker than the white page) lies in the mask.
        let outside = img.iter().zip(m).filter(|(v, mk)| **v < 0.9 && **mk == 0).count();
        assert!(outside <= 2, "image {i}: {outside} drawn pixels outside the mask");
        let mc = centroid(m.iter().map(|&v| v as f64), 48);
        let dc = centroid(img.iter().map(|&v| 1.0 - v as f64), 48);
        dists.push(((mc.0 - dc.0).powi(2) + (mc.1 - dc.1).powi(2)).sqrt());
        mask_c.push(mc);
        dark_c.push(dc);
    }
    dists.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(dists[n / 2] < 1.0 && dists[n - 1] < 2.5, "mask vs drawn-feature centroids: median {} max {}", dists[n / 2], dists[n - 1]);
    // The pose moves both together: centroids spread over several pixels, and agree.
    let spread = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let m = v.iter().map(f).sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (f(x) - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    assert!(spread(&mask_c, |c| c.0) > 1.5 && spread(&mask_c, |c| c.1) > 1.5, "pose varies");
    let corr = |f: fn(&(f64, f64)) -> f64| {
        let (ma, mb) = (mask_c.iter().map(f).sum::<f64>() / n as f64, dark_c.iter().map(f).sum::<f64>() / n as f64);
        let cov: f64 = mask_c.iter().zip(&dark_c).map(|(a, b)| (f(a) - ma) * (f(b) - mb)).sum();
        cov / (spread(&mask_c, f) * spread(&dark_c, f) * n as f64)
    };
    assert!(corr(|c| c.0) > 0.9 && corr(|c| c.1) > 0.9, "x corr {} y corr {}", corr(|c| c.0), corr(|c| c.1));
    // In the full picture the mask holds the detail: the pixels in it vary more than those
    // in a 2-pixel ring around it (mostly plain skin).
    let mut busier = 0;
    for i in 0..n {
        let (img, m) = (no_occ.image(i), no_occ.mask(i).unwrap());
        let near = |k: usize| {
            let (x, y) = ((k % 48) as i64, (k / 48) as i64);
            (-2..=2).any(|dy| (-2..=2).any(|dx| {
                let (xx, yy) = (x + dx, y + dy);
                (0..48).contains(&xx) && (0..48).contains(&yy) && m[(yy * 48 + xx) as usize] == 1
            }))
        };
        let sd = |sel: &dyn Fn(usize) -> bool| {
            let v: Vec<f64> = (0..s).filter(|&k| sel(k)).map(|k| img[k] as f64).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let (inside, ring) = (sd(&|k| m[k] == 1), sd(&|k| m[k] == 0 && near(k)));
        if inside > ring {
            busier += 1;
        }
    }
    eprintln!("mask busier than its surroundings in {busier} of {n} images");
    assert!(busier > n * 8 / 10, "mask pixels vary more than the ring around them in only {busier} of {n} images");
}

/// Multinomial logistic regression on standardized raw pixels, minibatch SGD.
/// Returns (train accuracy, val accuracy).
fn linear_probe(train: &Dataset, val: &Dataset, epochs: usize) -> (f64, f64) {
    let d = train.h * train.w;
    let k = 7;
    let mut mean = vec![0.0f64; d];
    let mut sd = vec![0.0f64; d];
    for i in 0..train.n {
        for (j, &v) in train.image(i).iter().enumerate() {
            mean[j] += v as f64 / train.n as f64;
        }
    }
    for i in 0..train.n {
        for (j, &v) in train.image(i).iter().enumerate() {
            sd[j] += (v as f64 - mean[j]).powi(2) / train.n as f64;
        }
    }
    let feats = |ds: &Dataset, i: usize| -> Vec<f64> {
        ds.image(i).iter().enumerate().map(|(j, &v)| (v as f64 - mean[j]) / (sd[j].sqrt() + 1e-3)).collect()
    };
    let xs: Vec<Vec<f64>> = (0..train.n).map(|i| feats(train, i)).collect();
    let xv: Vec<Vec<f64>> = (0..val.n).map(|i| feats(val, i)).collect();
    let mut wts = vec![0.0f64; k * (d + 1)];
    let logits = |w: &[f64], x: &[f64]| -> Vec<f64> {
        (0..k).map(|c| w[c * (d + 1) + d] + w[c * (d + 1)..c * (d + 1) + d].iter().zip(x).map(|(a, b)| a * b).sum::<f64>()).collect()
    };
    let mut order: Vec<usize> = (0..train.n).collect();
    let mut rng = Rng::new(3);
    let (batch, l2) = (16, 1e-3);
    for ep in 0..epochs {
        let lr = 0.01 / (1.0 + ep as f64 * 0.5);
        rng.shuffle(&mut order);
        for chunk in order.chunks(batch) {
            let mut g = vec![0.0f64; k * (d + 1)];
            for &i in chunk {
                let z = logits(&wts, &xs[i]);
                let mx = z.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = z.iter().map(|v| (v - mx).exp()).collect();
                let se: f64 = e.iter().sum();
                for c in 0..k {
                    let dz = e[c] / se - if c == train.labels[i] as usize { 1.0 } else { 0.0 };
                    let row = &mut g[c * (d + 1)..(c + 1) * (d + 1)];
                    for (gj, xj) in row[..d].iter_mut().zip(&xs[i]) {
                        *gj += dz * xj;
                    }
                    row[d] += dz;
                }
            }
            for (w, gv) in wts.iter_mut().zip(&g) {
                *w -= lr * (gv / chunk.len() as f64 + l2 * *w);
            }
        }
    }
    let acc = |x: &[Vec<f64>], ds: &Dataset| {
        let ok = (0..ds.n)
            .filter(|&i| {
                let z = logits(&wts, &x[i]);
                let best = (0..k).max_by(|&a, &b| z[a].partial_cmp(&z[b]).unwrap()).unwrap();
                best == ds.labels[i] as usize
            })
            .count();
        ok as f64 / ds.n as f64
    };
    (acc(&xs, train), acc(&xv, val))
}

#[test]
fn linear_classifier_on_raw_pixels_stays_well_below_a_cnn() {
    let all = synthetic(2100, 2024, FER2013_HW);
    let train = all.subset(&(0..1400).collect::<Vec<_>>());
    let val = all.subset(&(1400..2100).collect::<Vec<_>>());
    let (tr, va) = linear_probe(&train, &val, 8);
    eprintln!("linear probe on raw pixels: train accuracy {:.1}%, val accuracy {:.1}% (chance 14.3%)", tr * 100.0, va * 100.0);
    assert!(va < 0.60, "too easy for a linear classifier: val accuracy {va}");
}

// ------------------------------------------------------------------ Dataset helpers

#[test]
fn subset_and_split() {
    let d = synthetic(70, 8, (12, 12));
    let s = d.subset(&[3, 3, 69]);
    assert_eq!(s.n, 3);
    assert_eq!(s.image(0), d.image(3));
    assert_eq!(s.image(2), d.image(69));
    assert_eq!(s.labels, vec![d.labels[3], d.labels[3], d.labels[69]]);
    assert_eq!(s.mask(2), d.mask(69));
    assert_eq!(s.ids, vec!["3", "3", "69"]);

    let (t, v) = d.split(0.2, 1);
    assert_eq!((t.n, v.n), (56, 14));
    assert_eq!(v.class_counts(), vec![2; 7], "stratified");
    let mut ids: Vec<String> = t.ids.iter().chain(&v.ids).cloned().collect();
    ids.sort();
    let mut all = d.ids.clone();
    all.sort();
    assert_eq!(ids, all, "a partition");
    assert_eq!(d.split(0.2, 1), (t.clone(), v.clone()), "seeded");
    assert_ne!(d.split(0.2, 2).1.ids, v.ids);
    let (t0, v0) = d.split(0.0, 1);
    assert_eq!((t0.n, v0.n), (70, 0));
    // Uneven classes: rounding remainders still give round(n * f) in val.
    let uneven = d.subset(&(0..23).collect::<Vec<_>>());
    let (_, v3) = uneven.split(0.3, 4);
    assert_eq!(v3.n, 7);
}

// ------------------------------------------------------------------ learnability (slow)

/// A small CNN in plain Rust (3x [conv3x3 same, ReLU, maxpool2] with 8/16/32 channels,
/// then a dense layer), trained with SGD + momentum on per-image standardized pixels.
/// Ignored by default (about a minute of CPU): run it with
/// `cargo test --release --test data -- --ignored --nocapture`.
mod cnn {
    use mien::data::Dataset;
    use mien::rng::Rng;

    pub struct Conv {
        ci: usize,
        co: usize,
        w: Vec<f32>,
        b: Vec<f32>,
        gw: Vec<f32>,
        gb: Vec<f32>,
        vw: Vec<f32>,
        vb: Vec<f32>,
    }

    impl Conv {
        pub fn new(ci: usize, co: usize, fan_in: usize, rng: &mut Rng) -> Conv {
            let k = if fan_in == 0 { ci * 9 } else { fan_in };
            let sd = (2.0 / k as f64).sqrt();
            let nw = if fan_in == 0 { co * ci * 9 } else { co * ci };
            Conv {
                ci,
                co,
                w: (0..nw).map(|_| (rng.normal() * sd) as f32).collect(),
                b: vec![0.0; co],
                gw: vec![0.0; nw],
                gb: vec![0.0; co],
                vw: vec![0.0; nw],
                vb: vec![0.0; co],
            }
        }
        /// 3x3 same convolution of `x` [ci, h, w] into `y` [co, h, w].
        fn fwd(&self, x: &[f32], h: usize, w: usize, y: &mut [f32]) {
            for co in 0..self.co {
                let out = &mut y[co * h * w..(co + 1) * h * w];
                out.fill(self.b[co]);
                for ci in 0..self.ci {
                    let inp = &x[ci * h * w..(ci + 1) * h * w];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let wv = self.w[((co * self.ci + ci) * 3 + ky) * 3 + kx];
                            for yy in 0..h {
                                let sy = yy as isize + ky as isize - 1;
                                if sy < 0 || sy >= h as isize {
                                    continue;
                                }
                                let (x0, x1) = (if kx == 0 { 1 } else { 0 }, if kx == 2 { w - 1 } else { w });
                                let orow = &mut out[yy * w + x0..yy * w + x1];
                                let irow = &inp[sy as usize * w + x0 + kx - 1..sy as usize * w + x1 + kx - 1];
                                for (o, i) in orow.iter_mut().zip(irow) {
                                    *o += wv * i;
                                }
                            }
                        }
                    }
                }
            }
        }
        fn bwd(&mut self, x: &[f32], h: usize, w: usize, dy: &[f32], mut dx: Option<&mut [f32]>) {
            if let Some(d) = dx.as_deref_mut() {
                d.fill(0.0);
            }
            for co in 0..self.co {
                let g = &dy[co * h * w..(co + 1) * h * w];
                self.gb[co] += g.iter().sum::<f32>();
                for ci in 0..self.ci {
                    let inp = &x[ci * h * w..(ci + 1) * h * w];
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let wi = ((co * self.ci + ci) * 3 + ky) * 3 + kx;
                            let wv = self.w[wi];
                            let mut acc = 0.0f32;
                            for yy in 0..h {
                                let sy = yy as isize + ky as isize - 1;
                                if sy < 0 || sy >= h as isize {
                                    continue;
                                }
                                let (x0, x1) = (if kx == 0 { 1 } else { 0 }, if kx == 2 { w - 1 } else { w });
                                let grow = &g[yy * w + x0..yy * w + x1];
                                let s0 = sy as usize * w + x0 + kx - 1;
                                let irow = &inp[s0..s0 + (x1 - x0)];
                                acc += grow.iter().zip(irow).map(|(a, b)| a * b).sum::<f32>();
                                if let Some(d) = dx.as_deref_mut() {
                                    let drow = &mut d[ci * h * w + s0..ci * h * w + s0 + (x1 - x0)];
                                    for (o, gv) in drow.iter_mut().zip(grow) {
                                        *o += wv * gv;
                                    }
                                }
                            }
                            self.gw[wi] += acc;
                        }
                    }
                }
            }
        }
        fn step(&mut self, lr: f32, n: f32) {
            for (((w, g), v), _) in self.w.iter_mut().zip(&mut self.gw).zip(&mut self.vw).zip(0..) {
                *v = 0.9 * *v - lr * (*g / n + 1e-4 * *w);
                *w += *v;
                *g = 0.0;
            }
            for ((b, g), v) in self.b.iter_mut().zip(&mut self.gb).zip(&mut self.vb) {
                *v = 0.9 * *v - lr * *g / n;
                *b += *v;
                *g = 0.0;
            }
        }
    }

    fn pool_fwd(x: &[f32], c: usize, h: usize, w: usize, y: &mut [f32], arg: &mut [usize]) {
        let (oh, ow) = (h / 2, w / 2);
        for ch in 0..c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut best = (f32::NEG_INFINITY, 0);
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = ch * h * w + (2 * oy + dy) * w + 2 * ox + dx;
                        if x[i] > best.0 {
                            best = (x[i], i);
                        }
                    }
                    let o = ch * oh * ow + oy * ow + ox;
                    y[o] = best.0;
                    arg[o] = best.1;
                }
            }
        }
    }

    pub struct Net {
        convs: Vec<Conv>,
        dense: Conv, // w: [7, 32*6*6]
        hw: usize,
    }

    const CH: [usize; 4] = [1, 8, 16, 32];

    fn standardize(img: &[f32]) -> Vec<f32> {
        let m = img.iter().sum::<f32>() / img.len() as f32;
        let sd = (img.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / img.len() as f32).sqrt().max(1e-3);
        img.iter().map(|v| (v - m) / sd).collect()
    }

    impl Net {
        pub fn new(hw: usize, seed: u64) -> Net {
            let mut rng = Rng::new(seed);
            let convs = (0..3).map(|l| Conv::new(CH[l], CH[l + 1], 0, &mut rng)).collect();
            let feat = 32 * (hw / 8) * (hw / 8);
            Net { convs, dense: Conv::new(feat, 7, feat, &mut rng), hw }
        }

        /// Forward (and backward with `label`): returns the logits.
        fn run(&mut self, img: &[f32], label: Option<usize>) -> Vec<f32> {
            let mut acts: Vec<Vec<f32>> = vec![standardize(img)]; // conv inputs
            let mut pre: Vec<Vec<f32>> = Vec::new(); // relu outputs (pool inputs)
            let mut args: Vec<Vec<usize>> = Vec::new();
            let mut s = self.hw;
            for l in 0..3 {
                let mut y = vec![0.0; CH[l + 1] * s * s];
                self.convs[l].fwd(&acts[l], s, s, &mut y);
                y.iter_mut().for_each(|v| *v = v.max(0.0));
                let mut p = vec![0.0; CH[l + 1] * (s / 2) * (s / 2)];
                let mut a = vec![0; p.len()];
                pool_fwd(&y, CH[l + 1], s, s, &mut p, &mut a);
                pre.push(y);
                args.push(a);
                acts.push(p);
                s /= 2;
            }
            let f = &acts[3];
            let nf = f.len();
            let logits: Vec<f32> =
                (0..7).map(|c| self.dense.b[c] + self.dense.w[c * nf..(c + 1) * nf].iter().zip(f).map(|(a, b)| a * b).sum::<f32>()).collect();
            let Some(label) = label else { return logits };
            let mx = logits.iter().cloned().fold(f32::MIN, f32::max);
            let e: Vec<f32> = logits.iter().map(|v| (v - mx).exp()).collect();
            let se: f32 = e.iter().sum();
            let dz: Vec<f32> = (0..7).map(|c| e[c] / se - if c == label { 1.0 } else { 0.0 }).collect();
            let mut df = vec![0.0f32; nf];
            for (c, &dzc) in dz.iter().enumerate() {
                self.dense.gb[c] += dzc;
                for j in 0..nf {
                    self.dense.gw[c * nf + j] += dzc * f[j];
                    df[j] += dzc * self.dense.w[c * nf + j];
                }
            }
            let mut g = df;
            for l in (0..3).rev() {
                let s = self.hw >> l;
                // Unpool, then ReLU.
                let mut dy = vec![0.0f32; CH[l + 1] * s * s];
                for (o, &i) in args[l].iter().enumerate() {
                    dy[i] += g[o];
                }
                for (d, &y) in dy.iter_mut().zip(&pre[l]) {
                    if y <= 0.0 {
                        *d = 0.0;
                    }
                }
                let mut dx = vec![0.0f32; CH[l] * s * s];
                self.convs[l].bwd(&acts[l], s, s, &dy, if l > 0 { Some(&mut dx) } else { None });
                g = dx;
            }
            logits
        }

        pub fn train_epoch(&mut self, d: &Dataset, lr: f32, rng: &mut Rng) {
            let mut order: Vec<usize> = (0..d.n).collect();
            rng.shuffle(&mut order);
            for chunk in order.chunks(32) {
                for &i in chunk {
                    self.run(d.image(i), Some(d.labels[i] as usize));
                }
                for c in &mut self.convs {
                    c.step(lr, chunk.len() as f32);
                }
                self.dense.step(lr, chunk.len() as f32);
            }
        }

        pub fn accuracy(&mut self, d: &Dataset) -> f64 {
            let ok = (0..d.n)
                .filter(|&i| {
                    let z = self.run(d.image(i), None);
                    let best = (0..7).max_by(|&a, &b| z[a].partial_cmp(&z[b]).unwrap()).unwrap();
                    best == d.labels[i] as usize
                })
                .count();
            ok as f64 / d.n as f64
        }
    }
}

#[test]
#[ignore = "slow: trains a small CNN on the CPU (about a minute in release)"]
fn small_cnn_learns_what_the_linear_probe_cannot() {
    let n_train: usize = std::env::var("MIEN_CNN_N").ok().and_then(|v| v.parse().ok()).unwrap_or(4200);
    let epochs: usize = std::env::var("MIEN_CNN_EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let all = synthetic(n_train + 700, 2024, FER2013_HW);
    let train = all.subset(&(0..n_train).collect::<Vec<_>>());
    let val = all.subset(&(n_train..n_train + 700).collect::<Vec<_>>());
    let (_, lin) = linear_probe(&train, &val, 8);
    let mut net = cnn::Net::new(48, 1);
    let mut rng = Rng::new(2);
    let t0 = std::time::Instant::now();
    let mut acc = 0.0;
    for ep in 0..epochs {
        let lr = if ep < epochs * 7 / 10 { 0.02 } else { 0.004 };
        net.train_epoch(&train, lr, &mut rng);
        acc = net.accuracy(&val);
        eprintln!("epoch {ep}: val accuracy {:.1}% ({:.0}s)", acc * 100.0, t0.elapsed().as_secs_f64());
    }
    eprintln!("small CNN {:.1}% vs linear probe {:.1}% on {n_train} training images", acc * 100.0, lin * 100.0);
    assert!(acc > lin + 0.25, "the CNN ({acc}) should beat the linear probe ({lin}) by far");
}
