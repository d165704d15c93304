//! The large fixed-size lists (`inv`, `getdata` and `notfound` of 36-byte entries, `headers` of
//! 81-byte entries), decoded and encoded in bulk.
//!
//! These are the largest messages after blocks (50,000 inventory vectors make 1.8 MB, 2,000
//! headers 162 kB), and reading them field by field through [`Reader`] cost 0.3–0.45 × the
//! frame's checksum on top of it (docs/BENCHMARKS.md, "Small messages and codec goals"): a bounds
//! check and an error path per field, and a capacity check per push. Here the count is checked
//! against the bytes present first ([`Reader::read_count`]), exactly as before; only then is the
//! whole body taken as one slice, viewed as fixed-size arrays (`as_chunks`), and each entry
//! built from its array, whose field offsets are checked when compiling. The vector is sized
//! from the count once the bytes are known to be there, so a count off the wire never reserves
//! memory for entries that have not arrived. Encoding writes entries into a stack block and
//! appends whole blocks, so the output buffer is checked once per block, not twice per entry.

use bytes::BufMut;

use crate::bitcoin::{
    write_var_int, BlockHeader, DecodeError, Hash, InvType, InvVect, Reader, HEADER_SIZE,
    INV_VECT_SIZE,
};

/// One `headers` entry on the wire: the 80-byte header and its transaction count, which the node
/// always sends as 0 (a one-byte var int).
const HEADERS_ENTRY_SIZE: usize = HEADER_SIZE + 1;

/// Entries written to the stack before each append when encoding (a block of 2,304 bytes for
/// inventory vectors, 5,184 for headers).
const ENCODE_BATCH: usize = 64;

/// The first var int byte that announces a longer var int (0xFD, 0xFE, 0xFF).
const VAR_INT_MARKER_MIN: u8 = 0xFD;

/// Reads a list of inventory vectors that must be the rest of the payload.
pub(super) fn read_inv_list(r: &mut Reader<'_>) -> Result<Vec<InvVect>, DecodeError> {
    // `read_count` refuses a count whose entries cannot all be present, so the product below
    // fits; the saturating multiply keeps that an error rather than a wrap if it ever changed.
    let n = r.read_count(INV_VECT_SIZE)?;
    let body = r.read_slice(n.saturating_mul(INV_VECT_SIZE))?;
    r.finish()?;
    let (entries, _) = body.as_chunks::<INV_VECT_SIZE>();
    Ok(entries.iter().map(inv_from_wire).collect())
}

/// Reads a `headers` body that must be the rest of the payload: a count, then per header the
/// 80 bytes and a transaction count, read and ignored as the node does (`ProcessHeadersMessage`
/// reads it with `ReadCompactSize` and assumes 0).
pub(super) fn read_headers(r: &mut Reader<'_>) -> Result<Vec<BlockHeader>, DecodeError> {
    let start = r.clone();
    let n = r.read_count(HEADERS_ENTRY_SIZE)?;
    // The bulk path: every entry is exactly 81 bytes (every transaction count fits in one
    // byte), which is what the node sends. Anything else (longer var ints, trailing bytes)
    // goes through the field-by-field reader from the count on, which reports the same errors
    // as always.
    if r.remaining() == n.saturating_mul(HEADERS_ENTRY_SIZE) {
        let mut bulk = r.clone();
        let body = bulk.read_slice(r.remaining())?;
        let (entries, _) = body.as_chunks::<HEADERS_ENTRY_SIZE>();
        if entries.iter().all(|e| e[HEADER_SIZE] < VAR_INT_MARKER_MIN) {
            *r = bulk;
            return Ok(entries.iter().map(header_from_wire).collect());
        }
    }
    *r = start;
    read_headers_by_field(r)
}

/// The field-by-field `headers` reader, for bodies the bulk path does not take.
fn read_headers_by_field(r: &mut Reader<'_>) -> Result<Vec<BlockHeader>, DecodeError> {
    let n = r.read_count(HEADERS_ENTRY_SIZE)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.read()?);
        r.read_var_int()?;
    }
    r.finish()?;
    Ok(v)
}

