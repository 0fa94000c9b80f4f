//! Pictures: sizes, non-blank content, colours, counts, error messages.
//! Set MIEN_RENDER_DIR=/some/dir to keep every picture for a look (otherwise they go to a
//! temporary directory).

use image::{Rgb, RgbImage};
use mien::render::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn out_dir() -> PathBuf {
    match std::env::var_os("MIEN_RENDER_DIR") {
        Some(d) => PathBuf::from(d),
        // One fixed directory, overwritten by each run (writes are atomic).
        None => std::env::temp_dir().join("mien-render-test"),
    }
}

fn load(path: &Path) -> RgbImage {
    image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn distinct_colours(img: &RgbImage) -> usize {
    img.pixels().map(|p| p.0).collect::<HashSet<_>>().len()
}

fn count_colour(img: &RgbImage, c: [u8; 3]) -> usize {
    img.pixels().filter(|p| p.0 == c).count()
}

const BLUE: [u8; 3] = [31, 119, 180];
const ORANGE: [u8; 3] = [255, 127, 14];

/// A plausible Keras-like history: train keeps improving, validation plateaus.
fn history(epochs: usize, with_val: bool, secs: f64) -> Vec<EpochRecord> {
    (1..=epochs)
        .map(|e| {
            let t = e as f64;
            let train_acc = 0.25 + 0.55 * (1.0 - (-t / 14.0).exp());
            let val_acc = 0.26 + 0.41 * (1.0 - (-t / 8.0).exp()) + 0.01 * (t * 1.7).sin();
            EpochRecord {
                epoch: e,
                train_loss: 1.85 * (-t / 18.0).exp() + 0.45,
                train_acc,
                val_loss: with_val.then(|| 1.15 + 0.7 * (-t / 6.0).exp() + 0.006 * (t - 15.0).max(0.0)),
                val_acc: with_val.then_some(val_acc),
                lr: 1e-3,
                seconds: secs + 0.3 * (t * 0.9).sin(),
                note: String::new(),
                skipped_steps: 0,
                loss_scale: None,
            }
        })
        .collect()
}

#[test]
fn curves_png_size_content_and_colours() {
    let p = out_dir().join("curves.png");
    plot_curves(&history(60, true, 42.0), "seed-cnn on FER2013", &p).unwrap();
    let img = load(&p);
    assert_eq!(img.dimensions(), (1280, 520));
    assert!(distinct_colours(&img) > 30, "{} colours", distinct_colours(&img));
    assert!(count_colour(&img, BLUE) > 200, "train line (blue) missing");
    assert!(
        count_colour(&img, ORANGE) > 200,
        "validation line (orange) missing"
    );
    assert_eq!(img.get_pixel(2, 2).0, [255, 255, 255], "background is white");
}

#[test]
fn curves_one_epoch_without_validation() {
    let p = out_dir().join("curves_1epoch_noval.png");
    plot_curves(&history(1, false, 3.0), "one epoch", &p).unwrap();
    let img = load(&p);
    assert_eq!(img.dimensions(), (1280, 520));
    assert!(count_colour(&img, BLUE) > 20, "single train point is drawn");
    assert_eq!(count_colour(&img, ORANGE), 0, "no validation drawn");
}

#[test]
fn curves_partial_validation_and_nan_loss() {
    let mut h = history(8, true, 1.0);
    h[0].val_acc = None;
    h[0].val_loss = None;
    h[5].train_loss = f64::NAN;
    let p = out_dir().join("curves_partial.png");
    plot_curves(&h, "partial", &p).unwrap();
    assert!(count_colour(&load(&p), ORANGE) > 20);
}

#[test]
fn curves_empty_history_is_an_error() {
    let e = plot_curves(&[], "x", &out_dir().join("empty.png")).unwrap_err();
    assert!(e.to_string().contains("empty.png"), "{e}");
}

#[test]
fn epoch_record_round_trips_through_csv() {
    let h = history(3, true, 2.0);
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &h {
        w.serialize(r).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let back: Vec<EpochRecord> = csv::Reader::from_reader(&bytes[..])
        .deserialize()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(back, h);
}

#[test]
fn comparison_png() {
    let dnn = history(30, true, 10.0).into_iter().map(|mut r| {
        r.val_acc = r.val_acc.map(|a| a * 0.62);
        r
    });
    let dnn: Vec<EpochRecord> = dnn.collect();
    let cnn = history(40, true, 45.0);
    let p = out_dir().join("comparison.png");
    plot_comparison(&[("DNN 8.9M", &dnn), ("CNN 8.4M", &cnn)], &p).unwrap();
    let img = load(&p);
    assert_eq!(img.dimensions(), (1280, 520));
    // Lines and bars in the run colours.
    assert!(count_colour(&img, BLUE) > 1000 && count_colour(&img, ORANGE) > 1000);
    let e = plot_comparison(&[], &out_dir().join("none.png")).unwrap_err();
    assert!(e.to_string().contains("none.png"));
}

#[test]
fn confusion_counts_hand_example() {
    // truth/pred pairs: (0,0) (0,1) (1,1) (1,1) (2,0) (2,2) (2,2)
    let c = confusion_matrix(&[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 1, 0, 2, 2], 3);
    assert_eq!(c, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 2]]);
    let n = row_normalize(&c);
    for row in &n {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    assert_eq!(n[1], vec![0.0, 1.0, 0.0]);
    assert!((n[2][0] - 1.0 / 3.0).abs() < 1e-12);
}

fn fer_names() -> Vec<String> {
    ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A FER2013-like confusion matrix (Fear/Sad, Sad/Neutral, Disgust/Angry confused).
fn fer_counts() -> Vec<Vec<u64>> {
    vec![
        vec![290, 4, 40, 22, 67, 8, 60],
        vec![18, 30, 3, 2, 2, 0, 1],
        vec![55, 2, 240, 20, 90, 55, 65],
        vec![12, 0, 10, 800, 20, 15, 38],
        vec![50, 1, 60, 30, 330, 7, 175],
        vec![8, 0, 30, 20, 6, 340, 11],
        vec![30, 0, 25, 40, 90, 8, 414],
    ]
}

#[test]
fn confusion_png_and_csv() {
    let dir = out_dir();
    let p = dir.join("confusion.png");
    plot_confusion(&fer_counts(), &fer_names(), "seed-cnn, test set", &p).unwrap();
    let img = load(&p);
    let (w, h) = img.dimensions();
    assert!((600..1200).contains(&w) && (600..1200).contains(&h), "{w}x{h}");
    assert!(distinct_colours(&img) > 40);
    // Disgust -> Disgust is 30/56: a mid blue; Happy's diagonal (0.89) is dark blue.
    let dark = Colormap::Blues.rgb(800.0 / 895.0);
    assert!(
        count_colour(&img, dark) > 1000,
        "Happy diagonal cell colour missing"
    );

    // A perfect classifier: the colorbar's top colour fills the diagonal.
    let perfect = confusion_matrix(&[0, 1, 2, 2], &[0, 1, 2, 2], 3);
    let names3: Vec<String> = vec!["a".into(), "b".into(), "a very long class name".into()];
    let p3 = dir.join("confusion_3.png");
    plot_confusion(&perfect, &names3, "perfect", &p3).unwrap();
    assert!(count_colour(&load(&p3), Colormap::Blues.rgb(1.0)) > 3 * 1000);

    let csv_path = dir.join("confusion.csv");
    write_confusion_csv(&fer_counts(), &fer_names(), &csv_path).unwrap();
    let text = std::fs::read_to_string(&csv_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        lines[0],
        "true\\predicted,Angry,Disgust,Fear,Happy,Sad,Surprise,Neutral"
    );
    assert_eq!(lines[2], "Disgust,18,30,3,2,2,0,1");

    let e = plot_confusion(&fer_counts(), &fer_names()[..6], "x", &dir.join("bad.png")).unwrap_err();
    assert!(e.to_string().contains("6 class names for 7 classes"), "{e}");
}

#[test]
fn gray_to_rgb_and_upscale() {
    let img = gray_to_rgb(&[0.0, 0.5, 1.0, 2.0, -1.0, 0.25], 2, 3);
    assert_eq!(img.dimensions(), (3, 2));
    assert_eq!(img.get_pixel(1, 0).0, [128, 128, 128]);
    assert_eq!(img.get_pixel(0, 1).0, [255, 255, 255]);
    assert_eq!(img.get_pixel(1, 1).0, [0, 0, 0]);
    let big = upscale_nearest(&img, 4);
    assert_eq!(big.dimensions(), (12, 8));
    assert_eq!(big.get_pixel(7, 3), img.get_pixel(1, 0));
    assert_eq!(big.get_pixel(11, 7), img.get_pixel(2, 1));
}

fn luminance(p: &Rgb<u8>) -> f32 {
    0.2126 * p[0] as f32 + 0.7152 * p[1] as f32 + 0.0722 * p[2] as f32
}

#[test]
fn heatmap_is_monotonic_in_value() {
    let values: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).powf(1.3) - 3.0).collect();
    for cmap in [Colormap::Gray, Colormap::Inferno, Colormap::Viridis] {
        let img = heatmap(&values, 8, 8, cmap);
        let lum: Vec<f32> = img.pixels().map(luminance).collect();
        for w in lum.windows(2) {
            assert!(w[1] >= w[0] - 0.5, "{cmap:?} not monotonic: {lum:?}");
        }
        assert!(lum[63] > lum[0] + 100.0);
    }
    // Min-max normalization: the lowest value gets the map's first colour, the top its last.
    let img = heatmap(&values, 8, 8, Colormap::Jet);
    assert_eq!(img.get_pixel(0, 0).0, Colormap::Jet.rgb(0.0));
    assert_eq!(img.get_pixel(7, 7).0, Colormap::Jet.rgb(1.0));
    // Percentile clipping: one huge outlier no longer squeezes everything else to black.
    let mut spiky = values.clone();
    spiky[10] = 1e6;
    let plain = heatmap(&spiky, 8, 8, Colormap::Gray);
    let clipped = heatmap_clipped(&spiky, 8, 8, Colormap::Gray, Some(98.0));
    assert!(plain.get_pixel(5, 7)[0] < 5);
    assert!(clipped.get_pixel(5, 7)[0] > 200);
    assert_eq!(clipped.get_pixel(2, 1)[0], 255);
}

