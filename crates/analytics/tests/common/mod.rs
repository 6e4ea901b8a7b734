//! Deterministic test-data generators: xorshift64* + Box–Muller.
#![allow(dead_code)]

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        // splitmix the seed so that small seeds give unrelated streams
        Rng(splitmix64(seed) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Pareto with scale xm and shape a (heavy tail for a near 1).
    pub fn pareto(&mut self, xm: f64, a: f64) -> f64 {
        xm / (1.0 - self.uniform()).powf(1.0 / a)
    }

    /// Weibull with scale l and shape k.
    pub fn weibull(&mut self, l: f64, k: f64) -> f64 {
        l * (-(1.0 - self.uniform()).ln()).powf(1.0 / k)
    }

    /// Equal mixture of log-normals with medians 10 and 100, sigma 0.3:
    /// symmetric in log space, so its median is sqrt(1000).
    pub fn bimodal(&mut self) -> f64 {
        if self.next_u64() & 1 == 0 {
            self.lognormal(10.0, 0.3)
        } else {
            self.lognormal(100.0, 0.3)
        }
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A named generator of test data.
pub type Gen = (&'static str, fn(&mut Rng) -> f64);

pub fn families() -> Vec<Gen> {
    vec![
        ("lognormal(50,1)", |r| r.lognormal(50.0, 1.0)),
        ("uniform(0,1000)", |r| r.uniform() * 1000.0),
        ("bimodal", |r| r.bimodal()),
        ("pareto(1,1.1)", |r| r.pareto(1.0, 1.1)),
        ("10% zeros + lognormal", |r| {
            if r.next_u64() % 10 == 0 {
                0.0
            } else {
                r.lognormal(5.0, 2.0)
            }
        }),
    ]
}