/// An inventory vector from its 36 wire bytes: the type (u32, little-endian) and the hash.
fn inv_from_wire(e: &[u8; INV_VECT_SIZE]) -> InvVect {
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&e[4..]);
    InvVect {
        inv_type: InvType::from_u32(u32::from_le_bytes([e[0], e[1], e[2], e[3]])),
        hash: Hash(hash),
    }
}

/// A block header from a `headers` entry (its first 80 bytes; the transaction count is ignored).
fn header_from_wire(e: &[u8; HEADERS_ENTRY_SIZE]) -> BlockHeader {
    let word = |at: usize| [e[at], e[at + 1], e[at + 2], e[at + 3]];
    let mut prev_hash = [0u8; 32];
    prev_hash.copy_from_slice(&e[4..36]);
    let mut merkle_root = [0u8; 32];
    merkle_root.copy_from_slice(&e[36..68]);
    BlockHeader {
        version: i32::from_le_bytes(word(0)),
        prev_hash: Hash(prev_hash),
        merkle_root: Hash(merkle_root),
        time: u32::from_le_bytes(word(68)),
        bits: u32::from_le_bytes(word(72)),
        nonce: u32::from_le_bytes(word(76)),
    }
}

/// Appends a list of inventory vectors: the count, then each entry.
pub(super) fn write_inv_list<B: BufMut>(out: &mut B, items: &[InvVect]) {
    write_var_int(out, items.len() as u64);
    write_batched::<B, InvVect, INV_VECT_SIZE>(out, items, |e, v| {
        let (ty, hash) = e.split_at_mut(4);
        ty.copy_from_slice(&v.inv_type.to_u32().to_le_bytes());
        hash.copy_from_slice(&v.hash.0);
    });
}

/// Appends a `headers` body: the count, then each header followed by a zero transaction count.
pub(super) fn write_headers<B: BufMut>(out: &mut B, items: &[BlockHeader]) {
    write_var_int(out, items.len() as u64);
    write_batched::<B, BlockHeader, HEADERS_ENTRY_SIZE>(out, items, |e, h| {
        e[0..4].copy_from_slice(&h.version.to_le_bytes());
        e[4..36].copy_from_slice(&h.prev_hash.0);
        e[36..68].copy_from_slice(&h.merkle_root.0);
        e[68..72].copy_from_slice(&h.time.to_le_bytes());
        e[72..76].copy_from_slice(&h.bits.to_le_bytes());
        e[76..80].copy_from_slice(&h.nonce.to_le_bytes());
        e[HEADER_SIZE] = 0;
    });
}

