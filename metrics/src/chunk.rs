//! Gorilla XOR chunk, bit-compatible in layout with Prometheus `tsdb/chunkenc/xor.go`: a 2-byte
//! big-endian sample count, then the first timestamp as a signed varint and the first value as
//! 64 raw bits, the second timestamp as an unsigned varint delta and every later one as a
//! delta-of-delta in 1/14/17/20/64-bit buckets, values XOR-ed with the previous value.

use crate::labels::Sample;

/// Samples a head chunk holds before a new one is cut (as in Prometheus).
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Why a chunk could not be decoded or appended to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The chunk bytes end before all announced samples were read.
    #[error("chunk truncated after {0} of {1} samples")]
    Truncated(usize, usize),
    /// The chunk is shorter than its 2-byte header.
    #[error("chunk shorter than its header")]
    NoHeader,
    /// A timestamp did not increase.
    #[error("timestamp {0} not after previous timestamp {1}")]
    OutOfOrder(i64, i64),
    /// The chunk already holds `u16::MAX` samples.
    #[error("chunk full")]
    Full,
}

/// Appends bits to a byte vector, most significant bit first.
#[derive(Debug, Clone, Default)]
struct BitWriter {
    bytes: Vec<u8>,
    /// Free bits in the last byte (0 means a new byte is needed).
    free: u8,
}

impl BitWriter {
    fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit && let Some(last) = self.bytes.last_mut() {
            *last |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    fn write_bits(&mut self, value: u64, nbits: u8) {
        for i in (0..nbits).rev() {
            self.write_bit((value >> i) & 1 == 1);
        }
    }

    fn write_byte(&mut self, b: u8) {
        self.write_bits(u64::from(b), 8);
    }
}

/// Reads bits from a byte slice, most significant bit first.
#[derive(Debug, Clone)]
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1 == 1;
        self.pos += 1;
        Some(bit)
    }

    fn read_bits(&mut self, nbits: u8) -> Option<u64> {
        let mut v = 0u64;
        for _ in 0..nbits {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Some(v)
    }

    fn read_uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.read_bits(8)? as u8;
            if shift >= 64 {
                return None;
            }
            x |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(x);
            }
            shift += 7;
        }
    }

    fn read_varint(&mut self) -> Option<i64> {
        let ux = self.read_uvarint()?;
        let x = (ux >> 1) as i64;
        Some(if ux & 1 != 0 { !x } else { x })
    }
}

fn write_uvarint(w: &mut BitWriter, mut x: u64) {
    while x >= 0x80 {
        w.write_byte((x as u8) | 0x80);
        x >>= 7;
    }
    w.write_byte(x as u8);
}

fn write_varint(w: &mut BitWriter, x: i64) {
    let ux = ((x as u64) << 1) ^ ((x >> 63) as u64);
    write_uvarint(w, ux);
}

/// Whether the signed `x` fits the `nbits` bucket of the delta-of-delta encoding.
fn bit_range(x: i64, nbits: u8) -> bool {
    -((1i64 << (nbits - 1)) - 1) <= x && x <= 1i64 << (nbits - 1)
}

/// State shared by the appender and the iterator for the XOR value encoding.
#[derive(Debug, Clone, Copy)]
struct XorState {
    t: i64,
    t_delta: u64,
    v: f64,
    leading: u8,
    trailing: u8,
}

impl XorState {
    fn new() -> Self {
        Self {
            t: 0,
            t_delta: 0,
            v: 0.0,
            leading: 0xff,
            trailing: 0,
        }
    }
}

/// An append-only Gorilla XOR chunk.
#[derive(Debug, Clone)]
pub struct XorChunk {
    w: BitWriter,
    num: u16,
    state: XorState,
    min_t: i64,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    /// An empty chunk.
    pub fn new() -> Self {
        let mut w = BitWriter::default();
        w.write_byte(0);
        w.write_byte(0);
        Self {
            w,
            num: 0,
            state: XorState::new(),
            min_t: i64::MAX,
        }
    }