#[test]
fn overlay_alpha() {
    let base = gray_to_rgb(&(0..16).map(|i| i as f32 / 15.0).collect::<Vec<_>>(), 4, 4);
    let heat = heatmap(
        &(0..16).map(|i| (16 - i) as f32).collect::<Vec<_>>(),
        4,
        4,
        Colormap::Jet,
    );
    assert_eq!(overlay(&base, &heat, 0.0), base);
    assert_eq!(overlay(&base, &heat, 1.0), heat);
    let half = overlay(&base, &heat, 0.5);
    let (b, h, m) = (base.get_pixel(1, 1), heat.get_pixel(1, 1), half.get_pixel(1, 1));
    for c in 0..3 {
        let want = (b[c] as f32 + h[c] as f32) / 2.0;
        assert!((m[c] as f32 - want).abs() <= 1.0);
    }
    // A coarse map (Grad-CAM 2x2) is resized to the base.
    let coarse = heatmap(&[0.0, 1.0, 2.0, 3.0], 2, 2, Colormap::Jet);
    assert_eq!(overlay(&base, &coarse, 0.4).dimensions(), (4, 4));
}

/// Deterministic pseudo-random numbers in [0, 1).
fn lcg(seed: &mut u64) -> f32 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 40) as f32 / (1u64 << 24) as f32
}

