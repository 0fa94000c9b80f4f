//! The HTML report: one `report.html` beside its PNG figures, readable offline in any
//! browser. Sections are added in order; every string from the data (class names from
//! folder names, paths) is escaped.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

pub struct Report {
    dir: PathBuf,
    title: String,
    sections: Vec<(String, String)>,
}

impl Report {
    /// A report written into `dir` (created).
    pub fn new(dir: &Path, title: &str) -> Result<Report> {
        std::fs::create_dir_all(dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
        Ok(Report { dir: dir.to_path_buf(), title: title.to_string(), sections: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path inside the report directory for a figure.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A section with raw HTML `body` (callers escape data with `escape`).
    pub fn section(&mut self, heading: &str, body: String) {
        self.sections.push((heading.to_string(), body));
    }

    /// A figure: `name` is a file in the report directory.
    pub fn figure(name: &str, caption: &str) -> String {
        format!(
            "<figure><a href=\"{0}\"><img src=\"{0}\" alt=\"{1}\"></a><figcaption>{1}</figcaption></figure>\n",
            escape(name),
            escape(caption)
        )
    }

    /// Preformatted text (model summaries).
    pub fn pre(text: &str) -> String {
        format!("<pre>{}</pre>\n", escape(text))
    }

    /// A table from a header row (none when every heading is empty) and rows of cells
    /// (escaped).
    pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
        let mut s = String::from("<table>");
        if header.iter().any(|h| !h.is_empty()) {
            s += "<thead><tr>";
            for h in header {
                s += &format!("<th>{}</th>", escape(h));
            }
            s += "</tr></thead>";
        }
        s += "<tbody>\n";
        for r in rows {
            s += "<tr>";
            for c in r {
                s += &format!("<td>{}</td>", escape(c));
            }
            s += "</tr>\n";
        }
        s + "</tbody></table>\n"
    }

    /// Write `report.html` (atomically) and return its path.
    pub fn write(&self) -> Result<PathBuf> {
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>{}</title>\n<style>{STYLE}</style></head><body>\n<h1>{}</h1>\n<nav>",
            escape(&self.title),
            escape(&self.title)
        );
        for (i, (h, _)) in self.sections.iter().enumerate() {
            html += &format!("<a href=\"#s{i}\">{}</a>", escape(h));
        }
        html += "</nav>\n";
        for (i, (h, body)) in self.sections.iter().enumerate() {
            html += &format!("<section id=\"s{i}\"><h2>{}</h2>\n{body}</section>\n", escape(h));
        }
        html += "<footer>made by mien: every number and picture above was computed by WGSL kernels on the GPU named in the header.</footer>\n</body></html>\n";
        let path = self.dir.join("report.html");
        crate::io::write_atomic(&path, html.as_bytes())?;
        Ok(path)
    }
}

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1320px; padding: 0 24px 48px; color: #222; background: #fff; }
h1 { font-weight: 600; margin: 24px 0 8px; }
h2 { font-weight: 600; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
nav { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid #eee; z-index: 1; }
nav a { margin-right: 16px; color: #1f77b4; text-decoration: none; font-size: 14px; }
figure { display: inline-block; margin: 8px 16px 16px 0; vertical-align: top; }
figure img { max-width: 100%; image-rendering: pixelated; border: 1px solid #eee; }
figcaption { font-size: 13px; color: #555; margin-top: 4px; }
pre { background: #f7f7f7; padding: 12px; overflow-x: auto; font-size: 12px; line-height: 1.35; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; }
th { background: #f3f6fa; }
p.note { color: #555; font-size: 14px; }
footer { margin-top: 48px; font-size: 12px; color: #888; }
";

/// The faithfulness table of `scores` with a note on how to read it: one row per method,
/// the random order's AUCs as the first row.
pub fn faithfulness_table(scores: &crate::explain::faithfulness::Scores) -> String {
    let f = |v: f64| if v.is_nan() { "n/a".to_string() } else { format!("{v:.3}") };
    let mut headers = vec!["method", "deletion AUC (lower is better)", "insertion AUC (higher is better)", "randomization |rho| (lower is better)"];
    if scores.pointing_chance.is_some() {
        headers.push("pointing game (higher is better)");
    }
    let mut rows = vec![{
        let mut r = vec!["random order (baseline)".to_string(), f(scores.random_deletion_auc), f(scores.random_insertion_auc), "-".into()];
        if let Some(c) = scores.pointing_chance {
            r.push(format!("{} (chance)", f(c)));
        }
        r
    }];
    for m in &scores.methods {
        let mut r = vec![m.method.clone(), f(m.deletion_auc), f(m.insertion_auc), f(m.randomization_rho)];
        if let Some(p) = m.pointing_game {
            r.push(f(p));
        }
        rows.push(r);
    }
    let fill = match scores.fill {
        crate::explain::faithfulness::Fill::Mean => "the image's mean".to_string(),
        crate::explain::faithfulness::Fill::Value(v) => format!("{v}"),
    };
    let mut note = format!(
        "<p class=\"note\">Measured on {} validation images, each explaining its predicted class. Deletion: the class \
         probability as pixels are replaced by {fill} in the map's order, most important first ({} steps); insertion: as \
         they are put back into a filled image in that order. AUC is the mean area under the curve; compare it with the \
         random order's. Randomization: mean |Spearman rho| between the maps of this model and of the same architecture \
         with random weights (Adebayo et al. 2018): a map that survives randomization does not explain the model.",
        scores.images, scores.steps
    );
    if scores.pointing_chance.is_some() {
        note += " Pointing game: how often a map's maximum falls inside the known expression mask of the built-in faces; \
                 chance is the mask's share of the image.";
    }
    note += "</p>\n";
    note + &Report::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_makes_class_names_from_folders_inert() {
        assert_eq!(escape("<script>\"a&b\"'"), "&lt;script&gt;&quot;a&amp;b&quot;&#39;");
        let t = Report::table(&["class"], &[vec!["<b>Happy</b>".into()]]);
        assert!(t.contains("&lt;b&gt;Happy&lt;/b&gt;") && !t.contains("<b>Happy"));
    }
}
