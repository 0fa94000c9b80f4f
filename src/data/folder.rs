//! Image folders: `ROOT/<class>/*.png|jpg|jpeg`, or `ROOT/{train,test,val}/<class>/...`.

use std::path::{Path, PathBuf};

use super::{resize_gray, Dataset, Format, Loaded, FER2013_CLASSES};
use crate::{bail, Error, Result};

const IMAGE_EXTS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name == "__MACOSX" || name.eq_ignore_ascii_case("thumbs.db") || name.eq_ignore_ascii_case("desktop.ini")
}

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Sorted (name, path, is_dir) entries of a directory.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::new(format!("{}: cannot read the folder: {e}", dir.display())))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::new(format!("{}: cannot read the folder: {e}", dir.display())))?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        // Follow symlinks: a linked class folder counts as a folder.
        let is_dir = std::fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false);
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// What was skipped or converted while reading, summed up in a few lines at the end.
#[derive(Default)]
struct Tally {
    skipped: Vec<String>,
    resized: usize,
    resized_example: Option<String>,
    sizes: Vec<(u32, u32)>,
    colour: usize,
    total: usize,
}

/// Class folder names -> (class names in label order, label of each folder name).
fn class_order(names: &[String]) -> Vec<String> {
    let fer_index = |n: &str| FER2013_CLASSES.iter().position(|c| c.eq_ignore_ascii_case(n));
    if names.iter().all(|n| fer_index(n).is_some()) {
        let mut idx: Vec<usize> = names.iter().map(|n| fer_index(n).unwrap()).collect();
        idx.sort();
        idx.dedup();
        idx.into_iter().map(|i| FER2013_CLASSES[i].to_string()).collect()
    } else {
        let mut v = names.to_vec();
        v.sort();
        v
    }
}

/// Class folders directly under `dir`: (folder name, path). Files beside them are noted.
fn class_dirs(dir: &Path, rel: &str, tally: &mut Tally) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for (name, path, is_dir) in entries(dir)? {
        if is_hidden(&name) {
            continue;
        }
        if is_dir {
            out.push((name, path));
        } else {
            tally.skipped.push(format!("{rel}{name}"));
        }
    }
    if out.is_empty() {
        bail!(
            "{}: no class folders; expected one folder per class holding .png/.jpg/.jpeg images (e.g. {}/happy/0001.png), \
             or train/ and test/ folders holding such class folders",
            dir.display(),
            dir.display()
        );
    }
    Ok(out)
}

fn read_part(
    root: &Path,
    dirs: &[(String, PathBuf)],
    class_names: &[String],
    rel: &str,
    hw: (usize, usize),
    tally: &mut Tally,
) -> Result<Dataset> {
    let mut ds = Dataset::empty(hw.0, hw.1, class_names.to_vec(), true, false);
    for (name, dir) in dirs {
        let label = class_names
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                Error::new(format!(
                    "{}: class folder '{name}' is not among the training classes; expected one of: {}",
                    dir.display(),
                    class_names.join(", ")
                ))
            })? as u32;
        let mut count = 0usize;
        for (fname, path, is_dir) in entries(dir)? {
            if is_hidden(&fname) {
                continue;
            }
            if is_dir || !is_image(&path) {
                tally.skipped.push(format!("{rel}{name}/{fname}{}", if is_dir { "/" } else { "" }));
                continue;
            }
            let img = image::ImageReader::open(&path)
                .map_err(|e| Error::new(format!("{}: cannot open the image: {e}", path.display())))?
                .with_guessed_format()
                .map_err(|e| Error::new(format!("{}: cannot read the image: {e}", path.display())))?
                .decode()
                .map_err(|e| Error::new(format!("{}: cannot decode the image: {e}; expected a valid PNG or JPEG", path.display())))?;
            if img.color().has_color() {
                tally.colour += 1;
            }
            let (w, h) = (img.width(), img.height());
            let gray = img.to_luma8().into_raw();
            let gray = if (h as usize, w as usize) != hw {
                tally.resized += 1;
                if !tally.sizes.contains(&(w, h)) && tally.sizes.len() < 4 {
                    tally.sizes.push((w, h));
                }
                if tally.resized_example.is_none() {
                    tally.resized_example = Some(path.strip_prefix(root).unwrap_or(&path).display().to_string());
                }
                resize_gray(&gray, (h as usize, w as usize), hw)
            } else {
                gray
            };
            ds.images.extend(gray.iter().map(|&b| b as f32 / 255.0));
            ds.labels.push(label);
            ds.ids.push(path.strip_prefix(root).unwrap_or(&path).display().to_string());
            ds.n += 1;
            count += 1;
            tally.total += 1;
        }
        if count == 0 {
            bail!("{}: no .png/.jpg/.jpeg images in this class folder; expected at least one image of class '{name}'", dir.display());
        }
    }
    Ok(ds)
}