#[test]
fn mask_keeps_exactly_the_top_fraction() {
    let (h, w) = (48usize, 48usize);
    let mut seed = 7;
    let sal: Vec<f32> = (0..h * w).map(|_| lcg(&mut seed)).collect();
    // A colourful image: every kept pixel differs from the gray fill.
    let img = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        Rgb([200, (x * 5) as u8, (y * 5) as u8])
    });
    let out = mask_top_fraction(&img, &sal, 0.1);
    let k = (0.1f32 * (h * w) as f32).round() as usize;
    let mut order: Vec<usize> = (0..h * w).collect();
    order.sort_by(|&a, &b| sal[b].total_cmp(&sal[a]));
    let top: HashSet<usize> = order[..k].iter().copied().collect();
    let mut kept = 0;
    for i in 0..h * w {
        let (x, y) = ((i % w) as u32, (i / w) as u32);
        let p = out.get_pixel(x, y);
        if top.contains(&i) {
            assert_eq!(p, img.get_pixel(x, y), "top pixel {i} changed");
            kept += 1;
        } else {
            assert!(p[0] == p[1] && p[1] == p[2], "pixel {i} not grayed: {p:?}");
        }
    }
    assert_eq!(kept, k);
    assert_eq!(mask_top_fraction(&img, &sal, 1.0), img);
    let none = mask_top_fraction(&img, &sal, 0.0);
    assert!(none.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    // Greyed pixels are light and low-contrast: between 0.75 and 1.0 of the wash gray.
    assert!(none.pixels().all(|p| (150..=215).contains(&p[0])));
}

