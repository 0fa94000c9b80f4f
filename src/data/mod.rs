//! Data: FER2013 in its usual layouts, and a built-in synthetic face generator.
//!
//! Everything ends up as a [`Dataset`]: grayscale images `[n, 1, h, w]` as f32 in [0, 1]
//! (a pixel byte `b` becomes `b / 255`), u32 labels, the class names and an id per image.
//!
//! [`load`] recognizes the input by what it is, never by its name:
//!
//! | input | recognized by | goes to |
//! | --- | --- | --- |
//! | Kaggle `fer2013.csv` | header `emotion,pixels,Usage` (any column order, any case, spaces trimmed: the ICML `emotion, Usage, pixels` variant loads too) | `Training` rows to `train`, `PublicTest` to `val`, `PrivateTest` to `test` |
//! | fer2013 without a Usage column | header `emotion,pixels` | all rows to `train` |
//! | course `train.csv` | header `label,feature` | `train` |
//! | course `test.csv` | header `id,feature` | `test`, unlabelled, ids from the `id` column |
//! | image folders | a directory | `ROOT/<class>/*.png\|jpg\|jpeg` to `train`; or `ROOT/train/<class>/...` to `train`, `ROOT/test/<class>/...` to `test`, `ROOT/val/` (or `valid/`, `validation/`) to `val` |
//!
//! CSV pixels are space-separated integers 0..=255; the first data row fixes the image size,
//! which must be a perfect square (2304 = 48x48 for FER2013), and every later row must have
//! the same count. A UTF-8 BOM, CRLF line ends and quoted fields are fine. Images whose size
//! differs from `target_hw` are resized (bilinear); colour images are converted to grayscale
//! (Rec. 709 luma); each of these is reported by one summary line in [`Loaded::warnings`]
//! (also sent to `log::warn!`), never one line per file.
//!
//! Anything wrong is an [`Error`] naming `file:line` (or the path), what was found and what
//! was expected. No row or image is dropped silently: files that are not images inside the
//! image folders are skipped with a warning that counts them.
//!
//! Class order: CSV labels are FER2013's ([`FER2013_CLASSES`]). Folder classes come from
//! the folder names: when every name is a FER2013 class name (case-insensitively, e.g.
//! Kaggle's `angry/ ... surprise/`) they take FER2013's order and spelling (a subset keeps
//! FER2013's relative order, numbered from 0); otherwise they are sorted by name.

mod folder;
mod synth;
mod table;

use std::path::Path;

use crate::rng::Rng;
use crate::{ensure, Result};

pub use synth::{synthetic, synthetic_with, SynthOptions};

/// FER2013's classes, in label order.
pub const FER2013_CLASSES: [&str; 7] = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"];

/// FER2013's image size (height, width).
pub const FER2013_HW: (usize, usize) = (48, 48);

/// Images with labels (or without: `labelled == false`, e.g. a course `test.csv`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `[n, 1, h, w]` flattened, values in [0, 1].
    pub images: Vec<f32>,
    /// One per image, each `< class_names.len()`, when `labelled`; empty when not.
    pub labels: Vec<u32>,
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub class_names: Vec<String>,
    /// Where each image came from: the `id` column of a test.csv, the file's line number
    /// (as text) for the other CSVs, the path relative to the root for image folders, the
    /// index for synthetic data.
    pub ids: Vec<String>,
    /// Synthetic data only: `[n, h, w]`, 1 where the pixel carries the expression (brows,
    /// eyes, mouth and expression lines, slightly dilated, inside the face and not hidden
    /// by an occluder), else 0.
    pub masks: Option<Vec<u8>>,
    /// False when the source has no labels (`labels` is then empty).
    pub labelled: bool,
}

