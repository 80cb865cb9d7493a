//! Reading a file the configuration names (the config itself, a secret, a
//! certificate, a CA): a regular file only, up to a bound. A FIFO would
//! block a reload (and with it SIGTERM) until someone writes to it, and a
//! device such as `/dev/zero` would stream into memory for ever.

use std::io::{Error, ErrorKind, Read};
use std::path::Path;

/// The largest config file (the shipped one is ~9 KiB).
pub const CONFIG_MAX: u64 = 4 << 20;
/// The largest secret file (a token, a signing secret, a key).
pub const SECRET_MAX: u64 = 1 << 20;
/// The largest PEM file (a certificate chain, a key, a CA bundle: the
/// system's whole bundle is ~200 KiB).
pub const PEM_MAX: u64 = 16 << 20;

/// The file's bytes, when it is a regular file of at most `max` bytes;
/// otherwise an error that says which of the two it is not.
pub fn read(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            if meta.is_dir() {
                "it is a directory, not a file"
            } else {
                "it is not a regular file (a FIFO, socket or device)"
            },
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::InvalidData,
            match max >> 20 {
                0 => format!("it is larger than {} KiB, more than such a file holds", max >> 10),
                mib => format!("it is larger than {mib} MiB, more than such a file holds"),
            },
        ));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read(path, max)?).map_err(|_| Error::new(ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_within_the_bound_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read(&f, 5).unwrap(), b"12345");
        assert!(read(&f, 4).unwrap_err().to_string().contains("larger than"));
        assert!(read(dir.path(), 5).unwrap_err().to_string().contains("directory"));
        assert!(read(Path::new("/dev/zero"), 5)
            .unwrap_err()
            .to_string()
            .contains("not a regular file"));
        std::fs::write(&f, b"\xff").unwrap();
        assert!(read_text(&f, 5).unwrap_err().to_string().contains("UTF-8"));
    }
}
