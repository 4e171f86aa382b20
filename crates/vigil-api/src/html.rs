//! The drift report as one self-contained HTML file: no scripts, no external assets, an inline
//! SVG per feature comparing the reference and current distributions. Every text is escaped.

use vigil_core::drift::Verdict;
use vigil_core::monitor::{DriftCheck, Distribution, feature_json};

pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn svg(d: &Distribution) -> String {
    let (labels, r, c): (Vec<String>, &[f64], &[f64]) = match d {
        Distribution::Numeric { edges, reference, current } => {
            let l = edges.windows(2).map(|w| format!("{:.4}–{:.4}", w[0], w[1])).collect();
            (l, reference, current)
        }
        Distribution::Categorical { categories, reference, current } => (categories.clone(), reference, current),
    };
    let (w, h, pad) = (640.0, 180.0, 24.0);
    let n = r.len().max(1) as f64;
    let max = r.iter().chain(c).copied().fold(0.0f64, f64::max).max(1e-12);
    let bw = (w - 2.0 * pad) / n;
    let mut out = format!(r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img">"#);
    for (i, (rv, cv)) in r.iter().zip(c).enumerate() {
        let x = pad + bw * i as f64;
        let rh = (h - 2.0 * pad) * rv / max;
        let ch = (h - 2.0 * pad) * cv / max;
        let label = esc(labels.get(i).map(String::as_str).unwrap_or(""));
        out.push_str(&format!(
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#9aa5b1"><title>reference {label}: {:.2}%</title></rect>"##,
            x, h - pad - rh, bw * 0.48, rh, rv * 100.0
        ));
        out.push_str(&format!(
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d9480f"><title>current {label}: {:.2}%</title></rect>"##,
            x + bw * 0.5, h - pad - ch, bw * 0.48, ch, cv * 100.0
        ));
    }
    if let (Some(first), Some(last)) = (labels.first(), labels.last()) {
        out.push_str(&format!(r#"<text x="{pad}" y="{}" font-size="10">{}</text>"#, h - 6.0, esc(first)));
        out.push_str(&format!(r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>"#, w - pad, h - 6.0, esc(last)));
    }
    out.push_str("</svg>");
    out
}

/// Renders a drift check of `model_ref` as HTML.
pub fn drift_report_html(model_ref: &str, check: &DriftCheck) -> String {
    let r = &check.report;
    let mut html = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift report</title><style>");
    html.push_str("body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2933}table{border-collapse:collapse}td,th{border:1px solid #cbd2d9;padding:4px 8px;text-align:left;font-size:14px}.drift{color:#b42318;font-weight:600}.warning{color:#b54708}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}");
    html.push_str("</style></head><body>");
    html.push_str(&format!(
        "<h1>Drift report: {}</h1><p>Status: <strong class=\"{}\">{}</strong> · report {} · baseline v{} ({} rows) · window {} rows</p>",
        esc(model_ref),
        esc(r.status.as_str()),
        esc(r.status.as_str()),
        esc(&check.report_id),
        check.baseline.baseline_version,
        check.baseline.rows,
        check.window_rows
    ));
    html.push_str("<h2>Recommendations</h2><ul>");
    for rec in &r.recommendations {
        html.push_str(&format!("<li>{}</li>", esc(rec)));
    }
    html.push_str("</ul><h2>Features</h2><table><tr><th>feature</th><th>test</th><th>statistic</th><th>p</th><th>adjusted p</th><th>effect</th><th>value</th><th>threshold</th><th>verdict</th><th>why</th></tr>");
    let mut order: Vec<usize> = (0..r.features.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(r.features[i].verdict));
    for &i in &order {
        let f = &r.features[i];
        let j = feature_json(f);
        let fmt = |k: &str| j[k].as_f64().map(|x| format!("{x:.4e}")).unwrap_or_else(|| "–".into());
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td></tr>",
            esc(&f.name), f.test, fmt("statistic"), fmt("p_value"), fmt("adjusted_p"), f.effect.as_str(), fmt("effect_value"), fmt("threshold"),
            f.verdict.as_str(), f.verdict.as_str(), esc(&f.reason)
        ));
    }
    html.push_str("</table>");
    if !r.data_quality.is_empty() {
        html.push_str("<h2>Data quality</h2><ul>");
        for q in &r.data_quality {
            html.push_str(&format!("<li>{}: {} ({})</li>", esc(&q.feature), esc(&q.detail), q.kind));
        }
        html.push_str("</ul>");
    }
    html.push_str("<h2>Distributions</h2><p class=\"legend\"><span style=\"background:#9aa5b1\"></span>reference<span style=\"background:#d9480f\"></span>current</p>");
    for &i in &order {
        let f = &r.features[i];
        if let Some((_, d)) = check.distributions.iter().find(|(n, _)| n == &f.name) {
            let mark = if f.verdict == Verdict::Drift { " — drift" } else { "" };
            html.push_str(&format!("<h3>{}{}</h3>{}", esc(&f.name), mark, svg(d)));
        }
    }
    html.push_str("<h2>Conventions</h2><table>");
    for (k, v) in &r.conventions {
        html.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
    }
    html.push_str("</table></body></html>\n");
    html
}
