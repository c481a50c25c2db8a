//! PNG line charts for the report (plotters' bitmap backend). Text is
//! drawn with ab_glyph from a TTF file, so no system font library is
//! needed; without the font the charts are skipped and the report says so.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::register_font;

use crate::Config;

/// DejaVu Sans, from Debian's `fonts-dejavu-core` (`make bench` installs it).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Line colours, distinct on white (blue, orange, green, purple, brown).
const COLORS: [(u8, u8, u8); 5] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (148, 103, 189),
    (140, 86, 75),
];

/// An axis label: no decimals for large values, a few for small ones.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows.
pub struct Chart<'a> {
    /// File name under the plots directory.
    pub file: &'a str,
    pub title: &'a str,
    pub x: &'a str,
    pub y: &'a str,
    pub log_x: bool,
    pub log_y: bool,
    /// A horizontal line (value, label), e.g. a goal.
    pub goal: Option<(f64, &'a str)>,
}

/// Registers the font once; false when it cannot be read.
fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| match std::fs::read(FONT) {
        Ok(bytes) => {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
        }
        Err(_) => false,
    })
}

/// The common case: a line chart with one line per series.
#[allow(clippy::too_many_arguments)]
pub fn lines(
    cfg: &Config,
    file: &str,
    title: &str,
    x: &str,
    y: &str,
    log_y: bool,
    series: &[Series],
    goal: Option<(f64, &str)>,
) -> String {
    chart(
        cfg,
        &Chart {
            file,
            title,
            x,
            y,
            log_x: true,
            log_y,
            goal,
        },
        series,
    )
}

/// Draws `series` into `<plots>/<file>` and returns the Markdown that
/// shows it (or a note why it is missing).
pub fn chart(cfg: &Config, c: &Chart, series: &[Series]) -> String {
    if !font_ready() {
        return format!(
            "(plot `{}` skipped: font {FONT} missing; apt-get install fonts-dejavu-core)",
            c.file
        );
    }
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if let Some((g, _)) = c.goal {
        y0 = y0.min(g);
        y1 = y1.max(g);
    }
    if x0 > x1 {
        return format!("(plot `{}` skipped: no data)", c.file);
    }
    let pad = |lo: f64, hi: f64, log: bool| {
        if log {
            let lo = if lo > 0.0 { lo } else { hi.max(1e-9) / 1000.0 };
            (lo / 1.5, hi * 1.5)
        } else {
            // Linear axes start at zero, so that a flat line looks flat.
            (lo.min(0.0), hi + (hi - lo.min(0.0)).max(1e-9) * 0.12)
        }
    };
    let (x0, x1) = pad(x0, x1, c.log_x);
    let (y0, y1) = pad(y0, y1, c.log_y);
    std::fs::create_dir_all(&cfg.plots).expect("plots directory");
    let path = cfg.plots.join(c.file);
    let r = match (c.log_x, c.log_y) {
        (true, true) => draw(&path, c, series, (x0..x1).log_scale(), (y0..y1).log_scale()),
        (true, false) => draw(&path, c, series, (x0..x1).log_scale(), y0..y1),
        (false, true) => draw(&path, c, series, x0..x1, (y0..y1).log_scale()),
        (false, false) => draw(&path, c, series, x0..x1, y0..y1),
    };
    match r {
        Ok(()) => format!("![{}]({}/{})", c.title, cfg.plots_link, c.file),
        Err(e) => format!("(plot `{}` failed: {e})", c.file),
    }
}

fn draw<X, Y>(
    path: &Path,
    c: &Chart,
    series: &[Series],
    xr: X,
    yr: Y,
) -> Result<(), Box<dyn std::error::Error>>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let root = BitMapBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut ch = ChartBuilder::on(&root)
        .caption(c.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(xr, yr)?;
    ch.configure_mesh()
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .x_desc(c.x)
        .y_desc(c.y)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, s) in series.iter().enumerate() {
        let (r, g, b) = COLORS[i % COLORS.len()];
        let color = RGBColor(r, g, b).to_rgba();
        ch.draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        ch.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    if let Some((g, label)) = c.goal {
        let (xa, xb) = {
            let r = ch.x_range();
            (r.start, r.end)
        };
        ch.draw_series(LineSeries::new(vec![(xa, g), (xb, g)], RED.stroke_width(1)))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], RED.stroke_width(1)));
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 13))
        .draw()?;
    root.present()?;
    Ok(())
}
