//! The values of one float column: owned, or shared with memory that Arrow manages (a Parquet or
//! Arrow file's decoded buffers, a pyarrow table, a NumPy array handed over from Python).
//!
//! Sharing is what makes a dataset zero-copy on the way in and out: a column read from a
//! single-chunk Arrow table or a C-ordered float32 NumPy array keeps that memory, and Arrow
//! readers get the same memory back. Reads see a `&[f32]` either way; the first write to shared
//! values takes a private copy (copy on write), so a dataset never writes into someone else's
//! buffer.

use std::fmt;
use std::ops::{Deref, DerefMut};

use arrow_buffer::ScalarBuffer;

#[derive(Clone)]
pub enum Floats {
    /// Values this dataset allocated (built row by row, converted from f64, reordered).
    Owned(Vec<f32>),
    /// Values in a reference-counted Arrow buffer, possibly shared with other owners.
    Shared(ScalarBuffer<f32>),
}

impl Floats {
    pub fn with_capacity(n: usize) -> Self {
        Floats::Owned(Vec::with_capacity(n))
    }

    /// The values as a growable vector: shared values are copied first.
    pub fn make_mut(&mut self) -> &mut Vec<f32> {
        if let Floats::Shared(b) = self {
            *self = Floats::Owned(b.to_vec());
        }
        match self {
            Floats::Owned(v) => v,
            Floats::Shared(_) => unreachable!("made owned above"),
        }
    }

    pub fn push(&mut self, v: f32) {
        self.make_mut().push(v);
    }

    pub fn extend_from_slice(&mut self, v: &[f32]) {
        self.make_mut().extend_from_slice(v);
    }

    pub fn clear(&mut self) {
        *self = Floats::Owned(Vec::new());
    }

    /// Values `range` as an Arrow buffer: a view of shared values, a copy of owned ones.
    pub fn arrow(&self, start: usize, end: usize) -> ScalarBuffer<f32> {
        match self {
            Floats::Shared(b) => b.slice(start, end - start),
            Floats::Owned(v) => ScalarBuffer::from(v[start..end].to_vec()),
        }
    }

    /// Owned values move into an Arrow buffer (no copy); shared ones stay as they are. After
    /// this, [`Floats::arrow`] never copies.
    pub fn share(&mut self) {
        if let Floats::Owned(v) = self {
            *self = Floats::Shared(ScalarBuffer::from(std::mem::take(v)));
        }
    }

    pub fn is_shared(&self) -> bool {
        matches!(self, Floats::Shared(_))
    }
}

impl Default for Floats {
    fn default() -> Self {
        Floats::Owned(Vec::new())
    }
}

impl Deref for Floats {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        match self {
            Floats::Owned(v) => v,
            Floats::Shared(b) => b,
        }
    }
}

impl DerefMut for Floats {
    fn deref_mut(&mut self) -> &mut [f32] {
        self.make_mut()
    }
}

impl From<Vec<f32>> for Floats {
    fn from(v: Vec<f32>) -> Self {
        Floats::Owned(v)
    }
}

impl From<ScalarBuffer<f32>> for Floats {
    fn from(b: ScalarBuffer<f32>) -> Self {
        Floats::Shared(b)
    }
}

impl PartialEq for Floats {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl PartialEq<Vec<f32>> for Floats {
    fn eq(&self, other: &Vec<f32>) -> bool {
        **self == **other
    }
}

impl fmt::Debug for Floats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl Extend<f32> for Floats {
    fn extend<I: IntoIterator<Item = f32>>(&mut self, iter: I) {
        self.make_mut().extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_values_are_copied_on_write_and_viewed_on_export() {
        let buffer = ScalarBuffer::from(vec![1.0f32, 2.0, 3.0]);
        let mut a = Floats::from(buffer.clone());
        // A view, not a copy: the same memory.
        assert_eq!(a.arrow(1, 3).as_ptr(), buffer[1..].as_ptr());
        a[0] = 9.0;
        assert!(!a.is_shared());
        assert_eq!(&*a, &[9.0, 2.0, 3.0]);
        assert_eq!(
            &buffer[..],
            &[1.0, 2.0, 3.0],
            "the shared buffer is untouched"
        );
        let p = a.as_ptr();
        a.share();
        assert_eq!(
            a.arrow(0, 3).as_ptr(),
            p,
            "sharing moves the vector, no copy"
        );
    }
}