    /// Rebuilds a chunk from its bytes (as written by [`XorChunk::bytes`]), validating every
    /// sample; the result can be appended to.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ChunkError> {
        let mut chunk = Self::new();
        for s in XorIter::new(bytes)? {
            let s = s?;
            chunk.append(s.t, s.v)?;
        }
        Ok(chunk)
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        usize::from(self.num)
    }

    /// Whether the chunk holds no sample.
    pub fn is_empty(&self) -> bool {
        self.num == 0
    }

    /// Timestamp of the first sample (`i64::MAX` when empty).
    pub fn min_t(&self) -> i64 {
        self.min_t
    }

    /// Timestamp of the last sample (`i64::MIN` when empty).
    pub fn max_t(&self) -> i64 {
        if self.num == 0 {
            i64::MIN
        } else {
            self.state.t
        }
    }

    /// The last sample appended.
    pub fn last(&self) -> Option<Sample> {
        (self.num > 0).then_some(Sample {
            t: self.state.t,
            v: self.state.v,
        })
    }

    /// The encoded bytes, header included.
    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.w.bytes.clone();
        b[..2].copy_from_slice(&self.num.to_be_bytes());
        b
    }

    /// Appends a sample; timestamps must strictly increase.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkError> {
        if self.num == u16::MAX {
            return Err(ChunkError::Full);
        }
        if self.num > 0 && t <= self.state.t {
            return Err(ChunkError::OutOfOrder(t, self.state.t));
        }
        match self.num {
            0 => {
                write_varint(&mut self.w, t);
                self.w.write_bits(v.to_bits(), 64);
                self.min_t = t;
            }
            1 => {
                let t_delta = (t - self.state.t) as u64;
                write_uvarint(&mut self.w, t_delta);
                self.write_value(v);
                self.state.t_delta = t_delta;
            }
            _ => {
                let t_delta = (t - self.state.t) as u64;
                let dod = t_delta.wrapping_sub(self.state.t_delta) as i64;
                match dod {
                    0 => self.w.write_bit(false),
                    d if bit_range(d, 14) => {
                        self.w.write_bits(0b10, 2);
                        self.w.write_bits(d as u64, 14);
                    }
                    d if bit_range(d, 17) => {
                        self.w.write_bits(0b110, 3);
                        self.w.write_bits(d as u64, 17);
                    }
                    d if bit_range(d, 20) => {
                        self.w.write_bits(0b1110, 4);
                        self.w.write_bits(d as u64, 20);
                    }
                    d => {
                        self.w.write_bits(0b1111, 4);
                        self.w.write_bits(d as u64, 64);
                    }
                }
                self.write_value(v);
                self.state.t_delta = t_delta;
            }
        }
        self.state.t = t;
        self.state.v = v;
        self.num += 1;
        Ok(())
    }

    fn write_value(&mut self, v: f64) {
        let delta = v.to_bits() ^ self.state.v.to_bits();
        if delta == 0 {
            self.w.write_bit(false);
            return;
        }
        self.w.write_bit(true);
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;
        let st = &mut self.state;
        if st.leading != 0xff && leading >= st.leading && trailing >= st.trailing {
            self.w.write_bit(false);
            let sig = 64 - st.leading - st.trailing;
            self.w.write_bits(delta >> st.trailing, sig);
        } else {
            st.leading = leading;
            st.trailing = trailing;
            self.w.write_bit(true);
            self.w.write_bits(u64::from(leading), 5);
            let sig = 64 - leading - trailing;
            // 64 significant bits are encoded as 0 in the 6-bit field.
            self.w.write_bits(u64::from(sig) & 0x3f, 6);
            self.w.write_bits(delta >> trailing, sig);
        }
    }

    /// Iterates the samples in timestamp order.
    pub fn iter(&self) -> XorIter<'_> {
        XorIter {
            r: BitReader {
                bytes: &self.w.bytes,
                pos: 16,
            },
            total: self.num,
            read: 0,
            state: XorState::new(),
        }
    }

    /// All samples, decoded.
    pub fn samples(&self) -> Vec<Sample> {
        // A chunk built by `append` always decodes; errors cannot occur here.
        self.iter().map_while(Result::ok).collect()
    }
}

/// Iterator over the samples of encoded chunk bytes; yields an error once and then stops when
/// the bytes are malformed.
#[derive(Debug, Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    state: XorState,
}

impl<'a> XorIter<'a> {
    /// An iterator over untrusted chunk bytes (header included).
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        if bytes.len() < 2 {
            return Err(ChunkError::NoHeader);
        }
        let total = u16::from_be_bytes([bytes[0], bytes[1]]);
        Ok(Self {
            r: BitReader { bytes, pos: 16 },
            total,
            read: 0,
            state: XorState::new(),
        })
    }

    fn next_sample(&mut self) -> Option<Sample> {
        let st = &mut self.state;
        match self.read {
            0 => {
                st.t = self.r.read_varint()?;
                st.v = f64::from_bits(self.r.read_bits(64)?);
            }
            1 => {
                st.t_delta = self.r.read_uvarint()?;
                st.t = st.t.wrapping_add(st.t_delta as i64);
                self.read_value()?;
            }
            _ => {
                let mut prefix = 0u8;
                for _ in 0..4 {
                    if !self.r.read_bit()? {
                        break;
                    }
                    prefix += 1;
                }
                let size = match prefix {
                    0 => 0,
                    1 => 14,
                    2 => 17,
                    3 => 20,
                    _ => 64,
                };
                let mut dod = 0i64;
                if size > 0 {
                    let bits = self.r.read_bits(size)?;
                    dod = bits as i64;
                    if size < 64 && bits > (1u64 << (size - 1)) {
                        dod = bits as i64 - (1i64 << size);
                    }
                }
                let st = &mut self.state;
                st.t_delta = st.t_delta.wrapping_add(dod as u64);
                st.t = st.t.wrapping_add(st.t_delta as i64);
                self.read_value()?;
            }
        }
        Some(Sample {
            t: self.state.t,
            v: self.state.v,
        })
    }

    fn read_value(&mut self) -> Option<()> {
        if !self.r.read_bit()? {
            return Some(());
        }
        let st = &mut self.state;
        if self.r.read_bit()? {
            st.leading = self.r.read_bits(5)? as u8;
            let mut sig = self.r.read_bits(6)? as u8;
            if sig == 0 {
                sig = 64;
            }
            st.trailing = 64u8.checked_sub(st.leading + sig)?;
        } else if st.leading == 0xff {
            return None;
        }
        let sig = 64 - st.leading - st.trailing;
        let bits = self.r.read_bits(sig)?;
        let delta = if st.trailing >= 64 {
            0
        } else {
            bits << st.trailing
        };
        st.v = f64::from_bits(st.v.to_bits() ^ delta);
        Some(())
    }
}