pub(super) fn load_folder(root: &Path, hw: (usize, usize)) -> Result<Loaded> {
    let mut tally = Tally::default();
    let top = entries(root)?;
    let split_name = |n: &str| -> Option<usize> {
        match n.to_ascii_lowercase().as_str() {
            "train" | "training" => Some(0),
            "val" | "valid" | "validation" => Some(1),
            "test" | "testing" => Some(2),
            _ => None,
        }
    };
    let has_splits = top.iter().any(|(n, _, d)| *d && split_name(n).is_some());
    let mut parts: [Option<Dataset>; 3] = [None, None, None];
    if has_splits {
        let mut split_dirs: [Option<(String, PathBuf)>; 3] = [None, None, None];
        for (name, path, is_dir) in &top {
            if is_hidden(name) {
                continue;
            }
            match (is_dir, split_name(name)) {
                (true, Some(k)) => {
                    if let Some((prev, _)) = &split_dirs[k] {
                        bail!("{}: both '{prev}' and '{name}' found, expected only one of them", root.display());
                    }
                    split_dirs[k] = Some((name.clone(), path.clone()));
                }
                (true, None) => bail!(
                    "{}: found folder '{name}' beside the split folders; expected only train/, test/ and val/ \
                     (each holding one folder per class), or only class folders",
                    root.display()
                ),
                (false, _) => tally.skipped.push(name.clone()),
            }
        }
        // Class names come from train/ (or, without one, from the union of the others).
        let mut dirs_of: [Vec<(String, PathBuf)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for k in 0..3 {
            if let Some((name, path)) = &split_dirs[k] {
                dirs_of[k] = class_dirs(path, &format!("{name}/"), &mut tally)?;
            }
        }
        let names: Vec<String> = if split_dirs[0].is_some() {
            dirs_of[0].iter().map(|(n, _)| n.clone()).collect()
        } else {
            let mut v: Vec<String> = dirs_of.iter().flatten().map(|(n, _)| n.clone()).collect();
            v.sort_by_key(|n| n.to_ascii_lowercase());
            v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
            v
        };
        check_unique(root, &names)?;
        let class_names = class_order(&names);
        for k in 0..3 {
            if let Some((name, _)) = &split_dirs[k] {
                parts[k] = Some(read_part(root, &dirs_of[k], &class_names, &format!("{name}/"), hw, &mut tally)?);
            }
        }
    } else {
        let dirs = class_dirs(root, "", &mut tally)?;
        let names: Vec<String> = dirs.iter().map(|(n, _)| n.clone()).collect();
        check_unique(root, &names)?;
        let class_names = class_order(&names);
        parts[0] = Some(read_part(root, &dirs, &class_names, "", hw, &mut tally)?);
    }

    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    if tally.colour > 0 {
        notes.push(format!("converted {} colour image(s) of {} to grayscale", tally.colour, tally.total));
    }
    if tally.resized > 0 {
        let sizes: Vec<String> = tally.sizes.iter().map(|(w, h)| format!("{w}x{h}")).collect();
        notes.push(format!(
            "resized {} image(s) of {} to {}x{} (bilinear; sizes seen (w x h): {}{}; e.g. {})",
            tally.resized,
            tally.total,
            hw.1,
            hw.0,
            sizes.join(", "),
            if tally.sizes.len() >= 4 { ", ..." } else { "" },
            tally.resized_example.as_deref().unwrap_or("?")
        ));
    }
    if !tally.skipped.is_empty() {
        notes.push(format!(
            "skipped {} entr{} that are not .png/.jpg/.jpeg images in a class folder (e.g. {})",
            tally.skipped.len(),
            if tally.skipped.len() == 1 { "y" } else { "ies" },
            tally.skipped.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if !notes.is_empty() {
        warnings.push(format!("{}: {}", root.display(), notes.join("; ")));
    }
    let [train, val, test] = parts;
    Ok(Loaded { format: Format::ImageFolder, train, val, test, warnings, source: root.display().to_string() })
}

fn check_unique(root: &Path, names: &[String]) -> Result<()> {
    for (i, a) in names.iter().enumerate() {
        if let Some(b) = names[i + 1..].iter().find(|b| b.eq_ignore_ascii_case(a)) {
            bail!("{}: class folders '{a}' and '{b}' differ only in case; expected one folder per class", root.display());
        }
    }
    Ok(())
}
