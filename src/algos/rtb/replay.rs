//! The replay buffer of past on-policy samples ([`super::ReplayConfig`]): a ring of states, each
//! with the k ends of its trajectories, sampled uniformly with replacement; saved whole in
//! checkpoints so that a resumed run replays what the uninterrupted one would.

use burn::tensor::{Device, Tensor};
use rand::Rng;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct ReplayBuffer {
    capacity: usize,
    obs_dim: usize,
    act_dim: usize,
    /// Values per entry's ends: k · act_dim.
    ends_len: usize,
    obs: Vec<f32>,
    ends: Vec<f32>,
    /// The slot the next entry goes to once the buffer is full.
    next: usize,
}

impl ReplayBuffer {
    pub fn new(capacity: usize, obs_dim: usize, k: usize, act_dim: usize) -> Self {
        Self {
            capacity,
            obs_dim,
            act_dim,
            ends_len: k * act_dim,
            obs: Vec::new(),
            ends: Vec::new(),
            next: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.obs.len() / self.obs_dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }

    /// Add the states `obs` (`[b, obs_dim]`) with their trajectories' ends (`[b·k, act_dim]`,
    /// state-major).
    pub fn push(&mut self, obs: &Tensor<2>, ends: &Tensor<2>) {
        let (o, e) = (
            crate::nn::to_vec(obs.clone()),
            crate::nn::to_vec(ends.clone()),
        );
        let (od, el) = (self.obs_dim, self.ends_len);
        for (row, end) in o.chunks_exact(od).zip(e.chunks_exact(el)) {
            if self.len() < self.capacity {
                self.obs.extend_from_slice(row);
                self.ends.extend_from_slice(end);
            } else {
                let i = self.next;
                self.obs[i * od..(i + 1) * od].copy_from_slice(row);
                self.ends[i * el..(i + 1) * el].copy_from_slice(end);
                self.next = (i + 1) % self.capacity;
            }
        }
    }

    /// `b` entries drawn uniformly: their states `[b, obs_dim]` and ends `[b·k, act_dim]`;
    /// `None` while the buffer is empty.
    pub fn sample(
        &self,
        b: usize,
        rng: &mut impl Rng,
        device: &Device,
    ) -> Option<(Tensor<2>, Tensor<2>)> {
        if self.is_empty() {
            return None;
        }
        let (od, el) = (self.obs_dim, self.ends_len);
        let (mut obs, mut ends) = (Vec::with_capacity(b * od), Vec::with_capacity(b * el));
        for _ in 0..b {
            let i = rng.random_range(0..self.len());
            obs.extend_from_slice(&self.obs[i * od..(i + 1) * od]);
            ends.extend_from_slice(&self.ends[i * el..(i + 1) * el]);
        }
        let ad = self.act_dim;
        Some((
            crate::nn::tensor2(&obs, b, od, device),
            crate::nn::tensor2(&ends, ends.len() / ad, ad, device),
        ))
    }

    /// The buffer as checkpoint bytes: `len`, `next` (u64 LE), then the states and ends (f32 LE).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 4 * (self.obs.len() + self.ends.len()));
        out.extend_from_slice(&(self.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.next as u64).to_le_bytes());
        for v in self.obs.iter().chain(&self.ends) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Restore [`ReplayBuffer::to_bytes`]'s contents into a buffer of this shape.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let bad = |m: String| Error::InvalidData(format!("replay buffer in checkpoint: {m}"));
        let word = |i: usize| -> Result<usize> {
            let b = bytes
                .get(i * 8..(i + 1) * 8)
                .ok_or_else(|| bad("truncated header".into()))?;
            Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        };
        let (len, next) = (word(0)?, word(1)?);
        let floats = len * (self.obs_dim + self.ends_len);
        if len > self.capacity || next >= self.capacity.max(1) || bytes.len() != 16 + 4 * floats {
            return Err(bad(format!(
                "{len} entries, {} bytes: not a buffer of capacity {} with {} + {} values per entry",
                bytes.len(),
                self.capacity,
                self.obs_dim,
                self.ends_len
            )));
        }
        let values: Vec<f32> = bytes[16..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let split = len * self.obs_dim;
        self.obs = values[..split].to_vec();
        self.ends = values[split..].to_vec();
        self.next = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_full_buffer_overwrites_its_oldest_entries_and_round_trips_through_bytes() {
        let device = Device::flex();
        let mut buf = ReplayBuffer::new(3, 2, 2, 1);
        for i in 0..5 {
            let v = i as f32;
            let obs = crate::nn::tensor2(&[v, v], 1, 2, &device);
            let ends = crate::nn::tensor2(&[10.0 + v, 20.0 + v], 2, 1, &device);
            buf.push(&obs, &ends);
        }
        // Entries 0 and 1 were overwritten by 3 and 4.
        assert_eq!(buf.len(), 3);
        let mut seen: Vec<f32> = buf.obs.chunks(2).map(|r| r[0]).collect();
        seen.sort_by(f32::total_cmp);
        assert_eq!(seen, vec![2.0, 3.0, 4.0]);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let (obs, ends) = buf.sample(4, &mut rng, &device).unwrap();
        assert_eq!((obs.dims(), ends.dims()), ([4, 2], [8, 1]));
        let (o, e) = (crate::nn::to_vec(obs), crate::nn::to_vec(ends));
        for (j, row) in o.chunks(2).enumerate() {
            assert_eq!(e[2 * j], 10.0 + row[0], "each state keeps its own ends");
        }
        let mut back = ReplayBuffer::new(3, 2, 2, 1);
        back.restore(&buf.to_bytes()).unwrap();
        assert_eq!(back, buf);
        assert!(ReplayBuffer::new(2, 2, 2, 1)
            .restore(&buf.to_bytes())
            .is_err());
        assert!(back.restore(&buf.to_bytes()[..20]).is_err());
    }
}