impl Dataset {
    /// An empty dataset with the given shape and classes.
    pub fn empty(h: usize, w: usize, class_names: Vec<String>, labelled: bool, with_masks: bool) -> Dataset {
        Dataset {
            images: Vec::new(),
            labels: Vec::new(),
            n: 0,
            h,
            w,
            class_names,
            ids: Vec::new(),
            masks: if with_masks { Some(Vec::new()) } else { None },
            labelled,
        }
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Pixels of one image, `h * w` values.
    pub fn image(&self, i: usize) -> &[f32] {
        let s = self.h * self.w;
        &self.images[i * s..(i + 1) * s]
    }

    /// The label of image `i`, `None` when unlabelled.
    pub fn label(&self, i: usize) -> Option<u32> {
        if self.labelled {
            Some(self.labels[i])
        } else {
            None
        }
    }

    /// The expression mask of image `i` (`h * w`, synthetic data only).
    pub fn mask(&self, i: usize) -> Option<&[u8]> {
        let s = self.h * self.w;
        self.masks.as_ref().map(|m| &m[i * s..(i + 1) * s])
    }

    /// The images at `idx`, in that order (repeats allowed).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let s = self.h * self.w;
        let mut images = Vec::with_capacity(idx.len() * s);
        let mut masks = self.masks.as_ref().map(|_| Vec::with_capacity(idx.len() * s));
        for &i in idx {
            assert!(i < self.n, "subset index {i} out of range for {} images", self.n);
            images.extend_from_slice(self.image(i));
            if let (Some(m), Some(out)) = (self.masks.as_ref(), masks.as_mut()) {
                out.extend_from_slice(&m[i * s..(i + 1) * s]);
            }
        }
        Dataset {
            images,
            labels: if self.labelled { idx.iter().map(|&i| self.labels[i]).collect() } else { Vec::new() },
            n: idx.len(),
            h: self.h,
            w: self.w,
            class_names: self.class_names.clone(),
            ids: idx.iter().map(|&i| self.ids[i].clone()).collect(),
            masks,
            labelled: self.labelled,
        }
    }

    /// Seeded split into (train, val) with `round(n * val_fraction)` images in val,
    /// stratified by class when labelled (each class gives its share, the rounding
    /// remainders going to the classes with the largest fractional parts). Both parts keep
    /// the original order. `val_fraction` is clamped to [0, 1].
    pub fn split(&self, val_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let frac = if val_fraction.is_finite() { val_fraction.clamp(0.0, 1.0) } else { 0.0 };
        let mut rng = Rng::new(seed);
        let groups: Vec<Vec<usize>> = if self.labelled {
            let mut g = vec![Vec::new(); self.num_classes().max(1)];
            for (i, &l) in self.labels.iter().enumerate() {
                let l = l as usize;
                if l >= g.len() {
                    g.resize(l + 1, Vec::new());
                }
                g[l].push(i);
            }
            g
        } else {
            vec![(0..self.n).collect()]
        };
        let total = (self.n as f64 * frac).round() as usize;
        // Largest remainder: floor shares first, then one more for the largest fractions.
        let mut take: Vec<usize> = groups.iter().map(|g| (g.len() as f64 * frac).floor() as usize).collect();
        let mut rest: Vec<(f64, usize)> =
            groups.iter().enumerate().map(|(c, g)| (g.len() as f64 * frac - take[c] as f64, c)).collect();
        rest.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(a.1.cmp(&b.1)));
        let mut missing = total.saturating_sub(take.iter().sum());
        for &(_, c) in &rest {
            if missing == 0 {
                break;
            }
            if take[c] < groups[c].len() {
                take[c] += 1;
                missing -= 1;
            }
        }
        let mut in_val = vec![false; self.n];
        for (c, g) in groups.iter().enumerate() {
            let mut g = g.clone();
            rng.shuffle(&mut g);
            for &i in &g[..take[c]] {
                in_val[i] = true;
            }
        }
        let tr: Vec<usize> = (0..self.n).filter(|&i| !in_val[i]).collect();
        let va: Vec<usize> = (0..self.n).filter(|&i| in_val[i]).collect();
        (self.subset(&tr), self.subset(&va))
    }

    /// Images per class (`class_names.len()` entries; all zero when unlabelled).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0usize; self.num_classes()];
        for &l in &self.labels {
            if (l as usize) < c.len() {
                c[l as usize] += 1;
            }
        }
        c
    }

    /// Checks that the fields agree with each other (lengths, label range, pixel range).
    pub fn validate(&self) -> Result<()> {
        let s = self.h * self.w;
        ensure!(self.images.len() == self.n * s, "dataset: {} pixel values, expected n*h*w = {}*{}*{}", self.images.len(), self.n, self.h, self.w);
        ensure!(self.ids.len() == self.n, "dataset: {} ids, expected {}", self.ids.len(), self.n);
        if self.labelled {
            ensure!(self.labels.len() == self.n, "dataset: {} labels, expected {}", self.labels.len(), self.n);
            if let Some((i, &l)) = self.labels.iter().enumerate().find(|(_, &l)| l as usize >= self.num_classes()) {
                crate::bail!("dataset: image {i} ({}) has label {l}, expected 0..{}", self.ids[i], self.num_classes());
            }
        } else {
            ensure!(self.labels.is_empty(), "dataset: unlabelled but has {} labels", self.labels.len());
        }
        if let Some(m) = &self.masks {
            ensure!(m.len() == self.n * s, "dataset: {} mask values, expected {}", m.len(), self.n * s);
        }
        if let Some(i) = self.images.iter().position(|v| !(0.0..=1.0).contains(v)) {
            crate::bail!("dataset: pixel {} of image {} is {}, expected a value in [0, 1]", i % s, i / s, self.images[i]);
        }
        Ok(())
    }
}

