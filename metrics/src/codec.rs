//! Little binary helpers shared by the on-disk formats (WAL records, block index): varints,
//! length-prefixed strings, and a bounds-checked reader for untrusted bytes.

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The bytes end early.
    #[error("truncated")]
    Truncated,
    /// A string is not UTF-8.
    #[error("invalid UTF-8: {0}")]
    Utf8(String),
}

/// Appends an unsigned LEB128 varint.
pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

/// Appends a zig-zag signed varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, x: i64) {
    put_uvarint(out, ((x as u64) << 1) ^ ((x >> 63) as u64));
}

/// Appends a length-prefixed string.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn uvarint(&mut self) -> Result<u64, CodecError> {
        let mut x = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            x |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(x);
            }
        }
        Err(CodecError::Truncated)
    }

    pub(crate) fn varint(&mut self) -> Result<i64, CodecError> {
        let ux = self.uvarint()?;
        Ok(((ux >> 1) as i64) ^ -((ux & 1) as i64))
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if n > self.buf.len() {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn string(&mut self) -> Result<String, CodecError> {
        let len = usize::try_from(self.uvarint()?).map_err(|_| CodecError::Truncated)?;
        let b = self.bytes(len)?;
        String::from_utf8(b.to_vec()).map_err(|e| CodecError::Utf8(e.to_string()))
    }

    /// A count of entries, bounded by the remaining bytes (each entry takes at least `min`
    /// bytes) so that a corrupt count cannot make us allocate wildly.
    pub(crate) fn count(&mut self, min: usize) -> Result<usize, CodecError> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| CodecError::Truncated)?;
        if n > self.buf.len() / min.max(1) {
            return Err(CodecError::Truncated);
        }
        Ok(n)
    }
}
