//! Procedurally drawn cartoon faces in FER2013's seven classes: the default data.
//!
//! Each image is a face (oval with shading, hair, ears, neck, nose) whose brows, eyes and
//! mouth take an expression-dependent shape, mixed with neutral by a random intensity:
//!
//! | class | brows | eyes | mouth | lines |
//! | --- | --- | --- | --- | --- |
//! | Angry | lowered, inner ends pulled down | narrowed | pressed short line, or open shouting with teeth | vertical frown lines between the brows |
//! | Disgust | lowered, one side more | narrowed, one more | asymmetric sneer, upper lip raised on one side | nose wrinkles, nasolabial folds |
//! | Fear | raised, straight, inner ends up | wide open | wide, stretched, slightly open | faint frown lines |
//! | Happy | slightly raised, arched | slightly narrowed | wide smile curve, closed or open with teeth | nasolabial folds |
//! | Sad | inner ends raised | slightly narrowed | frown (corners down) | |
//! | Surprise | raised high, arched | wide open | open round O | |
//! | Neutral | flat | open | flat line | |
//!
//! On top comes what makes real photos hard: pose (offset, scale, small rotation, yaw and
//! pitch shifts of the features), face proportions, skin / hair / background tones,
//! background clutter, a lighting gradient, gamma, blur, pixel noise, glasses, and random
//! occluders (bars and blobs, sometimes skin-toned like a hand, sometimes over the face).
//!
//! Shapes are signed-distance functions in face coordinates (face centre at the origin,
//! y down, the face oval about 0.75 x 1.0), drawn with analytic anti-aliasing (coverage =
//! clamp(0.5 - distance in pixels)). The mask marks the pixels near the expression
//! features (brows, eyes, mouth, expression lines), inside the face oval and not covered by
//! an occluder. Pixels are quantized to multiples of 1/255, like 8-bit data, so writing them
//! to a CSV or PNG and loading them back gives the same values.
//!
//! Deterministic: image `i` depends only on (seed, i), so the same seed gives identical
//! bytes; labels are balanced (`i % 7`, shuffled with the seed).

use std::f64::consts::PI;
use std::ops::{Add, Mul, Sub};

use super::{fer2013_class_names, Dataset};
use crate::rng::Rng;

/// Switches for [`synthetic_with`]. The random draws do not depend on them: the same seed
/// gives the same faces, poses and masks whatever is switched off.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthOptions {
    /// (height, width); 48x48 like FER2013 by default.
    pub hw: (usize, usize),
    /// Background gradient and clutter shapes.
    pub background: bool,
    /// Bars and blobs in front of the picture (they also clear the mask where they cover it).
    pub occluders: bool,
    /// Lighting gradient, contrast, gamma and blur.
    pub lighting: bool,
    /// Gaussian pixel noise.
    pub noise: bool,
    /// Draw only the expression features (brows, eyes, mouth, lines) in black on white,
    /// with no face, hair or nose: to check that masks line up with what is drawn.
    pub features_only: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { hw: (48, 48), background: true, occluders: true, lighting: true, noise: true, features_only: false }
    }
}

/// `n` synthetic faces of `hw` (height, width) with all variations on; see the module docs.
pub fn synthetic(n: usize, seed: u64, hw: (usize, usize)) -> Dataset {
    synthetic_with(n, seed, &SynthOptions { hw, ..SynthOptions::default() })
}

/// `n` synthetic faces with some variations switched off (see [`SynthOptions`]).
pub fn synthetic_with(n: usize, seed: u64, opts: &SynthOptions) -> Dataset {
    let (h, w) = opts.hw;
    assert!(h > 0 && w > 0, "synthetic: image size {h}x{w} must be positive");
    let mut labels: Vec<u32> = (0..n).map(|i| (i % 7) as u32).collect();
    Rng::new(seed).shuffle(&mut labels);
    let mut images = Vec::with_capacity(n * h * w);
    let mut masks = Vec::with_capacity(n * h * w);
    for (i, &label) in labels.iter().enumerate() {
        let mut rng = image_rng(seed, i);
        let scene = Scene::sample(label as usize, &mut rng, h, w);
        let (img, mask) = scene.render(h, w, opts, &mut rng);
        images.extend_from_slice(&img);
        masks.extend_from_slice(&mask);
    }
    Dataset {
        images,
        labels,
        n,
        h,
        w,
        class_names: fer2013_class_names(),
        ids: (0..n).map(|i| i.to_string()).collect(),
        masks: Some(masks),
        labelled: true,
    }
}

fn image_rng(seed: u64, i: usize) -> Rng {
    let mut r = Rng::new(seed ^ (i as u64).wrapping_add(1).wrapping_mul(0xA24B_AED4_963E_E407));
    let s = r.next_u64();
    Rng::new(s)
}

// ---------------------------------------------------------------- geometry

#[derive(Clone, Copy, Debug, PartialEq)]
struct P {
    x: f64,
    y: f64,
}

