//! Reading .war (zip) archives into memory, so that httpd can serve a web application's
//! static files the way a servlet container would. Stored and deflated entries are supported;
//! zip64, encryption and multi-disk archives are not (a .war needs none of them).

use std::collections::{BTreeMap, BTreeSet};

/// Largest total size of the unpacked entries of one archive.
pub const MAX_UNPACKED: usize = 256 * 1024 * 1024;

/// An archive unpacked into memory: file entries by path (no leading `/`), and directories.
#[derive(Debug, Default)]
pub struct Archive {
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

/// The CRC-32 (IEEE) of `data`, as zip stores it.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An entry name as a relative path: `\` as `/`, no leading `/` or `./`, `None` if it has a
/// `..` segment.
fn clean_name(name: &str) -> Option<String> {
    let name = name.replace('\\', "/");
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Archive {
    /// Unpacks a whole zip archive.
    pub fn parse(data: &[u8]) -> Result<Archive, String> {
        const EOCD: u32 = 0x0605_4b50;
        const CENTRAL: u32 = 0x0201_4b50;
        const LOCAL: u32 = 0x0403_4b50;

        // The end-of-central-directory record is 22 bytes plus a comment of up to 64 KiB.
        let lowest = data.len().saturating_sub(22 + 0xFFFF);
        let eocd = (lowest..=data.len().saturating_sub(22))
            .rev()
            .find(|&at| u32_at(data, at) == Some(EOCD))
            .ok_or("not a zip archive (no end of central directory)")?;
        let count = u16_at(data, eocd + 10).ok_or("truncated archive")?;
        let mut at = u32_at(data, eocd + 16).ok_or("truncated archive")? as usize;
        if at == 0xFFFF_FFFF_usize || count == 0xFFFF {
            return Err("zip64 archives are not supported".into());
        }

        let mut archive = Archive::default();
        let mut unpacked = 0usize;
        for _ in 0..count {
            if u32_at(data, at) != Some(CENTRAL) {
                return Err("corrupt central directory".into());
            }
            let truncated = || "truncated central directory".to_string();
            let flags = u16_at(data, at + 8).ok_or_else(truncated)?;
            let method = u16_at(data, at + 10).ok_or_else(truncated)?;
            let crc = u32_at(data, at + 16).ok_or_else(truncated)?;
            let packed_len = u32_at(data, at + 20).ok_or_else(truncated)? as usize;
            let len = u32_at(data, at + 24).ok_or_else(truncated)? as usize;
            let name_len = usize::from(u16_at(data, at + 28).ok_or_else(truncated)?);
            let extra_len = usize::from(u16_at(data, at + 30).ok_or_else(truncated)?);
            let comment_len = usize::from(u16_at(data, at + 32).ok_or_else(truncated)?);
            let local = u32_at(data, at + 42).ok_or_else(truncated)? as usize;
            let raw_name = data
                .get(at + 46..at + 46 + name_len)
                .ok_or_else(truncated)?;
            at += 46 + name_len + extra_len + comment_len;

            let raw_name = String::from_utf8_lossy(raw_name);
            let Some(name) = clean_name(&raw_name) else {
                continue; // An entry that would escape the archive is never served.
            };
            if raw_name.ends_with('/') {
                if !name.is_empty() {
                    archive.dirs.insert(name);
                }
                continue;
            }
            if flags & 1 != 0 {
                return Err(format!("{name}: encrypted entries are not supported"));
            }
            unpacked = unpacked.saturating_add(len);
            if unpacked > MAX_UNPACKED {
                return Err("archive too large to unpack".into());
            }

            if u32_at(data, local) != Some(LOCAL) {
                return Err(format!("{name}: corrupt local header"));
            }
            let local_name_len = usize::from(u16_at(data, local + 26).ok_or_else(truncated)?);
            let local_extra_len = usize::from(u16_at(data, local + 28).ok_or_else(truncated)?);
            let start = local + 30 + local_name_len + local_extra_len;
            let packed = data
                .get(start..start + packed_len)
                .ok_or_else(|| format!("{name}: truncated entry"))?;
            let content = match method {
                0 => packed.to_vec(),
                8 => miniz_oxide::inflate::decompress_to_vec_with_limit(packed, len)
                    .map_err(|e| format!("{name}: bad deflate data: {e}"))?,
                other => return Err(format!("{name}: compression method {other} not supported")),
            };
            if content.len() != len || crc32(&content) != crc {
                return Err(format!("{name}: checksum mismatch"));
            }
            // Parent directories are implied by the file's path.
            let mut parent = name.as_str();
            while let Some((dir, _)) = parent.rsplit_once('/') {
                archive.dirs.insert(dir.to_string());
                parent = dir;
            }
            archive.files.insert(name, content);
        }
        Ok(archive)
    }

    /// The content of the file entry at `path` (relative, `/`-separated).
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(Vec::as_slice)
    }

    /// Whether `path` is a directory of the archive (`""` is its root).
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty() || self.dirs.contains(path)
    }