#[test]
fn outline_colours() {
    // 4x4, left half segment 0 (supporting), right half segment 1 (opposing).
    let (h, w) = (4, 4);
    let gray = vec![0.5f32; h * w];
    let segments: Vec<u32> = (0..h * w).map(|i| if i % w < 2 { 0 } else { 1 }).collect();
    let img = outline_segments(&gray, &segments, h, w, &[0], &[1]);
    assert_eq!(img.dimensions(), (4, 4));
    let pos = img.get_pixel(0, 2);
    assert!(
        pos[1] > pos[0] + 60 && pos[1] > pos[2] + 60,
        "green tint: {pos:?}"
    );
    let neg = img.get_pixel(3, 2);
    assert!(neg[0] > neg[1] + 60 && neg[0] > neg[2] + 60, "red tint: {neg:?}");
    let edge = img.get_pixel(1, 2);
    assert!(
        edge[0] > 200 && edge[1] > 200 && edge[2] < 60,
        "yellow boundary: {edge:?}"
    );
    // Segments in neither list keep the gray face.
    let plain = outline_segments(&gray, &segments, h, w, &[], &[]);
    assert_eq!(plain.get_pixel(0, 0).0, [128, 128, 128]);
    // Scaled by 4: a 2-pixel boundary at the output resolution, left of the edge.
    let big = outline_segments_scaled(&gray, &segments, h, w, &[0], &[1], 4);
    assert_eq!(big.dimensions(), (16, 16));
    assert_eq!(big.get_pixel(7, 5), edge);
    assert_eq!(big.get_pixel(6, 5), edge);
    assert_eq!(big.get_pixel(5, 5), pos);
    assert_eq!(big.get_pixel(8, 5), neg);
}

fn cell(i: usize) -> RgbImage {
    let f: Vec<f32> = (0..48 * 48)
        .map(|p| ((p % 48 + i * 7) % 48) as f32 / 47.0)
        .collect();
    gray_to_rgb(&f, 48, 48)
}

