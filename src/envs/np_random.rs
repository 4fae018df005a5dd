//! numpy's default generator, bit for bit: `np.random.Generator(np.random.PCG64(SeedSequence(seed)))`,
//! which is what gymnasium's `reset(seed=...)` installs as `env.np_random`. Reproducing it lets
//! native environments start from exactly the states gymnasium's would for the same seed.

/// numpy's `SeedSequence(entropy)` (no spawn key, pool size 4) reduced to `generate_state`.
struct SeedSequence {
    pool: [u32; 4],
}

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;

impl SeedSequence {
    fn new(entropy: u64) -> Self {
        // `_int_to_uint32_array`: little-endian 32-bit words, at least one.
        let words: Vec<u32> = if entropy >> 32 == 0 {
            vec![entropy as u32]
        } else {
            vec![entropy as u32, (entropy >> 32) as u32]
        };
        let mut hash_const = INIT_A;
        let mut hashmix = |value: u32| {
            let mut v = value ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_A);
            v = v.wrapping_mul(hash_const);
            v ^ (v >> XSHIFT)
        };
        let mix = |x: u32, y: u32| {
            let r = MIX_MULT_L
                .wrapping_mul(x)
                .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
            r ^ (r >> XSHIFT)
        };
        let mut pool = [0u32; 4];
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(words.get(i).copied().unwrap_or(0));
        }
        for src in 0..4 {
            for dst in 0..4 {
                if src != dst {
                    let h = hashmix(pool[src]);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        Self { pool }
    }

    /// `generate_state(n, np.uint64)`.
    fn generate_state_u64(&self, n: usize) -> Vec<u64> {
        let mut hash_const = INIT_B;
        let words: Vec<u32> = (0..2 * n)
            .map(|i| {
                let mut v = self.pool[i % 4] ^ hash_const;
                hash_const = hash_const.wrapping_mul(MULT_B);
                v = v.wrapping_mul(hash_const);
                v ^ (v >> XSHIFT)
            })
            .collect();
        words
            .chunks(2)
            .map(|w| w[0] as u64 | ((w[1] as u64) << 32))
            .collect()
    }
}

const PCG_MULT: u128 = 0x2360_ed05_1fc6_5da4_4385_df64_9fcc_f645;

/// numpy's `PCG64` (XSL-RR 128/64) seeded from a `SeedSequence`, with `Generator.uniform`.
#[derive(Debug, Clone)]
pub struct NpRandom {
    state: u128,
    inc: u128,
}

impl NpRandom {
    /// The generator gymnasium's `reset(seed=seed)` creates.
    pub fn new(seed: u64) -> Self {
        let v = SeedSequence::new(seed).generate_state_u64(4);
        let init_state = ((v[0] as u128) << 64) | v[1] as u128;
        let init_seq = ((v[2] as u128) << 64) | v[3] as u128;
        let mut rng = Self {
            state: 0,
            inc: (init_seq << 1) | 1,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(init_state);
        rng.step();
        rng
    }

    /// A generator seeded from OS entropy, as gymnasium does when `reset` never got a seed.
    pub fn from_entropy() -> Self {
        Self::new(rand::random())
    }

    /// gymnasium's `reset(seed=…)` rule for an environment's generator `slot`: a seed
    /// installs a fresh generator, no seed keeps the current one (seeded from entropy the
    /// first time).
    pub fn on_reset(slot: &mut Option<NpRandom>, seed: Option<u64>) -> &mut NpRandom {
        if let Some(seed) = seed {
            *slot = Some(NpRandom::new(seed));
        }
        slot.get_or_insert_with(NpRandom::from_entropy)
    }

    fn step(&mut self) {
        self.state = self.state.wrapping_mul(PCG_MULT).wrapping_add(self.inc);
    }

    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let s = self.state;
        ((s >> 64) as u64 ^ s as u64).rotate_right((s >> 122) as u32)
    }

    /// Uniform in [0, 1) with 53 random bits (`random_standard_uniform`).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `Generator.uniform(low, high)` for one element (arrays draw element by element in order).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Known answers printed by numpy 2.4.6:
    // `np.random.SeedSequence(s).generate_state(4, np.uint64)` and
    // `np.random.Generator(np.random.PCG64(s)).uniform([-pi, -1], [pi, 1])`.
    #[test]
    fn seed_sequence_matches_numpy() {
        assert_eq!(
            SeedSequence::new(0).generate_state_u64(4),
            vec![
                0xdb2cd7e7b0f478be,
                0xabf4641a2c71ba49,
                0x20c6ed6d9d7b8d41,
                0x2c4099de223c39d4
            ]
        );
        assert_eq!(
            SeedSequence::new((1 << 40) + 7).generate_state_u64(4),
            vec![
                0x0d8672e10e3d1a15,
                0x9aef4ada4ecfa161,
                0x999c1c3b83dba903,
                0x408927dc0dc8a316
            ]
        );
    }

    #[test]
    fn uniform_matches_numpy() {
        // Bit patterns of numpy's draws for seeds 0 and 123456789.
        for (seed, bits) in [
            (0, [0x3feb89ac06c69d18_u64, 0xbfdd77a103be9318]),
            (123456789, [0xc007bd600f839f6a, 0x3fea075fab6574f2]),
        ] {
            let mut rng = NpRandom::new(seed);
            let th = rng.uniform(-std::f64::consts::PI, std::f64::consts::PI);
            let thdot = rng.uniform(-1.0, 1.0);
            assert_eq!(
                [th.to_bits(), thdot.to_bits()],
                bits,
                "seed {seed}: {th} {thdot}"
            );
        }
    }
}