/// Writes `items` as `N`-byte entries, [`ENCODE_BATCH`] at a time through a stack block.
fn write_batched<B: BufMut, T, const N: usize>(
    out: &mut B,
    items: &[T],
    fill: impl Fn(&mut [u8; N], &T),
) {
    let mut block = [[0u8; N]; ENCODE_BATCH];
    for batch in items.chunks(ENCODE_BATCH) {
        for (entry, item) in block.iter_mut().zip(batch) {
            fill(entry, item);
        }
        let used = &block[..batch.len()];
        out.put_slice(used.as_flattened());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::{write_list, Encode};

    fn sample_inv(n: u32) -> Vec<InvVect> {
        (0..n)
            .map(|i| InvVect {
                inv_type: InvType::from_u32(i % 7),
                hash: Hash([i as u8; 32]),
            })
            .collect()
    }

    fn sample_headers(n: u32) -> Vec<BlockHeader> {
        (0..n)
            .map(|i| BlockHeader {
                version: -(i as i32),
                prev_hash: Hash([i as u8; 32]),
                merkle_root: Hash([!(i as u8); 32]),
                time: i.wrapping_mul(7),
                bits: 0x1d00_ffff ^ i,
                nonce: i.wrapping_mul(0x9E37_79B9),
            })
            .collect()
    }

    #[test]
    fn inventory_lists_encode_as_the_generic_list_writer_does_and_read_back() {
        for n in [0, 1, 63, 64, 65, 200] {
            let items = sample_inv(n);
            let (mut bulk, mut generic) = (Vec::new(), Vec::new());
            write_inv_list(&mut bulk, &items);
            write_list(&mut generic, &items);
            assert_eq!(bulk, generic, "{n} entries");
            let mut r = Reader::new(&bulk);
            assert_eq!(read_inv_list(&mut r), Ok(items));
        }
    }

    #[test]
    fn headers_encode_field_by_field_and_read_back_through_both_paths() {
        for n in [0, 1, 64, 65, 130] {
            let items = sample_headers(n);
            let mut bulk = Vec::new();
            write_headers(&mut bulk, &items);
            let mut expected = Vec::new();
            write_var_int(&mut expected, u64::from(n));
            for h in &items {
                h.encode(&mut expected);
                expected.push(0);
            }
            assert_eq!(bulk, expected, "{n} headers");
            assert_eq!(read_headers(&mut Reader::new(&bulk)), Ok(items.clone()));
            assert_eq!(read_headers_by_field(&mut Reader::new(&bulk)), Ok(items));
        }
    }

    #[test]
    fn a_header_with_a_long_transaction_count_is_read_by_field() {
        let items = sample_headers(2);
        let mut b = Vec::new();
        write_var_int(&mut b, 2);
        items[0].encode(&mut b);
        b.extend_from_slice(&[0xFD, 0x00, 0x01]); // 256, canonical, ignored
        items[1].encode(&mut b);
        b.push(0);
        assert_eq!(read_headers(&mut Reader::new(&b)), Ok(items));
    }

    #[test]
    fn malformed_headers_fail_exactly_as_the_field_reader_fails() {
        let items = sample_headers(3);
        let mut good = Vec::new();
        write_headers(&mut good, &items);
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // A marker byte where the count is, with the body exactly 3 × 81 long.
        let mut marker = good.clone();
        marker[1 + HEADER_SIZE] = 0xFD;
        cases.push(marker);
        let mut non_canonical = good.clone();
        non_canonical[1 + HEADER_SIZE] = 0xFD;
        non_canonical.extend_from_slice(&[0, 0]);
        cases.push(non_canonical);
        let mut trailing = good.clone();
        trailing.push(7);
        cases.push(trailing);
        cases.push(good[..good.len() - 1].to_vec());
        let mut too_many = good.clone();
        too_many[0] = 4;
        cases.push(too_many);
        for (i, case) in cases.iter().enumerate() {
            let bulk = read_headers(&mut Reader::new(case));
            let by_field = read_headers_by_field(&mut Reader::new(case));
            assert!(bulk.is_err(), "case {i}");
            assert_eq!(bulk, by_field, "case {i}");
        }
    }

    #[test]
    fn malformed_inventory_lists_fail_as_the_generic_reader_fails() {
        let items = sample_inv(3);
        let mut good = Vec::new();
        write_inv_list(&mut good, &items);
        let generic = |b: &[u8]| {
            let mut r = Reader::new(b);
            let v: Result<Vec<InvVect>, _> = r.read_list(INV_VECT_SIZE);
            v.and_then(|v| r.finish().map(|()| v))
        };
        let mut trailing = good.clone();
        trailing.push(1);
        let mut too_many = good.clone();
        too_many[0] = 4;
        let cases = [
            trailing,
            good[..good.len() - 1].to_vec(),
            too_many,
            vec![0xFF; 9],
            vec![],
        ];
        for (i, case) in cases.iter().enumerate() {
            let bulk = read_inv_list(&mut Reader::new(case));
            assert!(bulk.is_err(), "case {i}");
            assert_eq!(bulk, generic(case), "case {i}");
        }
    }
}
