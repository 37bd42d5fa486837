//! Line and bar charts as standalone SVG (no fonts or scripts needed; any browser shows them),
//! for the curves of Figs. 4-6 and Table 7.

use std::fmt::Write;

/// One curve: a name for the legend and its points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f32, f32)>,
}

/// A line chart with axes, ticks, labels and a legend.
#[derive(Clone, Debug, PartialEq)]
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range; `None` fits the data (from 0 when all values are non-negative).
    pub y_range: Option<(f32, f32)>,
    pub width: u32,
    pub height: u32,
}

impl LinePlot {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: vec![],
            y_range: None,
            width: 360,
            height: 260,
        }
    }

    pub fn series(mut self, name: &str, points: Vec<(f32, f32)>) -> Self {
        self.series.push(Series { name: name.into(), points });
        self
    }

    pub fn y_range(mut self, lo: f32, hi: f32) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let pts: Vec<(f32, f32)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let (x0, x1) = span(pts.iter().map(|p| p.0), false);
        let (y0, y1) = self.y_range.unwrap_or_else(|| span(pts.iter().map(|p| p.1), true));
        let mut f = Frame::new(self.width, self.height, (x0, x1), (y0, y1), &self.title, &self.x_label, &self.y_label);
        for (i, s) in self.series.iter().enumerate() {
            let colour = colour(i);
            let path: Vec<String> = s
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", f.px(x), f.py(y)))
                .collect();
            let _ = write!(
                f.out,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                path.join(" ")
            );
            for p in &path {
                if let Some((x, y)) = p.split_once(',') {
                    let _ = write!(f.out, r#"<circle cx="{x}" cy="{y}" r="1.8" fill="{colour}"/>"#);
                }
            }
        }
        let names: Vec<&str> = self.series.iter().map(|s| s.name.as_str()).collect();
        f.legend(&names);
        f.finish()
    }
}

/// A bar chart: one group per category, one bar per series within the group.
#[derive(Clone, Debug, PartialEq)]
pub struct BarPlot {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    /// `(series name, one value per category)`.
    pub series: Vec<(String, Vec<f32>)>,
    pub y_range: Option<(f32, f32)>,
    pub width: u32,
    pub height: u32,
}

impl BarPlot {
    pub fn new(title: &str, y_label: &str, categories: Vec<String>) -> Self {
        Self {
            title: title.into(),
            y_label: y_label.into(),
            categories,
            series: vec![],
            y_range: None,
            width: 360,
            height: 260,
        }
    }

    pub fn series(mut self, name: &str, values: Vec<f32>) -> Self {
        self.series.push((name.into(), values));
        self
    }

    pub fn y_range(mut self, lo: f32, hi: f32) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    pub fn svg(&self) -> String {
        let n = self.categories.len().max(1) as f32;
        let (y0, y1) = self.y_range.unwrap_or_else(|| {
            span(self.series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite()), true)
        });
        let mut f = Frame::new(self.width, self.height, (0.0, n), (y0, y1), &self.title, "", &self.y_label);
        f.x_ticks = false;
        let k = self.series.len().max(1) as f32;
        for (si, (_, values)) in self.series.iter().enumerate() {
            let colour = colour(si);
            for (ci, &v) in values.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let left = ci as f32 + 0.1 + 0.8 * si as f32 / k;
                let (xa, xb) = (f.px(left), f.px(left + 0.8 / k));
                let (ya, yb) = (f.py(v.max(y0)), f.py(y0.max(0.0).min(y1)));
                let _ = write!(
                    f.out,
                    r#"<rect x="{xa:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"><title>{v}</title></rect>"#,
                    ya.min(yb),
                    (xb - xa).max(0.5),
                    (yb - ya).abs()
                );
            }
        }
        for (ci, c) in self.categories.iter().enumerate() {
            let x = f.px(ci as f32 + 0.5);
            let y = f.bottom + 14.0;
            let _ = write!(f.out, r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle">{}</text>"#, escape(c));
        }
        let names: Vec<&str> = self.series.iter().map(|s| s.0.as_str()).collect();
        if names.len() > 1 {
            f.legend(&names);
        }
        f.finish()
    }
}

/// Plot area and axes shared by the charts.
struct Frame {
    out: String,
    left: f32,
    right: f32,
    top: f32,
    bottom: f32,
    x: (f32, f32),
    y: (f32, f32),
    x_ticks: bool,
    x_label: String,
}