const fn p(x: f64, y: f64) -> P {
    P { x, y }
}

impl Add for P {
    type Output = P;
    fn add(self, o: P) -> P {
        p(self.x + o.x, self.y + o.y)
    }
}
impl Sub for P {
    type Output = P;
    fn sub(self, o: P) -> P {
        p(self.x - o.x, self.y - o.y)
    }
}
impl Mul<f64> for P {
    type Output = P;
    fn mul(self, k: f64) -> P {
        p(self.x * k, self.y * k)
    }
}

fn dot(a: P, b: P) -> f64 {
    a.x * b.x + a.y * b.y
}
fn len(a: P) -> f64 {
    dot(a, a).sqrt()
}

/// Signed distance shapes (negative inside), in face or image coordinates.
#[derive(Clone, Debug)]
enum Sdf {
    Ellipse { c: P, r: P },
    /// Closed polygon (any winding).
    Poly(Vec<P>),
    /// Polyline of radius `r` (a capsule for two points, a disc for one).
    Stroke { pts: Vec<P>, r: f64 },
    /// The outline of a shape, `r` thick on each side.
    Shell(Box<Sdf>, f64),
    Inter(Box<Sdf>, Box<Sdf>),
    /// The half plane y < value.
    Above(f64),
}

fn sd_ellipse(q: P, r: P) -> f64 {
    // Inigo Quilez's first-order approximation: good near the boundary, which is all AA needs.
    let k0 = len(p(q.x / r.x, q.y / r.y));
    let k1 = len(p(q.x / (r.x * r.x), q.y / (r.y * r.y)));
    if k1 < 1e-12 {
        return -r.x.min(r.y);
    }
    k0 * (k0 - 1.0) / k1
}

fn sd_segment(q: P, a: P, b: P) -> f64 {
    let pa = q - a;
    let ba = b - a;
    let h = (dot(pa, ba) / dot(ba, ba).max(1e-18)).clamp(0.0, 1.0);
    len(pa - ba * h)
}

fn sd_poly(q: P, v: &[P]) -> f64 {
    let n = v.len();
    let mut d = dot(q - v[0], q - v[0]);
    let mut s = 1.0;
    let mut j = n - 1;
    for i in 0..n {
        let e = v[j] - v[i];
        let w = q - v[i];
        let b = w - e * (dot(w, e) / dot(e, e).max(1e-18)).clamp(0.0, 1.0);
        d = d.min(dot(b, b));
        let c1 = q.y >= v[i].y;
        let c2 = q.y < v[j].y;
        let c3 = e.x * w.y > e.y * w.x;
        if (c1 && c2 && c3) || (!c1 && !c2 && !c3) {
            s = -s;
        }
        j = i;
    }
    s * d.sqrt()
}

fn bounds(pts: &[P]) -> (P, P) {
    let mut lo = p(f64::INFINITY, f64::INFINITY);
    let mut hi = p(f64::NEG_INFINITY, f64::NEG_INFINITY);
    for q in pts {
        lo = p(lo.x.min(q.x), lo.y.min(q.y));
        hi = p(hi.x.max(q.x), hi.y.max(q.y));
    }
    (lo, hi)
}

impl Sdf {
    fn eval(&self, q: P) -> f64 {
        match self {
            Sdf::Ellipse { c, r } => sd_ellipse(q - *c, *r),
            Sdf::Poly(v) => sd_poly(q, v),
            Sdf::Stroke { pts, r } => {
                let mut d = len(q - pts[0]);
                for s in pts.windows(2) {
                    d = d.min(sd_segment(q, s[0], s[1]));
                }
                d - r
            }
            Sdf::Shell(s, r) => s.eval(q).abs() - r,
            Sdf::Inter(a, b) => a.eval(q).max(b.eval(q)),
            Sdf::Above(y) => q.y - y,
        }
    }

    /// Bounding box (lo, hi) of the inside.
    fn bbox(&self) -> (P, P) {
        match self {
            Sdf::Ellipse { c, r } => (*c - *r, *c + *r),
            Sdf::Poly(v) => bounds(v),
            Sdf::Stroke { pts, r } => {
                let (lo, hi) = bounds(pts);
                (lo - p(*r, *r), hi + p(*r, *r))
            }
            Sdf::Shell(s, r) => {
                let (lo, hi) = s.bbox();
                (lo - p(*r, *r), hi + p(*r, *r))
            }
            Sdf::Inter(a, b) => {
                let (la, ha) = a.bbox();
                let (lb, hb) = b.bbox();
                (p(la.x.max(lb.x), la.y.max(lb.y)), p(ha.x.min(hb.x), ha.y.min(hb.y)))
            }
            Sdf::Above(y) => (p(f64::NEG_INFINITY, f64::NEG_INFINITY), p(f64::INFINITY, *y)),
        }
    }
}

