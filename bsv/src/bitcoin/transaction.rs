//! Legacy (pre-segwit layout) transactions, which is the only layout Bitcoin SV uses.
//!
//! A [`Transaction`] keeps its exact serialization in a shared [`Bytes`] buffer: re-encoding is a
//! copy, cloning is a reference-count increment, and the txid is the double SHA-256 of those
//! bytes. When decoded from a frame, the buffer is a slice of the frame, so a block's
//! transactions share one allocation.
//!
//! Decoding checks the whole layout (every count, script length and var int) but keeps only the
//! bytes, the version and the lock time; inputs and outputs are parsed on first access. Most
//! transactions a peer sends are only hashed, stored or forwarded, and a block's decode then costs
//! one pass over its bytes, with no allocation or reference count per input and output.

use std::fmt;
use std::sync::OnceLock;

use bytes::{BufMut, Bytes, BytesMut};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use super::{
    sha256d, var_bytes_len, write_var_bytes, write_var_int, Decode, DecodeError, Encode, Hash,
    Reader, VarInt,
};

/// Smallest possible serialized transaction: version, two empty counts, lock time.
pub(crate) const MIN_TX_SIZE: usize = 10;
/// Smallest serialized input: outpoint, empty script, sequence.
const MIN_TXIN_SIZE: usize = 36 + 1 + 4;
/// Smallest serialized output: value and empty script.
const MIN_TXOUT_SIZE: usize = 8 + 1;

/// A reference to an output of an earlier transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct OutPoint {
    /// The txid of the transaction holding the output.
    pub txid: Hash,
    /// The output's index in that transaction.
    pub vout: u32,
}

impl OutPoint {
    /// The null outpoint a coinbase input spends.
    pub const NULL: OutPoint = OutPoint {
        txid: Hash::ZERO,
        vout: u32::MAX,
    };
}

impl Encode for OutPoint {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.txid.0);
        out.put_u32_le(self.vout);
    }
    fn encoded_len(&self) -> usize {
        36
    }
}

impl Decode for OutPoint {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(OutPoint {
            txid: r.read()?,
            vout: r.read_u32_le()?,
        })
    }
}

/// A transaction input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxIn {
    /// The output it spends.
    pub prevout: OutPoint,
    /// The unlocking script.
    #[serde(with = "super::serde_hex")]
    pub script_sig: Bytes,
    /// The sequence number.
    pub sequence: u32,
}

impl Encode for TxIn {
    fn encode<B: BufMut>(&self, out: &mut B) {
        self.prevout.encode(out);
        write_var_bytes(out, &self.script_sig);
        out.put_u32_le(self.sequence);
    }
    fn encoded_len(&self) -> usize {
        36 + var_bytes_len(self.script_sig.len()) + 4
    }
}

impl Decode for TxIn {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxIn {
            prevout: r.read()?,
            script_sig: r.read_var_bytes()?,
            sequence: r.read_u32_le()?,
        })
    }
}

/// A transaction output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxOut {
    /// Value in satoshis.
    pub value: i64,
    /// The locking script.
    #[serde(with = "super::serde_hex")]
    pub script_pubkey: Bytes,
}

impl Encode for TxOut {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_i64_le(self.value);
        write_var_bytes(out, &self.script_pubkey);
    }
    fn encoded_len(&self) -> usize {
        8 + var_bytes_len(self.script_pubkey.len())
    }
}

impl Decode for TxOut {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TxOut {
            value: r.read_i64_le()?,
            script_pubkey: r.read_var_bytes()?,
        })
    }
}

/// A transaction, with its exact serialization.
#[derive(Clone)]
pub struct Transaction {
    raw: Bytes,
    version: i32,
    lock_time: u32,
    /// Inputs and outputs, parsed from `raw` on first access (set at once by [`Transaction::new`]).
    parts: OnceLock<Parts>,
}

/// The parsed inputs and outputs of a transaction.
#[derive(Debug, Clone, Default)]
struct Parts {
    inputs: Vec<TxIn>,
    outputs: Vec<TxOut>,
}

impl Parts {
    /// Parses the inputs and outputs of a serialized transaction (sharing its buffer).
    fn parse(raw: &Bytes) -> Result<Parts, DecodeError> {
        let mut r = Reader::from_bytes(raw);
        r.read_i32_le()?;
        let inputs = r.read_list(MIN_TXIN_SIZE)?;
        let outputs = r.read_list(MIN_TXOUT_SIZE)?;
        Ok(Parts { inputs, outputs })
    }
}

impl Transaction {
    /// Builds a transaction from its parts (and serializes it once).
    pub fn new(version: i32, inputs: Vec<TxIn>, outputs: Vec<TxOut>, lock_time: u32) -> Self {
        let len = 4
            + VarInt::size(inputs.len() as u64)
            + inputs.iter().map(Encode::encoded_len).sum::<usize>()
            + VarInt::size(outputs.len() as u64)
            + outputs.iter().map(Encode::encoded_len).sum::<usize>()
            + 4;
        let mut b = BytesMut::with_capacity(len);
        b.put_i32_le(version);
        write_var_int(&mut b, inputs.len() as u64);
        for i in &inputs {
            i.encode(&mut b);
        }
        write_var_int(&mut b, outputs.len() as u64);
        for o in &outputs {
            o.encode(&mut b);
        }
        b.put_u32_le(lock_time);
        Transaction {
            raw: b.freeze(),
            version,
            lock_time,
            parts: OnceLock::from(Parts { inputs, outputs }),
        }
    }

