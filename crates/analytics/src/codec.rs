//! Byte-level helpers: LEB128 varints, zigzag, a bounds-checked reader.

use crate::DecodeError;

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a blob; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn f64(&mut self) -> Result<f64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// Reads an unsigned varint of at most `bits` significant bits.
    /// Rejects over-long (non-minimal) encodings so that every value has
    /// exactly one encoding.
    fn varint_bits(&mut self, bits: u32) -> Result<u128, DecodeError> {
        let mut v: u128 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8()?;
            let low = u128::from(b & 0x7f);
            if shift >= bits || (bits - shift < 7 && low >> (bits - shift) != 0) {
                return Err(DecodeError::VarintOverflow);
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError::Invalid("non-minimal varint"));
                }
                return Ok(v);
            }
            shift += 7;
        }
    }

    pub(crate) fn varint_u64(&mut self) -> Result<u64, DecodeError> {
        Ok(self.varint_bits(64)? as u64)
    }

    pub(crate) fn varint_u128(&mut self) -> Result<u128, DecodeError> {
        self.varint_bits(128)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_roundtrip_and_limits() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, u128::from(v));
            let mut r = Reader::new(&b);
            assert_eq!(r.varint_u64().unwrap(), v);
            r.finish().unwrap();
        }
        let mut b = Vec::new();
        put_varint(&mut b, u128::MAX);
        assert_eq!(Reader::new(&b).varint_u128().unwrap(), u128::MAX);
        // u64::MAX + 1 does not fit a u64 varint.
        let mut b = Vec::new();
        put_varint(&mut b, u128::from(u64::MAX) + 1);
        assert_eq!(
            Reader::new(&b).varint_u64(),
            Err(DecodeError::VarintOverflow)
        );
        // Non-minimal encodings are rejected.
        assert!(Reader::new(&[0x80, 0x00]).varint_u64().is_err());
        assert_eq!(
            Reader::new(&[0x80]).varint_u64(),
            Err(DecodeError::Truncated)
        );
        assert!(Reader::new(&[0xff; 20]).varint_u64().is_err());
        for v in [0i64, 1, -1, 2071, -2100, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