/// Quadratic Bezier a -> b with control c, as `n + 1` points.
fn quad(a: P, c: P, b: P, n: usize) -> Vec<P> {
    (0..=n)
        .map(|i| {
            let t = i as f64 / n as f64;
            a * ((1.0 - t) * (1.0 - t)) + c * (2.0 * t * (1.0 - t)) + b * (t * t)
        })
        .collect()
}

// ---------------------------------------------------------------- expressions

#[derive(Clone, Copy, Debug)]
struct Expr {
    brow_raise: f64, // up, face units
    brow_tilt: f64,  // inner ends up (+) or down (-)
    brow_arch: f64,  // middle up
    brow_asym: f64,  // one brow lower (+ right, - left)
    eye_open: f64,   // half-height of the eye opening
    eye_asym: f64,   // one eye narrower
    mouth_w: f64,    // half-width
    mouth_curve: f64, // corners up (+) or down (-)
    mouth_open: f64, // half-height of the opening
    mouth_up: f64,   // share of the opening above the mouth line
    mouth_asym: f64, // one corner raised (sneer)
    teeth: f64,      // > 0.5: teeth show when open
    glabella: f64,   // vertical lines between the brows
    wrinkle: f64,    // nose wrinkles
    fold: f64,       // nasolabial folds
}

const NEUTRAL: Expr = Expr {
    brow_raise: 0.0,
    brow_tilt: 0.0,
    brow_arch: 0.025,
    brow_asym: 0.0,
    eye_open: 0.065,
    eye_asym: 0.0,
    mouth_w: 0.21,
    mouth_curve: 0.0,
    mouth_open: 0.0,
    mouth_up: 0.5,
    mouth_asym: 0.0,
    teeth: 0.0,
    glabella: 0.0,
    wrinkle: 0.0,
    fold: 0.0,
};

impl Expr {
    fn lerp(a: &Expr, b: &Expr, t: f64) -> Expr {
        let l = |x: f64, y: f64| x + (y - x) * t;
        Expr {
            brow_raise: l(a.brow_raise, b.brow_raise),
            brow_tilt: l(a.brow_tilt, b.brow_tilt),
            brow_arch: l(a.brow_arch, b.brow_arch),
            brow_asym: l(a.brow_asym, b.brow_asym),
            eye_open: l(a.eye_open, b.eye_open),
            eye_asym: l(a.eye_asym, b.eye_asym),
            mouth_w: l(a.mouth_w, b.mouth_w),
            mouth_curve: l(a.mouth_curve, b.mouth_curve),
            mouth_open: l(a.mouth_open, b.mouth_open),
            mouth_up: b.mouth_up,
            mouth_asym: l(a.mouth_asym, b.mouth_asym),
            teeth: b.teeth,
            glabella: l(a.glabella, b.glabella),
            wrinkle: l(a.wrinkle, b.wrinkle),
            fold: l(a.fold, b.fold),
        }
    }

    fn sample(class: usize, rng: &mut Rng) -> Expr {
        let side = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let mode = rng.uniform();
        let n = NEUTRAL;
        let target = match class {
            0 => {
                let shout = mode < 0.4;
                Expr {
                    brow_raise: -0.05,
                    brow_tilt: -0.11,
                    brow_arch: -0.01,
                    eye_open: 0.048,
                    mouth_w: if shout { 0.19 } else { 0.16 },
                    mouth_curve: -0.045,
                    mouth_open: if shout { 0.07 } else { 0.0 },
                    mouth_up: 0.45,
                    teeth: if shout { 1.0 } else { 0.0 },
                    glabella: 1.0,
                    ..n
                }
            }
            1 => Expr {
                brow_raise: -0.04,
                brow_tilt: -0.05,
                brow_asym: 0.05 * side,
                eye_open: 0.045,
                eye_asym: 0.015 * side,
                mouth_w: 0.19,
                mouth_curve: -0.06,
                mouth_open: if mode < 0.5 { 0.025 } else { 0.0 },
                mouth_up: 0.3,
                mouth_asym: 0.09 * side,
                teeth: 1.0,
                wrinkle: 1.0,
                fold: 0.6,
                ..n
            },
            2 => Expr {
                brow_raise: 0.08,
                brow_tilt: 0.07,
                brow_arch: -0.01,
                eye_open: 0.11,
                mouth_w: 0.28,
                mouth_curve: -0.03,
                mouth_open: 0.045,
                mouth_up: 0.5,
                teeth: if mode < 0.5 { 1.0 } else { 0.0 },
                glabella: 0.35,
                ..n
            },
            3 => {
                let open = mode < 0.5;
                Expr {
                    brow_raise: 0.02,
                    brow_arch: 0.05,
                    eye_open: 0.045,
                    mouth_w: 0.27,
                    mouth_curve: 0.12,
                    mouth_open: if open { 0.06 } else { 0.0 },
                    mouth_up: 0.2,
                    teeth: 1.0,
                    fold: 0.9,
                    ..n
                }
            }
            4 => Expr { brow_raise: 0.01, brow_tilt: 0.10, brow_arch: 0.0, eye_open: 0.05, mouth_w: 0.19, mouth_curve: -0.10, ..n },
            5 => Expr {
                brow_raise: 0.13,
                brow_tilt: 0.02,
                brow_arch: 0.08,
                eye_open: 0.12,
                mouth_w: 0.10,
                mouth_open: 0.12,
                mouth_up: 0.5,
                ..n
            },
            _ => n,
        };
        let t = rng.range(0.55, 1.0);
        let mut e = Expr::lerp(&n, &target, t);
        // Person-to-person variation on top of the expression.
        e.brow_raise += 0.015 * rng.normal();
        e.brow_tilt += 0.015 * rng.normal();
        e.brow_arch += 0.01 * rng.normal();
        e.eye_open = (e.eye_open * (0.12 * rng.normal()).exp()).max(0.02);
        e.mouth_w *= (0.08 * rng.normal()).exp();
        e.mouth_curve += 0.012 * rng.normal();
        e.mouth_open = (e.mouth_open * (0.1 * rng.normal()).exp()).max(0.0);
        e.mouth_asym += 0.008 * rng.normal();
        e
    }
}