    /// The immediate children of directory `dir`, sorted, as (name, is directory).
    pub fn list(&self, dir: &str) -> Vec<(String, bool)> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let child = |path: &String| -> Option<String> {
            let rest = path.strip_prefix(&prefix)?;
            (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_string())
        };
        let mut entries: Vec<(String, bool)> = self
            .dirs
            .iter()
            .filter_map(|d| child(d).map(|n| (n, true)))
            .chain(
                self.files
                    .keys()
                    .filter_map(|f| child(f).map(|n| (n, false))),
            )
            .collect();
        entries.sort();
        entries
    }

    /// Number of file entries.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a zip archive of `(name, content, deflate?)` entries.
    pub fn build_zip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut central = Vec::new();
        for (name, content, deflate) in entries {
            let packed = if *deflate {
                miniz_oxide::deflate::compress_to_vec(content, 6)
            } else {
                content.to_vec()
            };
            let method: u16 = if *deflate { 8 } else { 0 };
            let crc = crc32(content);
            let offset = out.len() as u32;
            let common = |buf: &mut Vec<u8>| {
                buf.extend_from_slice(&20u16.to_le_bytes()); // version needed
                buf.extend_from_slice(&0u16.to_le_bytes()); // flags
                buf.extend_from_slice(&method.to_le_bytes());
                buf.extend_from_slice(&0u32.to_le_bytes()); // DOS time and date
                buf.extend_from_slice(&crc.to_le_bytes());
                buf.extend_from_slice(&(packed.len() as u32).to_le_bytes());
                buf.extend_from_slice(&(content.len() as u32).to_le_bytes());
                buf.extend_from_slice(&(name.len() as u16).to_le_bytes());
                buf.extend_from_slice(&0u16.to_le_bytes()); // extra length
            };
            out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
            common(&mut out);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&packed);

            central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            central.extend_from_slice(&20u16.to_le_bytes()); // version made by
            common(&mut central);
            central.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
            central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            central.extend_from_slice(&offset.to_le_bytes());
            central.extend_from_slice(name.as_bytes());
        }
        let central_at = out.len() as u32;
        out.extend_from_slice(&central);
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // disk numbers
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(central.len() as u32).to_le_bytes());
        out.extend_from_slice(&central_at.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        out
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn reads_stored_and_deflated_entries() {
        let big = "hello deflate ".repeat(100);
        let zip = build_zip(&[
            ("index.html", b"<h1>app</h1>", false),
            ("css/site.css", big.as_bytes(), true),
            ("WEB-INF/web.xml", b"<web-app/>", true),
            ("META-INF/", b"", false),
        ]);
        let war = Archive::parse(&zip).unwrap();
        assert_eq!(war.len(), 3);
        assert_eq!(war.file("index.html"), Some(&b"<h1>app</h1>"[..]));
        assert_eq!(war.file("css/site.css"), Some(big.as_bytes()));
        assert!(war.is_dir("css") && war.is_dir("WEB-INF") && war.is_dir("META-INF"));
        assert!(war.is_dir(""));
        assert!(!war.is_dir("index.html"));
        assert_eq!(
            war.list(""),
            vec![
                ("META-INF".to_string(), true),
                ("WEB-INF".to_string(), true),
                ("css".to_string(), true),
                ("index.html".to_string(), false),
            ]
        );
        assert_eq!(war.list("css"), vec![("site.css".to_string(), false)]);
    }

    #[test]
    fn skips_escaping_names_and_rejects_garbage() {
        let zip = build_zip(&[("../evil", b"x", false), ("./a/./b", b"y", false)]);
        let war = Archive::parse(&zip).unwrap();
        assert_eq!(war.file("a/b"), Some(&b"y"[..]));
        assert_eq!(war.len(), 1);

        assert!(Archive::parse(b"definitely not a zip file at all").is_err());
        let mut corrupt = build_zip(&[("f", b"content", false)]);
        corrupt[30 + 1] ^= 0xFF; // flip a content byte: the checksum no longer matches
        assert!(Archive::parse(&corrupt).is_err());
    }
}