/// What [`load`] recognized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Kaggle `fer2013.csv`: `emotion,pixels,Usage` (or `emotion,pixels`).
    Fer2013Csv,
    /// Course `train.csv`: `label,feature`.
    TrainCsv,
    /// Course `test.csv`: `id,feature` (no labels).
    TestCsv,
    /// `ROOT/<class>/*.png|jpg|jpeg`, optionally under `train/`, `test/`, `val/`.
    ImageFolder,
    /// [`synthetic_loaded`].
    Synthetic,
}

/// The parts of a data source. Which are present depends on the source (see the module
/// docs): a fer2013.csv gives train/val/test from its Usage column, a train.csv only train,
/// a test.csv only an unlabelled test, a folder train and whichever of test/val it has.
/// A part with no rows is `None`, never an empty dataset.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub format: Format,
    /// Labelled training images.
    pub train: Option<Dataset>,
    /// Labelled validation images given by the source (fer2013 `PublicTest`, folder `val/`).
    pub val: Option<Dataset>,
    /// Held-out images (fer2013 `PrivateTest`, folder `test/`, or an unlabelled test.csv).
    pub test: Option<Dataset>,
    /// One summary line per kind of conversion done (resize, colour to gray, skipped files).
    pub warnings: Vec<String>,
    /// What was loaded, for messages: the path, or `synthetic(seed)`.
    pub source: String,
}

impl Loaded {
    /// The training set, or an error saying that this source has none.
    pub fn require_train(&self) -> Result<&Dataset> {
        match &self.train {
            Some(t) => Ok(t),
            None => crate::bail!(
                "{}: no labelled training images in this {:?} source, expected a fer2013.csv with Training rows, a train.csv (label,feature) or an image folder",
                self.source,
                self.format
            ),
        }
    }

    /// (train, val) for training: the source's own validation part when it has one,
    /// otherwise a seeded stratified split of train with `val_fraction` of it in val.
    pub fn train_val(&self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        let train = self.require_train()?;
        Ok(match &self.val {
            Some(v) => (train.clone(), v.clone()),
            None => train.split(val_fraction, seed),
        })
    }
}

/// Loads a FER2013 CSV (any of the three headers) or an image-folder tree, at `target_hw`
/// (height, width): images of another size are resized, with a warning. See the module docs.
pub fn load(path: &Path, target_hw: (usize, usize)) -> Result<Loaded> {
    ensure!(target_hw.0 > 0 && target_hw.1 > 0, "target image size {}x{}: expected both sides > 0", target_hw.0, target_hw.1);
    let meta = std::fs::metadata(path)
        .map_err(|e| crate::Error::new(format!("{}: cannot read: {e}; expected a FER2013 CSV file or an image folder", path.display())))?;
    let loaded = if meta.is_dir() { folder::load_folder(path, target_hw)? } else { table::load_csv(path, target_hw)? };
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    for d in [&loaded.train, &loaded.val, &loaded.test].into_iter().flatten() {
        d.validate().map_err(|e| e.context(path.display()))?;
    }
    Ok(loaded)
}

/// Synthetic train and val sets (the default data when the user gives none), from
/// [`synthetic`] with seeds derived from `seed`; classes are balanced in each.
pub fn synthetic_loaded(n_train: usize, n_val: usize, seed: u64, hw: (usize, usize)) -> Loaded {
    let train = synthetic(n_train, seed, hw);
    let val = synthetic(n_val, seed ^ 0x5EED_0000_0000_0001, hw);
    Loaded {
        format: Format::Synthetic,
        train: Some(train),
        val: if n_val > 0 { Some(val) } else { None },
        test: None,
        warnings: Vec::new(),
        source: format!("synthetic(seed {seed})"),
    }
}

/// FER2013's class names as owned strings.
pub fn fer2013_class_names() -> Vec<String> {
    FER2013_CLASSES.iter().map(|s| s.to_string()).collect()
}

/// Bilinear resize of an 8-bit gray image (`src` is `sh * sw`, row-major).
pub(crate) fn resize_gray(src: &[u8], (sh, sw): (usize, usize), (th, tw): (usize, usize)) -> Vec<u8> {
    if (sh, sw) == (th, tw) {
        return src.to_vec();
    }
    let img = image::GrayImage::from_raw(sw as u32, sh as u32, src.to_vec()).expect("resize_gray: buffer size");
    image::imageops::resize(&img, tw as u32, th as u32, image::imageops::FilterType::Triangle).into_raw()
}

/// Quote `s` for a message, shortened to `max` characters.
pub(crate) fn shown(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push_str("...");
    }
    format!("'{}'", out.escape_debug())
}