// ---------------------------------------------------------------- scene

#[derive(Clone, Copy, Debug)]
enum Paint {
    Flat(f64),
    /// Skin, darker toward the edge of the face oval of radii `r`.
    Skin { v: f64, r: P },
}

#[derive(Clone, Debug)]
struct Layer {
    sdf: Sdf,
    /// Face coordinates (else image pixels).
    face: bool,
    paint: Paint,
    alpha: f64,
    /// An expression feature (drawn in `features_only`).
    expr: bool,
    /// Part of the background / occluders (drawn only with those options).
    background: bool,
    occluder: bool,
    lo: P,
    hi: P,
}

impl Layer {
    fn new(sdf: Sdf, face: bool, paint: Paint, alpha: f64) -> Layer {
        let (lo, hi) = sdf.bbox();
        Layer { sdf, face, paint, alpha, expr: false, background: false, occluder: false, lo, hi }
    }
}

#[derive(Clone, Debug)]
struct Scene {
    // Pose: face centre (pixels), pixels per face unit, rotation.
    cx: f64,
    cy: f64,
    s: f64,
    angle: f64,
    bg: f64,
    bg_grad: P,
    layers: Vec<Layer>,
    /// Face-space regions (shape, margin) that carry the expression.
    mask: Vec<(Sdf, f64)>,
    face_clip: Sdf,
    light: f64,
    light_grad: P,
    contrast: f64,
    gamma: f64,
    blur: bool,
    noise: f64,
}

fn unit_dir(rng: &mut Rng) -> P {
    let a = rng.range(0.0, 2.0 * PI);
    p(a.cos(), a.sin())
}

