//! Consensus encoding: the [`Encode`]/[`Decode`] traits, the bounds-checked [`Reader`], and the
//! canonical compact-size integer ([`VarInt`]).
//!
//! Decoding never panics and never trusts a length read off the wire: every count is checked
//! against the bytes actually present before anything is allocated for it
//! ([`Reader::read_count`]). The reader keeps its offset so an error can say where the payload
//! went wrong. When the input is a [`Bytes`] buffer, byte strings (scripts, raw transactions) are
//! returned as zero-copy slices of it.

use bytes::{BufMut, Bytes};

/// The largest compact-size value the node accepts (`MAX_SIZE`, `src/serialize.h`).
pub const MAX_VAR_INT: u64 = 0xFFFF_FFFF;

/// Why a payload or primitive failed to decode. Offsets are from the start of the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("unexpected end of data at offset {offset}: needed {needed} more byte(s)")]
    UnexpectedEnd {
        /// Where the value that did not fit starts.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A compact-size integer was not in its shortest form (the node refuses these).
    #[error("non-canonical var int at offset {offset}")]
    NonCanonicalVarInt {
        /// Where the var int starts.
        offset: usize,
    },
    /// A compact-size integer was larger than 0xFFFFFFFF ("size too large" in the node).
    #[error("var int {value} at offset {offset} exceeds the maximum 0xFFFFFFFF")]
    VarIntTooLarge {
        /// Where the var int starts.
        offset: usize,
        /// The value read.
        value: u64,
    },
    /// A field held a value the format does not allow.
    #[error("invalid {field} at offset {offset}: {detail}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// What was wrong with it.
        detail: String,
    },
    /// Bytes were left over after the value was complete.
    #[error("{remaining} trailing byte(s) at offset {offset}")]
    TrailingBytes {
        /// Where the unexpected bytes start.
        offset: usize,
        /// How many there are.
        remaining: usize,
    },
}

impl DecodeError {
    /// The payload offset the error refers to.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::UnexpectedEnd { offset, .. }
            | DecodeError::NonCanonicalVarInt { offset }
            | DecodeError::VarIntTooLarge { offset, .. }
            | DecodeError::Invalid { offset, .. }
            | DecodeError::TrailingBytes { offset, .. } => *offset,
        }
    }
}

