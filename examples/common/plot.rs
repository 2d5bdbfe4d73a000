//! Training curves as a small self-contained SVG (two panels: loss and
//! held-out accuracy per epoch), so the examples need no plotting crate.

use std::fmt::Write;

pub struct Series<'a> {
    pub title: &'a str,
    pub values: &'a [f64],
    pub color: &'a str,
    /// Printed after each tick value (`"%"`).
    pub unit: &'a str,
}

fn panel(svg: &mut String, s: &Series<'_>, x0: f64, y0: f64, w: f64, h: f64) {
    let (pad_l, pad_b, pad_t) = (56.0, 32.0, 28.0);
    let (pw, ph) = (w - pad_l - 16.0, h - pad_b - pad_t);
    let (lo, hi) = s.values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let span = hi - lo;
    let (lo, hi) = (lo - 0.05 * span, hi + 0.05 * span);
    let n = s.values.len().max(2);
    let px = |i: usize| x0 + pad_l + pw * i as f64 / (n - 1) as f64;
    let py = |v: f64| y0 + pad_t + ph * (1.0 - (v - lo) / (hi - lo));
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#,
        x0 + pad_l,
        y0 + 18.0,
        s.title
    );
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888"/>"##,
        x0 + pad_l,
        y0 + pad_t
    );
    // Enough decimals to tell the ticks apart.
    let prec = (2.0 - ((hi - lo) / 4.0).log10().floor()).clamp(0.0, 4.0) as usize;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = py(v);
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{v:.prec$}{}</text>"##,
            x0 + pad_l,
            x0 + pad_l + pw,
            x0 + pad_l - 4.0,
            y + 4.0,
            s.unit
        );
    }
    for (i, _) in s.values.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            px(i),
            y0 + pad_t + ph + 16.0,
            i + 1
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">epoch</text>"#,
        x0 + pad_l + pw / 2.0,
        y0 + h - 2.0
    );
    let pts: Vec<String> = s.values.iter().enumerate().map(|(i, &v)| format!("{:.1},{:.1}", px(i), py(v))).collect();
    let _ = write!(svg, r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#, s.color, pts.join(" "));
    for (i, &v) in s.values.iter().enumerate() {
        let _ = write!(svg, r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{}"/>"#, px(i), py(v), s.color);
    }
}

/// An SVG document with one panel per series, side by side.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    let (w, h) = (420.0, 300.0);
    let total_w = w * series.len() as f64;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="12" y="20" font-size="15">{title}</text>"#,
        h + 30.0
    );
    for (i, s) in series.iter().enumerate() {
        panel(&mut svg, s, w * i as f64, 30.0, w, h);
    }
    svg.push_str("</svg>\n");
    svg
}