impl Scene {
    fn sample(class: usize, rng: &mut Rng, h: usize, w: usize) -> Scene {
        let m = h.min(w) as f64;
        let e = Expr::sample(class, rng);

        // Pose.
        let s = m * rng.range(0.36, 0.50);
        let cx = w as f64 / 2.0 + (0.05 * m * rng.normal()).clamp(-0.11 * m, 0.11 * m);
        let cy = h as f64 / 2.0 + 0.02 * m + (0.05 * m * rng.normal()).clamp(-0.11 * m, 0.11 * m);
        let angle = (0.12 * rng.normal()).clamp(-0.3, 0.3);

        // Proportions (face units), yaw / pitch shift of the features.
        let face_r = p(rng.range(0.70, 0.80), rng.range(0.95, 1.05));
        let fd = p((0.035 * rng.normal()).clamp(-0.08, 0.08), (0.03 * rng.normal()).clamp(-0.07, 0.07));
        let eye_dx = rng.range(0.28, 0.34);
        let eye_y = rng.range(-0.16, -0.08);
        let eye_w = rng.range(0.10, 0.13);
        let brow_y = eye_y - rng.range(0.22, 0.27);
        let brow_r = rng.range(0.022, 0.04);
        let mouth_y = rng.range(0.44, 0.54);
        let lip_r = rng.range(0.018, 0.03);

        // Tones.
        let bg = rng.range(0.05, 0.95);
        let bg_grad = unit_dir(rng) * rng.range(0.0, 0.4);
        let skin = rng.range(0.40, 0.85);
        let hair_col = if rng.uniform() < 0.75 { rng.range(0.03, 0.35) } else { rng.range(0.5, 0.9) };
        let hair_style = rng.uniform(); // < 0.15 none, < 0.65 short, else long
        let brow_col = skin * rng.range(0.15, 0.45);
        let iris_col = rng.range(0.02, 0.25);
        let line_col = skin * rng.range(0.2, 0.4);
        let sclera_col = (skin + rng.range(0.1, 0.35)).min(0.97);
        let mouth_col = rng.range(0.02, 0.15);
        let lip_col = skin * rng.range(0.35, 0.6);
        let teeth_col = rng.range(0.75, 0.95);
        let clothes = rng.range(0.05, 0.9);
        let iris_shift = p(0.03 * rng.normal(), 0.01 * rng.normal());
        let glasses = rng.uniform() < 0.1;
        let fringe_y = rng.range(0.0, 0.12);

        let mut layers: Vec<Layer> = Vec::new();
        let mut mask: Vec<(Sdf, f64)> = Vec::new();
        let flat = |v: f64| Paint::Flat(v.clamp(0.0, 1.0));

        // Background clutter (image space).
        let n_clutter = rng.below(4);
        for _ in 0..n_clutter {
            let c = p(rng.range(0.0, w as f64), rng.range(0.0, h as f64));
            let col = bg + rng.range(-0.35, 0.35);
            let sdf = if rng.uniform() < 0.5 {
                Sdf::Ellipse { c, r: p(rng.range(0.1, 0.4) * m, rng.range(0.1, 0.4) * m) }
            } else {
                let d = unit_dir(rng) * (rng.range(0.2, 0.7) * m);
                Sdf::Stroke { pts: vec![c - d, c + d], r: rng.range(0.02, 0.08) * m }
            };
            let mut l = Layer::new(sdf, false, flat(col), 1.0);
            l.background = true;
            layers.push(l);
        }

        // Shoulders, neck, hair behind, ears, face.
        layers.push(Layer::new(Sdf::Ellipse { c: p(0.0, 1.95), r: p(1.45, 0.85) }, true, flat(clothes), 1.0));
        layers.push(Layer::new(
            Sdf::Poly(vec![p(-0.28, 0.5), p(0.28, 0.5), p(0.3, 1.4), p(-0.3, 1.4)]),
            true,
            flat(skin * 0.8),
            1.0,
        ));
        let hair_short = Sdf::Ellipse { c: p(0.0, -0.10), r: p(face_r.x + 0.08, face_r.y + 0.10) };
        if hair_style >= 0.65 {
            layers.push(Layer::new(Sdf::Ellipse { c: p(0.0, 0.25), r: p(face_r.x + 0.2, 1.3) }, true, flat(hair_col), 1.0));
        } else if hair_style >= 0.15 {
            layers.push(Layer::new(hair_short.clone(), true, flat(hair_col), 1.0));
        }
        for sx in [-1.0, 1.0] {
            let c = p(sx * (face_r.x - 0.03), -0.05 + fd.y * 0.5);
            layers.push(Layer::new(Sdf::Ellipse { c, r: p(0.09, 0.15) }, true, flat(skin * 0.9), 1.0));
        }
        let face = Sdf::Ellipse { c: p(0.0, 0.0), r: face_r };
        layers.push(Layer::new(face.clone(), true, Paint::Skin { v: skin, r: face_r }, 1.0));
        if hair_style >= 0.15 {
            let fringe = Sdf::Inter(
                Box::new(hair_short),
                Box::new(Sdf::Ellipse { c: p(fd.x * 0.5, -1.52 - fringe_y), r: p(1.15, 0.92) }),
            );
            layers.push(Layer::new(fringe, true, flat(hair_col), 1.0));
        }

        // Expression lines.
        let expr_layer = |layers: &mut Vec<Layer>, mask: &mut Vec<(Sdf, f64)>, sdf: Sdf, paint: Paint, alpha: f64, margin: f64| {
            if alpha <= 0.01 {
                return;
            }
            let mut l = Layer::new(sdf.clone(), true, paint, alpha.min(1.0));
            l.expr = true;
            layers.push(l);
            if margin >= 0.0 {
                mask.push((sdf, margin));
            }
        };
        // Expression lines are drawn (and masked) only when clearly present.
        let lines = |k: f64| if k > 0.25 { 0.03 } else { -1.0 };
        let faint = |k: f64| if k > 0.25 { k } else { 0.0 };
        for sx in [-1.0, 1.0] {
            let g = Sdf::Stroke { pts: vec![fd + p(sx * 0.04, brow_y + 0.10), fd + p(sx * 0.035, brow_y + 0.20)], r: 0.012 };
            expr_layer(&mut layers, &mut mask, g, flat(line_col), 0.6 * faint(e.glabella), lines(e.glabella));
            let w1 = Sdf::Stroke { pts: vec![fd + p(sx * 0.05, -0.02), fd + p(sx * 0.11, 0.04)], r: 0.012 };
            let w2 = Sdf::Stroke { pts: vec![fd + p(sx * 0.06, 0.06), fd + p(sx * 0.12, 0.11)], r: 0.012 };
            expr_layer(&mut layers, &mut mask, w1, flat(line_col), 0.7 * faint(e.wrinkle), lines(e.wrinkle));
            expr_layer(&mut layers, &mut mask, w2, flat(line_col), 0.7 * faint(e.wrinkle), lines(e.wrinkle));
            let f = Sdf::Stroke {
                pts: quad(
                    fd + p(sx * 0.13, 0.20),
                    fd + p(sx * (e.mouth_w + 0.10), mouth_y - 0.1),
                    fd + p(sx * (e.mouth_w + 0.06), mouth_y + 0.08),
                    6,
                ),
                r: 0.013,
            };
            expr_layer(&mut layers, &mut mask, f, flat(line_col), 0.5 * faint(e.fold), lines(e.fold));
        }

        // Nose (not an expression feature).
        layers.push(Layer::new(
            Sdf::Stroke { pts: vec![fd + p(0.01, -0.02), fd + p(0.04, 0.17), fd + p(0.0, 0.21)], r: 0.012 },
            true,
            flat(skin * 0.6),
            0.5,
        ));
        for sx in [-1.0, 1.0] {
            layers.push(Layer::new(
                Sdf::Ellipse { c: fd + p(sx * 0.055, 0.21), r: p(0.025, 0.015) },
                true,
                flat(skin * 0.4),
                0.7,
            ));
        }

        // Eyes.
        for sx in [-1.0f64, 1.0] {
            let c = fd + p(sx * eye_dx, eye_y);
            let open = (e.eye_open - if e.eye_asym * sx > 0.0 { e.eye_asym.abs() } else { 0.0 }).max(0.015);
            let eye = Sdf::Ellipse { c, r: p(eye_w, open) };
            let mut l = Layer::new(eye.clone(), true, flat(sclera_col), 1.0);
            l.expr = true;
            layers.push(l);
            let iris = Sdf::Inter(Box::new(eye.clone()), Box::new(Sdf::Ellipse { c: c + iris_shift, r: p(0.055, 0.055) }));
            expr_layer(&mut layers, &mut mask, iris, flat(iris_col), 1.0, -1.0);
            let lid: Vec<P> = (0..=8).map(|k| {
                let t = PI * k as f64 / 8.0;
                c + p(-eye_w * t.cos(), -open * t.sin())
            }).collect();
            expr_layer(&mut layers, &mut mask, Sdf::Stroke { pts: lid, r: 0.02 }, flat(line_col), 1.0, -1.0);
            expr_layer(&mut layers, &mut mask, Sdf::Shell(Box::new(eye), 0.009), flat(line_col), 1.0, -1.0);
            mask.push((Sdf::Ellipse { c, r: p(eye_w, open.max(0.03)) }, 0.07));
        }

        // Brows.
        for sx in [-1.0f64, 1.0] {
            let lower = if e.brow_asym * sx > 0.0 { e.brow_asym.abs() } else { 0.0 };
            let base = brow_y - e.brow_raise + lower;
            let inner = fd + p(sx * 0.10, base - e.brow_tilt);
            let outer = fd + p(sx * 0.52, base + 0.4 * e.brow_tilt);
            let mid = (inner + outer) * 0.5 - p(0.0, 2.0 * e.brow_arch);
            let brow = Sdf::Stroke { pts: quad(inner, mid, outer, 6), r: brow_r };
            expr_layer(&mut layers, &mut mask, brow, flat(brow_col), 1.0, 0.05);
        }

        // Mouth: centre line y(u), u in [-1, 1] from left to right corner.
        let side = if e.mouth_asym >= 0.0 { 1.0 } else { -1.0 };
        let centre = |u: f64| {
            let raise = e.mouth_asym.abs() * ((1.0 + side * u) / 2.0).powi(2);
            fd + p(u * e.mouth_w, mouth_y - e.mouth_curve * u * u - raise)
        };
        if e.mouth_open < 0.012 {
            let pts: Vec<P> = (0..=10).map(|k| centre(-1.0 + 2.0 * k as f64 / 10.0)).collect();
            expr_layer(&mut layers, &mut mask, Sdf::Stroke { pts, r: lip_r }, flat(lip_col * 0.7), 1.0, 0.06);
        } else {
            let o = e.mouth_open;
            let shape = |u: f64| (1.0 - u * u).max(0.0).sqrt();
            let mut poly = Vec::new();
            for k in 0..=12 {
                let u = -1.0 + 2.0 * k as f64 / 12.0;
                poly.push(centre(u) - p(0.0, 2.0 * o * e.mouth_up * shape(u)));
            }
            for k in (1..12).rev() {
                let u = -1.0 + 2.0 * k as f64 / 12.0;
                poly.push(centre(u) + p(0.0, 2.0 * o * (1.0 - e.mouth_up) * shape(u)));
            }
            let top = centre(0.0).y - 2.0 * o * e.mouth_up;
            let inside = Sdf::Poly(poly);
            expr_layer(&mut layers, &mut mask, inside.clone(), flat(mouth_col), 1.0, 0.07);
            if e.teeth > 0.5 {
                let teeth = Sdf::Inter(Box::new(inside.clone()), Box::new(Sdf::Above(top + 0.9 * o)));
                expr_layer(&mut layers, &mut mask, teeth, flat(teeth_col), 1.0, -1.0);
            }
            expr_layer(&mut layers, &mut mask, Sdf::Shell(Box::new(inside), lip_r * 0.6), flat(lip_col), 1.0, -1.0);
        }

        if glasses {
            for sx in [-1.0, 1.0] {
                let ring = Sdf::Shell(Box::new(Sdf::Ellipse { c: fd + p(sx * eye_dx, eye_y), r: p(0.17, 0.13) }), 0.012);
                layers.push(Layer::new(ring, true, flat(0.1), 0.9));
            }
            layers.push(Layer::new(
                Sdf::Stroke { pts: vec![fd + p(-eye_dx + 0.17, eye_y), fd + p(eye_dx - 0.17, eye_y)], r: 0.012 },
                true,
                flat(0.1),
                0.9,
            ));
        }

        // Occluders (image space): none, one or two bars / blobs, half of them near the face.
        let n_occ = match rng.uniform() {
            u if u < 0.55 => 0,
            u if u < 0.9 => 1,
            _ => 2,
        };
        for _ in 0..n_occ {
            let c = if rng.uniform() < 0.5 {
                p(cx + 0.5 * s * rng.normal(), cy + 0.5 * s * rng.normal())
            } else {
                p(rng.range(0.0, w as f64), rng.range(0.0, h as f64))
            };
            let col = if rng.uniform() < 0.3 { skin + rng.range(-0.1, 0.1) } else { rng.uniform() };
            let sdf = if rng.uniform() < 0.5 {
                let d = unit_dir(rng) * (rng.range(0.15, 0.5) * m);
                Sdf::Stroke { pts: vec![c - d, c + d], r: rng.range(0.03, 0.08) * m }
            } else {
                Sdf::Ellipse { c, r: p(rng.range(0.06, 0.18) * m, rng.range(0.06, 0.18) * m) }
            };
            let mut l = Layer::new(sdf, false, flat(col), 1.0);
            l.occluder = true;
            layers.push(l);
        }

        // Camera.
        let light = rng.range(0.75, 1.15);
        let light_grad = unit_dir(rng) * rng.range(0.0, 0.7);
        let contrast = rng.range(0.75, 1.2);
        let gamma = (0.2 * rng.normal()).exp();
        let blur = rng.uniform() < 0.15;
        let noise = rng.range(0.005, 0.05);

        Scene { cx, cy, s, angle, bg, bg_grad, layers, mask, face_clip: face, light, light_grad, contrast, gamma, blur, noise }
    }