impl Frame {
    fn new(w: u32, h: u32, x: (f32, f32), y: (f32, f32), title: &str, x_label: &str, y_label: &str) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="10"><rect width="{w}" height="{h}" fill="white"/>"#
        );
        let (left, right, top, bottom) = (48.0, w as f32 - 10.0, 24.0, h as f32 - 34.0);
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="14" text-anchor="middle" font-size="12" font-weight="bold">{}</text>"#,
            (left + right) / 2.0,
            escape(title)
        );
        let _ = write!(
            out,
            r#"<text transform="translate(12,{:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (top + bottom) / 2.0,
            escape(y_label)
        );
        Self { out, left, right, top, bottom, x, y, x_ticks: true, x_label: x_label.into() }
    }

    fn px(&self, v: f32) -> f32 {
        self.left + (v - self.x.0) / (self.x.1 - self.x.0).max(f32::MIN_POSITIVE) * (self.right - self.left)
    }

    fn py(&self, v: f32) -> f32 {
        self.bottom - (v - self.y.0) / (self.y.1 - self.y.0).max(f32::MIN_POSITIVE) * (self.bottom - self.top)
    }

    fn legend(&mut self, names: &[&str]) {
        for (i, n) in names.iter().enumerate().take(12) {
            let y = self.top + 4.0 + 11.0 * i as f32;
            let x = self.right - 4.0;
            let _ = write!(
                self.out,
                r#"<text x="{x:.1}" y="{:.1}" text-anchor="end" fill="{}">{}</text>"#,
                y + 4.0,
                colour(i),
                escape(n)
            );
        }
    }

    fn finish(mut self) -> String {
        let (l, r, t, b) = (self.left, self.right, self.top, self.bottom);
        let _ = write!(self.out, r##"<path d="M{l},{t} L{l},{b} L{r},{b}" fill="none" stroke="#333"/>"##);
        for v in ticks(self.y.0, self.y.1) {
            let y = self.py(v);
            let _ = write!(
                self.out,
                r##"<line x1="{:.1}" x2="{l}" y1="{y:.1}" y2="{y:.1}" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                l - 3.0,
                l - 5.0,
                y + 3.0,
                label(v)
            );
        }
        if self.x_ticks {
            for v in ticks(self.x.0, self.x.1) {
                let x = self.px(v);
                let _ = write!(
                    self.out,
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{b}" y2="{:.1}" stroke="#333"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    b + 3.0,
                    b + 13.0,
                    label(v)
                );
            }
        }
        let _ = write!(
            self.out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text></svg>"#,
            (l + r) / 2.0,
            b + 28.0,
            escape(&self.x_label)
        );
        self.out
    }
}

/// A padded range of `values`; from 0 when `from_zero` and all are non-negative.
fn span(values: impl Iterator<Item = f32>, from_zero: bool) -> (f32, f32) {
    let (mut lo, mut hi) = values.fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if from_zero && lo >= 0.0 {
        lo = 0.0;
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    (lo, hi)
}

/// About five round tick values covering `[lo, hi]`.
pub fn ticks(lo: f32, hi: f32) -> Vec<f32> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) || !lo.is_finite() || !hi.is_finite() {
        return vec![];
    }
    let raw = (hi - lo) / 5.0;
    let mag = 10f32.powf(raw.log10().floor());
    let count = |s: f32| ((hi / s).floor() - (lo / s).ceil()) as i64 + 1;
    let step = [0.5, 1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .min_by_key(|&s| ((count(s) - 6).abs(), -(s * 1e6 / mag) as i64))
        .unwrap_or(mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f32 * step).collect()
}

fn label(v: f32) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

fn colour(i: usize) -> &'static str {
    const C: [&str; 10] =
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
    C[i % C.len()]
}

/// Escapes text for SVG/HTML.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// SVG documents of one size `w x h` side by side in one SVG (each nested at its offset).
pub fn side_by_side(svgs: &[String], w: u32, h: u32) -> String {
    let total = w * svgs.len() as u32;
    let mut out =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{h}" viewBox="0 0 {total} {h}">"#);
    for (i, s) in svgs.iter().enumerate() {
        // Nested <svg> elements take x/y; strip the xmlns so the inner element stays plain.
        let inner =
            s.replacen("<svg xmlns=\"http://www.w3.org/2000/svg\"", &format!("<svg x=\"{}\" y=\"0\"", i as u32 * w), 1);
        out.push_str(&inner);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_inside() {
        let labels = |lo, hi| ticks(lo, hi).into_iter().map(label).collect::<Vec<_>>().join(" ");
        assert_eq!(labels(0.0, 1.0), "0 0.2 0.4 0.6 0.8 1");
        assert_eq!(labels(-60.0, 60.0), "-60 -40 -20 0 20 40 60");
        assert!(ticks(1.0, 1.0).is_empty());
    }

    #[test]
    fn line_plot_maps_points_into_the_frame() {
        let svg = LinePlot::new("t <1>", "x", "y").series("a", vec![(0.0, 0.0), (1.0, 1.0)]).y_range(0.0, 1.0).svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // Width 360: x from 48 to 350; height 260: y from 226 (bottom) to 24 (top).
        assert!(svg.contains(r#"points="48.0,226.0 350.0,24.0""#), "{svg}");
        assert!(svg.contains("t &lt;1&gt;"));
        let bars = BarPlot::new("b", "acc", vec!["conv1".into(), "fc7".into()]).series("s", vec![0.5, 1.0]).svg();
        assert_eq!(bars.matches("<rect x=").count(), 2);
    }

    #[test]
    fn side_by_side_nests_each_document_at_its_offset() {
        let a = r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="5"></svg>"#.to_string();
        let out = side_by_side(&[a.clone(), a], 10, 5);
        assert!(out.starts_with(r#"<svg xmlns="http://www.w3.org/2000/svg" width="20" height="5""#), "{out}");
        assert!(out.contains(r#"<svg x="0" y="0""#) && out.contains(r#"<svg x="10" y="0""#), "{out}");
        assert_eq!(out.matches("xmlns").count(), 1);
    }
}