/// A bounds-checked cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    owner: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    /// A reader over a borrowed slice; byte strings it returns are copied.
    pub fn new(data: &'a [u8]) -> Self {
        Reader {
            data,
            pos: 0,
            owner: None,
        }
    }

    /// A reader over a shared buffer; byte strings it returns are zero-copy slices of `bytes`.
    pub fn from_bytes(bytes: &'a Bytes) -> Self {
        Reader {
            data: bytes.as_ref(),
            pos: 0,
            owner: Some(bytes),
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The current offset from the start of the input.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails with [`DecodeError::TrailingBytes`] unless everything has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                offset: self.pos,
                remaining: self.remaining(),
            })
        }
    }

    /// An [`DecodeError::Invalid`] error at the current offset.
    pub fn invalid(&self, field: &'static str, detail: impl Into<String>) -> DecodeError {
        DecodeError::Invalid {
            field,
            offset: self.pos,
            detail: detail.into(),
        }
    }

    /// Reads `n` bytes as a borrowed slice.
    pub fn read_slice(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let data: &'a [u8] = self.data;
        match data.get(self.pos..self.pos.saturating_add(n)) {
            Some(s) if self.pos.checked_add(n).is_some() => {
                self.pos += n;
                Ok(s)
            }
            _ => Err(DecodeError::UnexpectedEnd {
                offset: self.pos,
                needed: n - self.remaining().min(n),
            }),
        }
    }

    /// Reads `n` bytes as [`Bytes`] (zero-copy when the reader was built with
    /// [`Reader::from_bytes`]).
    pub fn read_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        let s = self.read_slice(n)?;
        Ok(match self.owner {
            Some(owner) => owner.slice(start..start + n),
            None => Bytes::copy_from_slice(s),
        })
    }

    /// The bytes from offset `start` up to the current position, as [`Bytes`] (zero-copy when
    /// possible). Used to keep the exact serialization of a value just decoded.
    pub fn bytes_since(&self, start: usize) -> Bytes {
        let end = self.pos;
        match (self.owner, self.data.get(start..end)) {
            (Some(owner), Some(_)) => owner.slice(start..end),
            (None, Some(s)) => Bytes::copy_from_slice(s),
            _ => Bytes::new(),
        }
    }

    /// Everything not yet read, as [`Bytes`].
    pub fn read_rest(&mut self) -> Bytes {
        let n = self.remaining();
        self.read_bytes(n).unwrap_or_default()
    }

    /// Reads a fixed-size array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.read_slice(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// Reads one byte.
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.read_array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    pub fn read_u16_le(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.read_array()?))
    }

    /// Reads a big-endian u16 (the port of a network address).
    pub fn read_u16_be(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.read_array()?))
    }

    /// Reads a little-endian u32.
    pub fn read_u32_le(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.read_array()?))
    }

    /// Reads a little-endian i32.
    pub fn read_i32_le(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.read_array()?))
    }

    /// Reads a little-endian u64.
    pub fn read_u64_le(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.read_array()?))
    }

    /// Reads a little-endian i64.
    pub fn read_i64_le(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.read_array()?))
    }

    /// Reads a bool byte; only 0 and 1 are accepted.
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.read_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::Invalid {
                field: "bool",
                offset: at,
                detail: format!("value {v}, expected 0 or 1"),
            }),
        }
    }

    /// Reads a canonical compact-size integer no larger than [`MAX_VAR_INT`].
    pub fn read_var_int(&mut self) -> Result<u64, DecodeError> {
        let offset = self.pos;
        let (value, min) = match self.read_u8()? {
            0xFD => (u64::from(self.read_u16_le()?), 0xFD),
            0xFE => (u64::from(self.read_u32_le()?), 0x1_0000),
            0xFF => (self.read_u64_le()?, 0x1_0000_0000),
            b => return Ok(u64::from(b)),
        };
        if value < min {
            return Err(DecodeError::NonCanonicalVarInt { offset });
        }
        if value > MAX_VAR_INT {
            return Err(DecodeError::VarIntTooLarge { offset, value });
        }
        Ok(value)
    }

    /// Reads an element count and checks that `count` elements of at least `min_size` bytes
    /// each can still be present, so the caller may allocate `count` slots safely.
    pub fn read_count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let count = self.read_var_int()?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let need = count.saturating_mul(min_size.max(1));
        if need > self.remaining() && min_size > 0 {
            return Err(DecodeError::UnexpectedEnd {
                offset,
                needed: need - self.remaining(),
            });
        }
        Ok(count)
    }

    /// Reads a var int length and then that many bytes.
    pub fn read_var_bytes(&mut self) -> Result<Bytes, DecodeError> {
        let offset = self.pos;
        let len = self.read_var_int()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                offset,
                needed: len - self.remaining(),
            });
        }
        self.read_bytes(len)
    }

    /// Reads a var int length and then that many bytes as a borrowed slice (no copy, no
    /// reference count: for fields that are only checked or skipped).
    pub fn read_var_slice(&mut self) -> Result<&'a [u8], DecodeError> {
        let offset = self.pos;
        let len = self.read_var_int()?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                offset,
                needed: len - self.remaining(),
            });
        }
        self.read_slice(len)
    }

    /// Reads a var int length and then that many bytes as text. Invalid UTF-8 is replaced
    /// (as the node sanitizes user agents) rather than failing the whole message.
    pub fn read_var_str(&mut self) -> Result<String, DecodeError> {
        let b = self.read_var_bytes()?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Reads a var string and refuses one longer than `max` bytes.
    pub fn read_var_str_max(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        let offset = self.pos;
        // Measured on the raw bytes, as the node measures them: replacing invalid UTF-8 first
        // would turn each bad byte into three and refuse strings the node accepts.
        let b = self.read_var_bytes()?;
        if b.len() > max {
            return Err(DecodeError::Invalid {
                field,
                offset,
                detail: format!("{} bytes, at most {max} allowed", b.len()),
            });
        }
        Ok(String::from_utf8_lossy(&b).into_owned())
    }

    /// Decodes a value of type `T` at the current position.
    pub fn read<T: Decode>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// Reads a var int count followed by that many values of type `T`, each at least
    /// `min_size` bytes on the wire.
    pub fn read_list<T: Decode>(&mut self, min_size: usize) -> Result<Vec<T>, DecodeError> {
        let n = self.read_count(min_size)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::decode(self)?);
        }
        Ok(v)
    }
}

/// A value with a consensus (wire) encoding.
pub trait Encode {
    /// Appends the encoding to `out`.
    fn encode<B: BufMut>(&self, out: &mut B);

    /// The number of bytes [`Encode::encode`] writes, computed without encoding.
    fn encoded_len(&self) -> usize;