#[test]
fn grid_sizes_and_partial_row() {
    let cells: Vec<RgbImage> = (0..7).map(cell).collect();
    let dir = out_dir();
    let p = dir.join("grid_7x3_nolabels.png");
    grid(&cells, 3, &[], 2, &p).unwrap();
    let img = load(&p);
    // 3 columns of 96 + 8 gutters; 3 rows, no label band.
    assert_eq!(img.dimensions(), (3 * 104 + 8, 3 * 104 + 8));
    // The two missing cells of the last row are background.
    assert_eq!(img.get_pixel(104 + 8 + 40, 2 * 104 + 8 + 40).0, [255, 255, 255]);
    assert_eq!(
        img.get_pixel(8 + 40, 2 * 104 + 8 + 40),
        cells[6].get_pixel(20, 20)
    );

    let labels: Vec<String> = (0..7)
        .map(|i| {
            if i == 3 {
                "a label far too long to fit under one cell".into()
            } else {
                format!("filter {i}  act 3.4{i}")
            }
        })
        .collect();
    let p = dir.join("grid_7x3_labels.png");
    grid(&cells, 3, &labels, 2, &p).unwrap();
    let img = load(&p);
    let (w, h) = img.dimensions();
    assert_eq!(w, 3 * 104 + 8);
    assert!(h > 3 * 104 + 8 && h < 3 * 104 + 8 + 3 * 30, "label band: {h}");
    // Text is drawn (dark pixels under the first cell), and the long label stays in its column.
    let band_y = 8 + 96 + 2..8 + 96 + 20;
    let dark_under_first = band_y
        .clone()
        .flat_map(|y| (8..104).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y)[0] < 100)
        .count();
    assert!(dark_under_first > 20, "label text missing");
    let gutter_dark = (0..h).filter(|&y| img.get_pixel(3, y)[0] < 200).count();
    assert_eq!(gutter_dark, 0, "nothing drawn in the left gutter");

    assert!(grid(&[], 3, &[], 1, &dir.join("g.png")).is_err());
    let mut odd = cells.clone();
    odd[2] = RgbImage::new(10, 10);
    let e = grid(&odd, 3, &[], 1, &dir.join("odd.png")).unwrap_err();
    assert!(
        e.to_string().contains("cell 2") && e.to_string().contains("odd.png"),
        "{e}"
    );
}

#[test]
fn save_png_is_atomic_and_makes_dirs() {
    let dir = out_dir().join("nested/deeper");
    let p = dir.join("face.png");
    let img = cell(3);
    save_png(&img, &p).unwrap();
    save_png(&img, &p).unwrap(); // overwrite
    assert_eq!(load(&p), img);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temp files left: {leftovers:?}");
}

#[test]
fn unwritable_paths_are_named_in_errors() {
    let dir = out_dir();
    std::fs::create_dir_all(&dir).unwrap();
    // A regular file used as a directory: nothing can be created under it.
    let blocker = dir.join("blocker");
    std::fs::write(&blocker, b"x").unwrap();
    let bad = blocker.join("sub/out.png");
    let name = bad.display().to_string();
    let errs = [
        save_png(&cell(0), &bad).unwrap_err(),
        plot_curves(&history(3, true, 1.0), "t", &bad).unwrap_err(),
        plot_comparison(&[("a", &history(3, true, 1.0))], &bad).unwrap_err(),
        plot_confusion(&fer_counts(), &fer_names(), "t", &bad).unwrap_err(),
        write_confusion_csv(&fer_counts(), &fer_names(), &blocker.join("c.csv")).unwrap_err(),
        grid(&[cell(0)], 1, &[], 1, &bad).unwrap_err(),
    ];
    for (i, e) in errs.iter().enumerate() {
        assert!(
            e.to_string().contains("blocker"),
            "error {i} does not name the path: {e}"
        );
    }
    assert!(errs[0].to_string().contains(&name));
}

