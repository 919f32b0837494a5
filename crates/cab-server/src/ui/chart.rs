//! Charts drawn on the server as SVG: they need no JavaScript, print in
//! black and white (series differ by shape and dash, not only colour), and
//! name themselves to screen readers, which read the data table beside
//! each chart for the values.

use std::fmt::Write;

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Bars from zero: counts.
    Bar,
    /// A solid line with round points.
    Line,
    /// A dashed line with square points.
    Dashed,
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// One value per label; `None` where there is nothing to show.
    pub values: Vec<Option<f64>>,
    pub mark: Mark,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// Unique on the page; the SVG's title and description ids start with it.
    pub id: String,
    pub title: String,
    /// What the values are, after a number: "deployments", "hours", "%".
    pub unit: String,
    /// The x axis, one per value.
    pub labels: Vec<String>,
    pub series: Vec<Series>,
    /// Values are shares between 0 and 1, shown as percentages.
    pub percent: bool,
}

const W: f64 = 640.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 44.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number for an axis or a sentence: whole when large, one decimal when
/// small.
pub fn number(v: f64) -> String {
    if v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

impl Chart {
    fn show(&self, v: f64) -> String {
        if self.percent {
            format!("{}%", number(v * 100.0))
        } else {
            number(v)
        }
    }

    /// The largest value on the axis: a round number at or above every
    /// value (1 for shares).
    fn top(&self) -> f64 {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .fold(0.0_f64, |m, v| m.max(*v));
        if self.percent {
            return 1.0;
        }
        if max <= 0.0 {
            return 1.0;
        }
        let magnitude = 10f64.powf(max.log10().floor());
        [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|t| *t >= max)
            .unwrap_or(10.0 * magnitude)
    }

    /// A sentence for screen readers: the span, each series' highest and
    /// latest value, and where the values are.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        if let (Some(first), Some(last)) = (self.labels.first(), self.labels.last()) {
            let _ = write!(s, "From {first} to {last}. ");
        }
        for series in &self.series {
            let known: Vec<(usize, f64)> = series
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i, v)))
                .collect();
            match known.iter().max_by(|a, b| a.1.total_cmp(&b.1)) {
                None => {
                    let _ = write!(s, "{}: no data. ", series.name);
                }
                Some((i, max)) => {
                    let latest = known.last().map_or(*max, |(_, v)| *v);
                    let _ = write!(
                        s,
                        "{}: highest {} {} ({}), latest {}. ",
                        series.name,
                        self.show(*max),
                        if self.percent { "" } else { self.unit.as_str() },
                        self.labels.get(*i).map_or("", String::as_str),
                        self.show(latest),
                    );
                }
            }
        }
        s.push_str("The table below gives every value.");
        s.replace("  ", " ")
    }

    pub fn svg(&self) -> String {
        let n = self.labels.len().max(1);
        let plot_w = W - LEFT - RIGHT;
        let plot_h = H - TOP - BOTTOM;
        let step = plot_w / n as f64;
        let top = self.top();
        let y = |v: f64| TOP + plot_h - (v / top).clamp(0.0, 1.0) * plot_h;
        let x = |i: usize| LEFT + step * (i as f64 + 0.5);
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-title {id}-desc" preserveAspectRatio="xMidYMid meet"><title id="{id}-title">{title}</title><desc id="{id}-desc">{desc}</desc>"#,
            id = esc(&self.id),
            title = esc(&self.title),
            desc = esc(&self.summary()),
        );
        // Grid and y axis: 0, half, top.
        for f in [0.0, 0.5, 1.0] {
            let v = top * f;
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}"/><text class="axis" x="{tx}" y="{ty:.1}" text-anchor="end">{label}</text>"#,
                x2 = W - RIGHT,
                yy = y(v),
                tx = LEFT - 6.0,
                ty = y(v) + 4.0,
                label = esc(&self.show(v)),
            );
        }
        // X labels: at most eight, evenly picked.
        let every = n.div_ceil(8).max(1);
        for (i, label) in self.labels.iter().enumerate() {
            if i % every == 0 || i + 1 == n {
                let _ = write!(
                    out,
                    r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    x(i),
                    H - BOTTOM + 18.0,
                    esc(label)
                );
            }
        }
        let bars: Vec<&Series> = self.series.iter().filter(|s| s.mark == Mark::Bar).collect();
        let bar_w = step * 0.7 / bars.len().max(1) as f64;
        for (k, series) in bars.iter().enumerate() {
            for (i, v) in series.values.iter().enumerate() {
                if let Some(v) = v {
                    let left = x(i) - step * 0.35 + bar_w * k as f64;
                    let _ = write!(
                        out,
                        r#"<rect class="bar bar-{k}" x="{left:.1}" y="{top:.1}" width="{w:.1}" height="{h:.1}"/>"#,
                        top = y(*v),
                        w = bar_w.max(1.0),
                        h = (TOP + plot_h - y(*v)).max(0.0),
                    );
                }
            }
        }
        for (k, series) in self
            .series
            .iter()
            .filter(|s| s.mark != Mark::Bar)
            .enumerate()
        {
            let class = if series.mark == Mark::Dashed {
                "line dashed"
            } else {
                "line"
            };
            // A line breaks where a value is missing.
            let mut run: Vec<String> = Vec::new();
            let flush = |run: &mut Vec<String>, out: &mut String| {
                if run.len() > 1 {
                    let _ = write!(
                        out,
                        r#"<polyline class="{class} line-{k}" points="{}"/>"#,
                        run.join(" ")
                    );
                }
                run.clear();
            };
            for (i, v) in series.values.iter().enumerate() {
                match v {
                    Some(v) => {
                        run.push(format!("{:.1},{:.1}", x(i), y(*v)));
                        if series.mark == Mark::Dashed {
                            let _ = write!(
                                out,
                                r#"<rect class="point line-{k}" x="{:.1}" y="{:.1}" width="6" height="6"/>"#,
                                x(i) - 3.0,
                                y(*v) - 3.0
                            );
                        } else {
                            let _ = write!(
                                out,
                                r#"<circle class="point line-{k}" cx="{:.1}" cy="{:.1}" r="3"/>"#,
                                x(i),
                                y(*v)
                            );
                        }
                    }
                    None => flush(&mut run, &mut out),
                }
            }
            flush(&mut run, &mut out);
        }
        out.push_str("</svg>");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(values: Vec<Option<f64>>, mark: Mark, percent: bool) -> Chart {
        Chart {
            id: "c".into(),
            title: "Deployments <per> week".into(),
            unit: "deployments".into(),
            labels: (1..=values.len()).map(|i| format!("W{i}")).collect(),
            series: vec![Series {
                name: "Successful".into(),
                values,
                mark,
            }],
            percent,
        }
    }

    #[test]
    fn the_svg_names_itself_and_escapes_its_words() {
        let svg = chart(vec![Some(3.0), Some(7.0)], Mark::Bar, false).svg();
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"aria-labelledby="c-title c-desc""#));
        assert!(svg.contains("Deployments &lt;per&gt; week"));
        assert!(!svg.contains("<per>"));
        assert_eq!(svg.matches("<rect class=\"bar").count(), 2);
    }

    #[test]
    fn the_axis_tops_at_a_round_number_and_shares_at_one() {
        assert_eq!(chart(vec![Some(7.0)], Mark::Bar, false).top(), 10.0);
        assert_eq!(chart(vec![Some(26.0)], Mark::Bar, false).top(), 50.0);
        assert_eq!(chart(vec![Some(0.2)], Mark::Line, false).top(), 0.2);
        assert_eq!(chart(vec![None], Mark::Line, false).top(), 1.0);
        assert_eq!(chart(vec![Some(0.2)], Mark::Line, true).top(), 1.0);
    }

    #[test]
    fn a_line_breaks_where_a_value_is_missing() {
        let svg = chart(
            vec![Some(1.0), Some(2.0), None, Some(3.0), Some(4.0)],
            Mark::Line,
            false,
        )
        .svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 4);
        let dashed = chart(vec![Some(1.0), Some(2.0)], Mark::Dashed, false).svg();
        assert!(dashed.contains("line dashed"));
        assert_eq!(dashed.matches("class=\"point").count(), 2);
    }

    #[test]
    fn the_summary_gives_the_span_highest_and_latest() {
        let c = chart(vec![Some(0.1), Some(0.25), Some(0.2)], Mark::Line, true);
        assert_eq!(
            c.summary(),
            "From W1 to W3. Successful: highest 25% (W2), latest 20%. The table below gives every value."
        );
        let empty = chart(vec![None, None], Mark::Bar, false);
        assert!(empty.summary().contains("Successful: no data."));
    }
}