impl Iterator for XorIter<'_> {
    type Item = Result<Sample, ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.read >= self.total {
            return None;
        }
        match self.next_sample() {
            Some(s) => {
                self.read += 1;
                Some(Ok(s))
            }
            None => {
                let err = ChunkError::Truncated(usize::from(self.read), usize::from(self.total));
                self.read = self.total;
                Some(Err(err))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::{is_stale_nan, stale_nan};
    use proptest::prelude::*;

    fn roundtrip(samples: &[(i64, f64)]) -> Vec<Sample> {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v).unwrap();
        }
        let bytes = c.bytes();
        XorIter::new(&bytes)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    #[test]
    fn regular_series_is_compact_and_exact() {
        let samples: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, (i * 3) as f64))
            .collect();
        let mut c = XorChunk::new();
        for &(t, v) in &samples {
            c.append(t, v).unwrap();
        }
        // Regular 15 s scrapes of a slowly growing counter take a few bytes a sample.
        assert!(c.bytes().len() < 120 * 3, "{} bytes", c.bytes().len());
        let back = roundtrip(&samples);
        assert_eq!(back.len(), 120);
        for (s, (t, v)) in back.iter().zip(&samples) {
            assert_eq!((s.t, s.v.to_bits()), (*t, v.to_bits()));
        }
    }

    #[test]
    fn staleness_marker_survives_bit_exact() {
        let back = roundtrip(&[
            (1000, 1.0),
            (2000, stale_nan()),
            (3000, f64::NAN),
            (4000, 2.0),
        ]);
        assert!(is_stale_nan(back[1].v));
        assert!(back[2].v.is_nan() && !is_stale_nan(back[2].v));
        assert_eq!(back[3].v, 2.0);
    }

    #[test]
    fn rejects_non_increasing_timestamps() {
        let mut c = XorChunk::new();
        c.append(10, 1.0).unwrap();
        assert_eq!(c.append(10, 2.0), Err(ChunkError::OutOfOrder(10, 10)));
        assert_eq!(c.append(5, 2.0), Err(ChunkError::OutOfOrder(5, 10)));
    }

    #[test]
    fn truncated_bytes_give_an_error_not_a_panic() {
        let mut c = XorChunk::new();
        for i in 0..50 {
            c.append(i * 1000 + (i * i) % 7, (i as f64).sin()).unwrap();
        }
        let bytes = c.bytes();
        for cut in 0..bytes.len() {
            let res: Result<Vec<_>, _> = match XorIter::new(&bytes[..cut]) {
                Ok(it) => it.collect(),
                Err(e) => Err(e),
            };
            assert!(res.is_err(), "cut at {cut} decoded fully");
        }
    }

    proptest! {
        #[test]
        fn roundtrip_any_samples(
            start in -1_000_000_000_000i64..1_000_000_000_000i64,
            steps in proptest::collection::vec((1i64..10_000_000_000i64, any::<u64>()), 1..SAMPLES_PER_CHUNK),
        ) {
            let mut t = start;
            let mut samples = Vec::new();
            for (dt, bits) in steps {
                samples.push((t, f64::from_bits(bits)));
                t += dt;
            }
            let back = roundtrip(&samples);
            prop_assert_eq!(back.len(), samples.len());
            for (s, (t, v)) in back.iter().zip(&samples) {
                prop_assert_eq!(s.t, *t);
                prop_assert_eq!(s.v.to_bits(), v.to_bits());
            }
            let mut c = XorChunk::new();
            for &(t, v) in &samples { c.append(t, v).unwrap(); }
            let rebuilt = XorChunk::from_bytes(&c.bytes()).unwrap();
            prop_assert_eq!(rebuilt.bytes(), c.bytes());
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(it) = XorIter::new(&bytes) {
                for _ in it {}
            }
        }
    }
}