/// Pictures of every kind as the explanations will produce them, for a human to look at
/// (MIEN_RENDER_DIR=/tmp/render_check cargo test --release --test render).
#[test]
fn explanation_pictures() {
    let dir = out_dir();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let face_img = image::open(root.join("data/faces/Happy/0.png"))
        .unwrap()
        .to_luma8();
    let (w, h) = (face_img.width() as usize, face_img.height() as usize);
    let face: Vec<f32> = face_img.pixels().map(|p| p[0] as f32 / 255.0).collect();
    // Saliency: blobs on the eyes and mouth plus noise, a few extreme pixels.
    let mut seed = 3;
    let blob = |x: f32, y: f32, cx: f32, cy: f32, s: f32| {
        (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * s * s)).exp()
    };
    let sal: Vec<f32> = (0..h * w)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            blob(x, y, 17.0, 19.0, 4.0)
                + blob(x, y, 31.0, 19.0, 4.0)
                + 1.3 * blob(x, y, 24.0, 34.0, 5.0)
                + 0.3 * lcg(&mut seed)
        })
        .collect();
    let base = gray_to_rgb(&face, h, w);
    let heat = heatmap_clipped(&sal, h, w, Colormap::Jet, Some(99.0));
    let cells = vec![
        base.clone(),
        heat.clone(),
        overlay(&base, &heat, 0.45),
        mask_top_fraction(&base, &sal, 0.25),
        heatmap(&sal, h, w, Colormap::Viridis),
        heatmap(&sal, h, w, Colormap::Inferno),
    ];
    let labels: Vec<String> = [
        "Happy 0.93",
        "saliency (jet)",
        "overlay",
        "top 25%",
        "viridis",
        "inferno",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    grid(&cells, 6, &labels, 3, &dir.join("saliency.png")).unwrap();

    // Grad-CAM: a 6x6 map upsampled bilinearly, overlaid.
    let cam: Vec<f32> = (0..36)
        .map(|i| blob((i % 6) as f32, (i / 6) as f32, 3.0, 4.0, 1.2))
        .collect();
    let cam48 = resize_bilinear(&cam, 6, 6, h, w);
    let cam_cells = vec![
        base.clone(),
        overlay(&base, &heatmap(&cam48, h, w, Colormap::Jet), 0.4),
        overlay(&base, &heatmap(&cam, 6, 6, Colormap::Jet), 0.4),
    ];
    let cam_labels = vec![
        "Happy → Sad".to_string(),
        "Grad-CAM (bilinear)".to_string(),
        "Grad-CAM (overlay resize)".to_string(),
    ];
    grid(&cam_cells, 3, &cam_labels, 4, &dir.join("gradcam.png")).unwrap();

    // LIME: Voronoi superpixels around 40 random seeds.
    let seeds: Vec<(f32, f32)> = (0..40)
        .map(|_| (lcg(&mut seed) * w as f32, lcg(&mut seed) * h as f32))
        .collect();
    let segments: Vec<u32> = (0..h * w)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            (0..seeds.len())
                .min_by(|&a, &b| {
                    let d = |s: (f32, f32)| (s.0 - x).powi(2) + (s.1 - y).powi(2);
                    d(seeds[a]).total_cmp(&d(seeds[b]))
                })
                .unwrap() as u32
        })
        .collect();
    let seg_at = |x: usize, y: usize| segments[y * w + x];
    let positive = vec![seg_at(17, 19), seg_at(24, 34), seg_at(31, 19)];
    let negative = vec![seg_at(5, 5), seg_at(42, 40)];
    let lime_cells = vec![
        upscale_nearest(&base, 4),
        outline_segments_scaled(&face, &segments, h, w, &positive, &negative, 4),
        upscale_nearest(&outline_segments(&face, &segments, h, w, &positive, &negative), 4),
    ];
    let lime_labels = vec![
        "input".to_string(),
        "LIME: Happy (scale 4)".to_string(),
        "LIME (scale 1, upscaled)".to_string(),
    ];
    grid(&lime_cells, 3, &lime_labels, 1, &dir.join("lime.png")).unwrap();

    // Filter ascent: 32 "filters" (random stripes), 8 per row, two-line labels on some.
    let filters: Vec<RgbImage> = (0..32)
        .map(|k| {
            let (fx, fy) = (lcg(&mut seed) * 0.8, lcg(&mut seed) * 0.8);
            let v: Vec<f32> = (0..h * w)
                .map(|i| 0.5 + 0.5 * ((i % w) as f32 * fx + (i / w) as f32 * fy + k as f32).sin())
                .collect();
            heatmap(&v, h, w, Colormap::Gray)
        })
        .collect();
    let f_labels: Vec<String> = (0..32)
        .map(|k| format!("filter {k}  act {:.2}", 3.0 + k as f32 * 0.13))
        .collect();
    grid(&filters, 8, &f_labels, 2, &dir.join("filters.png")).unwrap();
    let mut f2 = f_labels.clone();
    f2[1] = "conv2d_1 filter 1\nmean activation 12.345678".into();
    f2[2] = "an extremely long label that cannot possibly fit".into();
    grid(&filters[..11], 4, &f2[..11], 1, &dir.join("filters_small.png")).unwrap();
}