    /// Image (values k/255) and mask, both `h * w`.
    fn render(&self, h: usize, w: usize, o: &SynthOptions, rng: &mut Rng) -> (Vec<f32>, Vec<u8>) {
        let m = h.min(w) as f64;
        let centre = p(w as f64 / 2.0, h as f64 / 2.0);
        let (sin, cos) = self.angle.sin_cos();
        let mut img = vec![0.0f64; h * w];
        let mut mask = vec![0u8; h * w];
        for y in 0..h {
            for x in 0..w {
                let pi = p(x as f64 + 0.5, y as f64 + 0.5);
                let d = pi - p(self.cx, self.cy);
                let q = p((cos * d.x + sin * d.y) / self.s, (-sin * d.x + cos * d.y) / self.s);
                let mut v = if o.features_only {
                    1.0
                } else if o.background {
                    self.bg + dot(self.bg_grad, (pi - centre) * (1.0 / m))
                } else {
                    self.bg
                };
                let mut occluded = false;
                for l in &self.layers {
                    if (l.background && (!o.background || o.features_only)) || (l.occluder && !o.occluders) {
                        continue;
                    }
                    if o.features_only && !l.expr && !l.occluder {
                        continue;
                    }
                    let (pt, k) = if l.face { (q, self.s) } else { (pi, 1.0) };
                    let margin = 1.0 / k;
                    if pt.x < l.lo.x - margin || pt.x > l.hi.x + margin || pt.y < l.lo.y - margin || pt.y > l.hi.y + margin {
                        continue;
                    }
                    let dist = l.sdf.eval(pt);
                    if l.occluder && dist < 0.0 {
                        occluded = true;
                    }
                    let cov = (0.5 - dist * k).clamp(0.0, 1.0) * l.alpha;
                    if cov <= 0.0 {
                        continue;
                    }
                    let col = match l.paint {
                        Paint::Flat(c) => c,
                        Paint::Skin { v, r } => {
                            let rr = len(p(pt.x / r.x, pt.y / r.y));
                            v * (1.0 - 0.22 * rr.powi(4).min(1.0))
                        }
                    };
                    let col = if o.features_only && !l.occluder { 0.0 } else { col };
                    v += (col - v) * cov;
                }
                img[y * w + x] = v;
                if !occluded && self.face_clip.eval(q) < 0.0 && self.mask.iter().any(|(sdf, mg)| sdf.eval(q) < *mg) {
                    mask[y * w + x] = 1;
                }
            }
        }
        if o.lighting && !o.features_only {
            for y in 0..h {
                for x in 0..w {
                    let pi = p(x as f64 + 0.5, y as f64 + 0.5);
                    let l = self.light + dot(self.light_grad, (pi - centre) * (1.0 / m));
                    let v = &mut img[y * w + x];
                    *v = ((*v * l - 0.5) * self.contrast + 0.5).clamp(0.0, 1.0).powf(self.gamma);
                }
            }
            if self.blur {
                img = blur3(&img, h, w);
            }
        }
        // Draw the noise whatever the options, so that the stream stays the same.
        let out = img
            .iter()
            .map(|&v| {
                let nz = self.noise * rng.normal();
                let v = if o.noise && !o.features_only { v + nz } else { v };
                ((v.clamp(0.0, 1.0) * 255.0).round() / 255.0) as f32
            })
            .collect();
        (out, mask)
    }
}

