//! A ZIP archive of stored (uncompressed) files: what every unzip tool,
//! spreadsheet and operating system opens. Stored, because the pack's
//! files are small and each keeps its own SHA-256 in the signed manifest.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// CRC-32 (IEEE 802.3, reflected), as ZIP needs it.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

struct Entry {
    name: String,
    crc: u32,
    size: u32,
    offset: u32,
}

/// Builds an archive file by file.
pub struct ZipWriter {
    out: Vec<u8>,
    entries: Vec<Entry>,
    time: u16,
    date: u16,
}

fn u16le(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u32le(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Files are flagged as having UTF-8 names.
const UTF8: u16 = 0x0800;

impl ZipWriter {
    /// Every file is dated `at` (UTC; ZIP keeps no time zone).
    pub fn new(at: DateTime<Utc>) -> Self {
        let year = u16::try_from(at.year().clamp(1980, 2107) - 1980).unwrap_or(0);
        ZipWriter {
            out: Vec::new(),
            entries: Vec::new(),
            time: ((at.hour() as u16) << 11)
                | ((at.minute() as u16) << 5)
                | (at.second() as u16 / 2),
            date: (year << 9) | ((at.month() as u16) << 5) | at.day() as u16,
        }
    }

    pub fn add(&mut self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let size = u32::try_from(bytes.len())
            .map_err(|_| anyhow::anyhow!("{name} is too large for the archive"))?;
        let offset = u32::try_from(self.out.len())
            .map_err(|_| anyhow::anyhow!("the archive is too large"))?;
        let name_len = u16::try_from(name.len())
            .map_err(|_| anyhow::anyhow!("the name {name} is too long"))?;
        let crc = crc32(bytes);
        let out = &mut self.out;
        u32le(out, 0x0403_4b50);
        u16le(out, 20);
        u16le(out, UTF8);
        u16le(out, 0);
        u16le(out, self.time);
        u16le(out, self.date);
        u32le(out, crc);
        u32le(out, size);
        u32le(out, size);
        u16le(out, name_len);
        u16le(out, 0);
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(bytes);
        self.entries.push(Entry {
            name: name.to_owned(),
            crc,
            size,
            offset,
        });
        Ok(())
    }

    /// The archive: the files, then the central directory.
    pub fn finish(mut self) -> anyhow::Result<Vec<u8>> {
        let start = u32::try_from(self.out.len())
            .map_err(|_| anyhow::anyhow!("the archive is too large"))?;
        let count = u16::try_from(self.entries.len())
            .map_err(|_| anyhow::anyhow!("too many files for the archive"))?;
        for e in &self.entries {
            let out = &mut self.out;
            u32le(out, 0x0201_4b50);
            u16le(out, 20);
            u16le(out, 20);
            u16le(out, UTF8);
            u16le(out, 0);
            u16le(out, self.time);
            u16le(out, self.date);
            u32le(out, e.crc);
            u32le(out, e.size);
            u32le(out, e.size);
            u16le(out, e.name.len() as u16);
            u16le(out, 0);
            u16le(out, 0);
            u16le(out, 0);
            u16le(out, 0);
            u32le(out, 0);
            u32le(out, e.offset);
            out.extend_from_slice(e.name.as_bytes());
        }
        let size = u32::try_from(self.out.len())
            .map_err(|_| anyhow::anyhow!("the archive is too large"))?
            - start;
        let out = &mut self.out;
        u32le(out, 0x0605_4b50);
        u16le(out, 0);
        u16le(out, 0);
        u16le(out, count);
        u16le(out, count);
        u32le(out, size);
        u32le(out, start);
        u16le(out, 0);
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn an_archive_lists_its_files_at_their_offsets() -> anyhow::Result<()> {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let mut z = ZipWriter::new(at);
        z.add("a.txt", b"hello")?;
        z.add("dir/b.csv", b"x,y\r\n")?;
        let bytes = z.finish()?;
        assert_eq!(&bytes[..4], b"PK\x03\x04");
        let end = bytes.len() - 22;
        assert_eq!(&bytes[end..end + 4], b"PK\x05\x06");
        assert_eq!(u16::from_le_bytes([bytes[end + 10], bytes[end + 11]]), 2);
        let dir = u32::from_le_bytes([
            bytes[end + 16],
            bytes[end + 17],
            bytes[end + 18],
            bytes[end + 19],
        ]) as usize;
        assert_eq!(&bytes[dir..dir + 4], b"PK\x01\x02");
        Ok(())
    }
}
