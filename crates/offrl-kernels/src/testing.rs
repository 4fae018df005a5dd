//! A check the kernels' tests and the layers' tests built on them share (public for those tests,
//! not part of the kernels' interface).

/// `a` equals `b` within `tol` relative to the larger of 1 and `b`'s largest magnitude; `what`
/// names the comparison in the failure.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(u, v)| (u - v).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max diff {worst} (scale {scale})"
    );
}