/// 3x3 binomial blur with clamped edges.
fn blur3(img: &[f64], h: usize, w: usize) -> Vec<f64> {
    let k = [1.0, 2.0, 1.0];
    let mut out = vec![0.0; h * w];
    for y in 0..h {
        for x in 0..w {
            let mut acc = 0.0;
            for (dy, ky) in k.iter().enumerate() {
                for (dx, kx) in k.iter().enumerate() {
                    let yy = (y + dy).saturating_sub(1).min(h - 1);
                    let xx = (x + dx).saturating_sub(1).min(w - 1);
                    acc += ky * kx * img[yy * w + xx];
                }
            }
            out[y * w + x] = acc / 16.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> SynthOptions {
        SynthOptions { hw: (48, 48), background: false, occluders: false, lighting: false, noise: false, features_only: false }
    }

    #[test]
    fn shifting_the_pose_shifts_image_and_mask() {
        for class in 0..7 {
            let mut rng = image_rng(7, class);
            let mut scene = Scene::sample(class, &mut rng, 48, 48);
            scene.angle = 0.0;
            scene.cx = 24.0;
            scene.cy = 24.0;
            let (a, ma) = scene.render(48, 48, &clean(), &mut rng.clone());
            let (dx, dy) = (3usize, 2usize);
            scene.cx += dx as f64;
            scene.cy += dy as f64;
            let (b, mb) = scene.render(48, 48, &clean(), &mut rng.clone());
            assert!(ma.contains(&1), "class {class}: empty mask");
            for y in 0..48 - dy {
                for x in 0..48 - dx {
                    let (i, j) = (y * 48 + x, (y + dy) * 48 + x + dx);
                    assert!((a[i] - b[j]).abs() <= 1.5 / 255.0, "class {class}: pixel ({x},{y}) {} vs shifted {}", a[i], b[j]);
                    assert_eq!(ma[i], mb[j], "class {class}: mask ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn mask_lies_inside_the_face() {
        for i in 0..70 {
            let mut rng = image_rng(11, i);
            let scene = Scene::sample(i % 7, &mut rng, 48, 48);
            let (_, mask) = scene.render(48, 48, &SynthOptions::default(), &mut rng);
            let (sin, cos) = scene.angle.sin_cos();
            for (k, &mk) in mask.iter().enumerate() {
                if mk == 1 {
                    let d = p((k % 48) as f64 + 0.5 - scene.cx, (k / 48) as f64 + 0.5 - scene.cy);
                    let q = p((cos * d.x + sin * d.y) / scene.s, (-sin * d.x + cos * d.y) / scene.s);
                    assert!(scene.face_clip.eval(q) < 0.0);
                    assert!(q.y > -0.75 && q.y < 0.85 && q.x.abs() < 0.75, "mask pixel at face coords {q:?}");
                }
            }
        }
    }

    #[test]
    fn sdf_signs() {
        let e = Sdf::Ellipse { c: p(0.0, 0.0), r: p(2.0, 1.0) };
        assert!(e.eval(p(0.0, 0.0)) < 0.0 && e.eval(p(2.5, 0.0)) > 0.0);
        assert!((e.eval(p(3.0, 0.0)) - 1.0).abs() < 1e-9);
        let sq = Sdf::Poly(vec![p(0.0, 0.0), p(1.0, 0.0), p(1.0, 1.0), p(0.0, 1.0)]);
        assert!((sq.eval(p(0.5, 0.5)) + 0.5).abs() < 1e-9);
        assert!((sq.eval(p(2.0, 0.5)) - 1.0).abs() < 1e-9);
        let st = Sdf::Stroke { pts: vec![p(0.0, 0.0), p(1.0, 0.0)], r: 0.1 };
        assert!((st.eval(p(0.5, 0.3)) - 0.2).abs() < 1e-9);
    }
}