    /// The encoding as a fresh vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        v
    }
}

/// A value that can be decoded from its consensus (wire) encoding.
pub trait Decode: Sized {
    /// Decodes one value at the reader's position.
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a value that must span all of `data`.
    fn decode_exact(data: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(data);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }

    /// Decodes a value that must span all of `data`, sharing its memory where possible.
    fn decode_bytes(data: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::from_bytes(data);
        let v = Self::decode(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A compact-size integer ("CompactSize", var int).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VarInt(pub u64);

impl VarInt {
    /// The encoded size of `n`.
    pub const fn size(n: u64) -> usize {
        if n < 0xFD {
            1
        } else if n <= 0xFFFF {
            3
        } else if n <= 0xFFFF_FFFF {
            5
        } else {
            9
        }
    }
}

/// Appends `n` as a canonical var int.
pub fn write_var_int<B: BufMut>(out: &mut B, n: u64) {
    if n < 0xFD {
        out.put_u8(n as u8);
    } else if n <= 0xFFFF {
        out.put_u8(0xFD);
        out.put_u16_le(n as u16);
    } else if n <= 0xFFFF_FFFF {
        out.put_u8(0xFE);
        out.put_u32_le(n as u32);
    } else {
        out.put_u8(0xFF);
        out.put_u64_le(n);
    }
}

/// Appends a var int length followed by the bytes.
pub fn write_var_bytes<B: BufMut>(out: &mut B, b: &[u8]) {
    write_var_int(out, b.len() as u64);
    out.put_slice(b);
}

/// The encoded size of var bytes of length `len`.
pub const fn var_bytes_len(len: usize) -> usize {
    VarInt::size(len as u64) + len
}

impl Encode for VarInt {
    fn encode<B: BufMut>(&self, out: &mut B) {
        write_var_int(out, self.0)
    }
    fn encoded_len(&self) -> usize {
        VarInt::size(self.0)
    }
}

impl Decode for VarInt {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_var_int().map(VarInt)
    }
}

/// Appends a list: var int count then each element.
pub fn write_list<B: BufMut, T: Encode>(out: &mut B, items: &[T]) {
    write_var_int(out, items.len() as u64);
    for i in items {
        i.encode(out);
    }
}

/// The encoded size of a list written by [`write_list`].
pub fn list_len<T: Encode>(items: &[T]) -> usize {
    VarInt::size(items.len() as u64) + items.iter().map(Encode::encoded_len).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(n: u64) -> Vec<u8> {
        VarInt(n).to_vec()
    }

    #[test]
    fn var_int_round_trips_at_every_boundary() {
        for n in [0, 1, 0xFC, 0xFD, 0xFFFF, 0x1_0000, 0xFFFF_FFFF] {
            let b = enc(n);
            assert_eq!(b.len(), VarInt::size(n));
            assert_eq!(VarInt::decode_exact(&b), Ok(VarInt(n)));
        }
    }

    #[test]
    fn non_canonical_var_ints_are_refused() {
        for b in [
            vec![0xFD, 0xFC, 0x00],
            vec![0xFE, 0xFF, 0xFF, 0x00, 0x00],
            vec![0xFF, 1, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(
                VarInt::decode_exact(&b),
                Err(DecodeError::NonCanonicalVarInt { offset: 0 })
            );
        }
    }

    #[test]
    fn var_int_over_u32_max_is_refused() {
        let b = [0xFF, 0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            VarInt::decode_exact(&b),
            Err(DecodeError::VarIntTooLarge {
                offset: 0,
                value: 0x1_0000_0000
            })
        );
    }

    #[test]
    fn counts_larger_than_the_input_are_refused_before_allocation() {
        let mut r = Reader::new(&[0xFE, 0xFF, 0xFF, 0xFF, 0xFF]);
        assert!(matches!(
            r.read_count(36),
            Err(DecodeError::UnexpectedEnd { offset: 0, .. })
        ));
    }

    #[test]
    fn truncated_reads_report_offset_and_shortfall() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.read_u8(), Ok(1));
        assert_eq!(
            r.read_u32_le(),
            Err(DecodeError::UnexpectedEnd {
                offset: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn zero_copy_reader_shares_the_buffer() {
        let b = Bytes::from_static(b"\x03abcdef");
        let mut r = Reader::from_bytes(&b);
        let s = r.read_var_bytes().unwrap();
        assert_eq!(&s[..], b"abc");
        assert_eq!(s.as_ptr(), b[1..].as_ptr());
    }
}
