//! PNG line charts (plotters, bitmap backend): loss curves, learning curves, and distributions
//! drawn as histogram outlines.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};

/// Draw one or more `(label, [(x, y)])` series into a PNG.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(&str, &[(f64, f64)])],
) -> Result<()> {
    let err = |e: String| Error::io(path, std::io::Error::other(e));
    let points = series
        .iter()
        .flat_map(|(_, pts)| pts.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Ok(()); // nothing to draw
    }
    if x1 - x0 < 1e-12 {
        x1 = x0 + 1.0;
    }
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    let (y0, y1) = (y0 - pad, y1 + pad);

    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// Bins of [`histogram_chart`].
const HISTOGRAM_BINS: usize = 40;

/// Draw the distributions of samples as histogram outlines on shared bins: each series' fraction
/// of its (finite) values per bin, over the pooled range.
pub fn histogram_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    samples: &[(&str, &[f64])],
) -> Result<()> {
    let finite = || {
        samples
            .iter()
            .flat_map(|(_, v)| v.iter())
            .filter(|v| v.is_finite())
    };
    let lo = finite().copied().fold(f64::INFINITY, f64::min);
    let hi = finite().copied().fold(f64::NEG_INFINITY, f64::max);
    if lo > hi {
        return Ok(()); // nothing to draw
    }
    let width = ((hi - lo) / HISTOGRAM_BINS as f64).max(1e-12);
    let outlines: Vec<Vec<(f64, f64)>> = samples
        .iter()
        .map(|(_, values)| {
            let mut counts = [0usize; HISTOGRAM_BINS];
            for v in values.iter().filter(|v| v.is_finite()) {
                counts[(((v - lo) / width) as usize).min(HISTOGRAM_BINS - 1)] += 1;
            }
            let total = counts.iter().sum::<usize>().max(1) as f64;
            // A step outline: each bin's fraction held across its width.
            counts
                .iter()
                .enumerate()
                .flat_map(|(i, &c)| {
                    let (x0, f) = (lo + i as f64 * width, c as f64 / total);
                    [(x0, f), (x0 + width, f)]
                })
                .collect()
        })
        .collect();
    let series: Vec<(&str, &[(f64, f64)])> = samples
        .iter()
        .zip(&outlines)
        .map(|((label, _), pts)| (*label, pts.as_slice()))
        .collect();
    line_chart(path, title, x_label, &series)
}