    /// The transaction id: double SHA-256 of the serialization. Computed on each call.
    pub fn txid(&self) -> Hash {
        sha256d(&self.raw)
    }

    /// The exact serialization.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Serialized size in bytes.
    pub fn size(&self) -> usize {
        self.raw.len()
    }

    /// The transaction version.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The inputs (parsed on first access).
    pub fn inputs(&self) -> &[TxIn] {
        &self.parts().inputs
    }

    /// The outputs (parsed on first access).
    pub fn outputs(&self) -> &[TxOut] {
        &self.parts().outputs
    }

    /// The lock time.
    pub fn lock_time(&self) -> u32 {
        self.lock_time
    }

    /// Whether this is a coinbase transaction (one input spending the null outpoint).
    pub fn is_coinbase(&self) -> bool {
        matches!(self.inputs(), [only] if only.prevout == OutPoint::NULL)
    }

    fn parts(&self) -> &Parts {
        // `raw` was either built by `new` (which fills `parts`) or accepted by `decode`, which
        // checked the same layout this parses, so parsing cannot fail. Were it ever to, the
        // transaction would show no inputs or outputs rather than panic.
        self.parts
            .get_or_init(|| Parts::parse(&self.raw).unwrap_or_default())
    }
}

/// Transactions are equal when their serializations are: every field is read from those bytes.
impl PartialEq for Transaction {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Transaction {}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("raw", &self.raw)
            .field("version", &self.version)
            .field("inputs", &self.inputs())
            .field("outputs", &self.outputs())
            .field("lock_time", &self.lock_time)
            .finish()
    }
}

impl Encode for Transaction {
    fn encode<B: BufMut>(&self, out: &mut B) {
        out.put_slice(&self.raw);
    }
    fn encoded_len(&self) -> usize {
        self.raw.len()
    }
}

impl Decode for Transaction {
    /// Checks the layout and keeps the bytes; the inputs and outputs are parsed when first asked
    /// for (see the module documentation).
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let start = r.position();
        let version = r.read_i32_le()?;
        let n_in = r.read_count(MIN_TXIN_SIZE)?;
        for _ in 0..n_in {
            r.read_slice(36)?; // outpoint
            r.read_var_slice()?; // script_sig
            r.read_slice(4)?; // sequence
        }
        let n_out = r.read_count(MIN_TXOUT_SIZE)?;
        for _ in 0..n_out {
            r.read_slice(8)?; // value
            r.read_var_slice()?; // script_pubkey
        }
        let lock_time = r.read_u32_le()?;
        Ok(Transaction {
            raw: r.bytes_since(start),
            version,
            lock_time,
            parts: OnceLock::new(),
        })
    }
}

impl Serialize for Transaction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Transaction", 6)?;
        st.serialize_field("txid", &self.txid())?;
        st.serialize_field("size", &self.size())?;
        st.serialize_field("version", &self.version)?;
        st.serialize_field("inputs", self.inputs())?;
        st.serialize_field("outputs", self.outputs())?;
        st.serialize_field("lock_time", &self.lock_time)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        Transaction::new(
            1,
            vec![TxIn {
                prevout: OutPoint::NULL,
                script_sig: Bytes::from_static(&[1, 2, 3]),
                sequence: u32::MAX,
            }],
            vec![TxOut {
                value: 50_0000_0000,
                script_pubkey: Bytes::from_static(&[0x51]),
            }],
            0,
        )
    }

    #[test]
    fn built_transaction_decodes_back_to_itself() {
        let tx = sample();
        assert_eq!(tx.size(), tx.encoded_len());
        let back = Transaction::decode_exact(tx.raw()).unwrap();
        assert_eq!(back, tx);
        assert_eq!(back.txid(), tx.txid());
        assert!(tx.is_coinbase());
    }

    #[test]
    fn decoded_transaction_parses_its_inputs_and_outputs_on_access() {
        let tx = sample();
        let back = Transaction::decode_exact(tx.raw()).unwrap();
        assert_eq!(back.version(), 1);
        assert_eq!(back.lock_time(), 0);
        assert_eq!(back.inputs(), tx.inputs());
        assert_eq!(back.outputs(), tx.outputs());
        assert_eq!(&back.inputs()[0].script_sig[..], &[1, 2, 3]);
    }

    #[test]
    fn a_bad_script_length_is_refused_when_decoding_not_when_accessing() {
        let mut raw = sample().raw().to_vec();
        // script_sig length 3 written as a 3-byte var int: non-canonical.
        raw.splice(41..42, [0xFD, 0x03, 0x00]);
        assert!(matches!(
            Transaction::decode_exact(&raw),
            Err(DecodeError::NonCanonicalVarInt { offset: 41 })
        ));
    }

    #[test]
    fn truncated_transaction_is_an_error_not_a_panic() {
        let raw = sample().raw().clone();
        for cut in 0..raw.len() {
            assert!(
                Transaction::decode_exact(&raw[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
