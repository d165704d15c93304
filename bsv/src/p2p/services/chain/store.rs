//! The header chain's file (`HeaderChainConfig::store_path`): every accepted header, appended
//! as its 80 raw bytes in the order it was accepted (a parent always before its children), so a
//! restart re-reads them instead of downloading them again.
//!
//! Layout: a 96-byte file header — the 8 bytes `BSVHDRS1`, the network's 4-byte wire magic,
//! the start point's height (u32 little-endian) and its 80-byte header (genesis, or the
//! checkpoint) — then 80-byte records. A crash can leave a torn last record: opening ignores
//! and cuts it, so later appends stay aligned. Loading re-validates every record (linkage and
//! proof of work, in the service); the file is trusted for nothing but saving bandwidth.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::bitcoin::{BlockHeader, Decode, Encode, Network, Reader, HEADER_SIZE};
use crate::p2p::error::{P2pError, Result};

/// The first bytes of every header file (format version 1).
const FILE_MAGIC: &[u8; 8] = b"BSVHDRS1";
/// Size of the file header.
pub(crate) const FILE_HEADER_LEN: usize = 8 + 4 + 4 + HEADER_SIZE;

/// An open header file, ready for appends.
#[derive(Debug)]
pub(crate) struct HeaderFile {
    path: PathBuf,
    out: BufWriter<File>,
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> P2pError {
    P2pError::HeaderFile {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn encode_header(h: &BlockHeader) -> [u8; HEADER_SIZE] {
    let mut b = [0u8; HEADER_SIZE];
    h.encode(&mut &mut b[..]);
    b
}

impl HeaderFile {
    /// Opens (or creates) the file at `path` for `network` starting at `base` (height
    /// `base_height`), and returns it with the headers it holds after the start point. A file
    /// of another network, or of another start point, is an error.
    pub(crate) fn open(
        path: &Path,
        network: Network,
        base: &BlockHeader,
        base_height: u32,
    ) -> Result<(HeaderFile, Vec<BlockHeader>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| file_error(path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| file_error(path, e))?;
        let mut expected = Vec::with_capacity(FILE_HEADER_LEN);
        expected.extend_from_slice(FILE_MAGIC);
        expected.extend_from_slice(&network.magic());
        expected.extend_from_slice(&base_height.to_le_bytes());
        expected.extend_from_slice(&encode_header(base));
        if bytes.len() < FILE_HEADER_LEN {
            // New (or torn while being created): start it over.
            file.set_len(0).map_err(|e| file_error(path, e))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| file_error(path, e))?;
            file.write_all(&expected).map_err(|e| file_error(path, e))?;
            file.sync_data().map_err(|e| file_error(path, e))?;
            return Ok((
                HeaderFile {
                    path: path.to_path_buf(),
                    out: BufWriter::new(file),
                },
                Vec::new(),
            ));
        }
        let (head, body) = bytes.split_at(FILE_HEADER_LEN);
        if head.get(..8) != Some(&FILE_MAGIC[..]) {
            return Err(file_error(path, "not a header chain file"));
        }
        let magic = head.get(8..12).unwrap_or_default();
        if magic != network.magic() {
            let found = Network::ALL
                .into_iter()
                .find(|n| n.magic() == magic)
                .map_or_else(|| hex::encode(magic), |n| n.to_string());
            return Err(P2pError::HeaderFileNetwork {
                path: path.to_path_buf(),
                found,
                expected: network,
            });
        }
        if head != expected.as_slice() {
            return Err(file_error(
                path,
                "it starts at another point than the configured checkpoint or genesis",
            ));
        }
        let whole = body.len() / HEADER_SIZE * HEADER_SIZE;
        let mut headers = Vec::with_capacity(body.len() / HEADER_SIZE);
        let mut reader = Reader::new(body.get(..whole).unwrap_or_default());
        while let Ok(h) = BlockHeader::decode(&mut reader) {
            headers.push(h);
        }
        if whole != body.len() {
            // A torn last record: cut it so the next append starts on a record boundary.
            file.set_len((FILE_HEADER_LEN + whole) as u64)
                .map_err(|e| file_error(path, e))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| file_error(path, e))?;
        Ok((
            HeaderFile {
                path: path.to_path_buf(),
                out: BufWriter::new(file),
            },
            headers,
        ))
    }

    /// Keeps only the first `records` records (the rest failed validation when loaded).
    pub(crate) fn truncate(&mut self, records: usize) -> Result<()> {
        self.out.flush().map_err(|e| file_error(&self.path, e))?;
        let len = (FILE_HEADER_LEN + records * HEADER_SIZE) as u64;
        let file = self.out.get_mut();
        file.set_len(len).map_err(|e| file_error(&self.path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| file_error(&self.path, e))?;
        Ok(())
    }

    /// Appends one header (buffered until [`HeaderFile::flush`]).
    pub(crate) fn append(&mut self, header: &BlockHeader) -> Result<()> {
        self.out
            .write_all(&encode_header(header))
            .map_err(|e| file_error(&self.path, e))
    }

    /// Writes buffered records to the file.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|e| file_error(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(prev: &BlockHeader, tag: u8) -> BlockHeader {
        BlockHeader {
            prev_hash: prev.hash(),
            merkle_root: crate::bitcoin::Hash([tag; 32]),
            ..*prev
        }
    }

    #[test]
    fn appended_headers_come_back_and_a_torn_record_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers.dat");
        let g = Network::Regtest.genesis_header();
        let a = child(&g, 1);
        let b = child(&a, 2);
        {
            let (mut f, loaded) = HeaderFile::open(&path, Network::Regtest, &g, 0).unwrap();
            assert!(loaded.is_empty());
            f.append(&a).unwrap();
            f.append(&b).unwrap();
            f.flush().unwrap();
        }
        // Half a record, as a crash mid-write leaves it.
        let mut raw = OpenOptions::new().append(true).open(&path).unwrap();
        raw.write_all(&[7u8; 40]).unwrap();
        drop(raw);
        let (mut f, loaded) = HeaderFile::open(&path, Network::Regtest, &g, 0).unwrap();
        assert_eq!(loaded, vec![a, b]);
        f.append(&child(&b, 3)).unwrap();
        f.flush().unwrap();
        drop(f);
        let (_, loaded) = HeaderFile::open(&path, Network::Regtest, &g, 0).unwrap();
        assert_eq!(loaded.len(), 3);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            FILE_HEADER_LEN + 3 * HEADER_SIZE
        );
    }

    #[test]
    fn a_file_of_another_network_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers.dat");
        let g = Network::Regtest.genesis_header();
        drop(HeaderFile::open(&path, Network::Regtest, &g, 0).unwrap());
        let m = Network::Mainnet.genesis_header();
        match HeaderFile::open(&path, Network::Mainnet, &m, 0) {
            Err(P2pError::HeaderFileNetwork {
                found, expected, ..
            }) => {
                assert_eq!(found, "regtest");
                assert_eq!(expected, Network::Mainnet);
            }
            other => panic!("expected a network error, got {other:?}"),
        }
        // Same network, another start point.
        let other = child(&g, 9);
        assert!(matches!(
            HeaderFile::open(&path, Network::Regtest, &other, 5),
            Err(P2pError::HeaderFile { .. })
        ));
    }
}
