//! QR codes for sharing a result or the test page: a compact SVG for web
//! pages and a hand-written 1-bit PNG for places that want a raster image
//! (printed posters, e-mail, chat apps).
//!
//! Both use error correction level M and the standard quiet zone of four
//! light modules on every side, and both are pure functions of their input.

use std::fmt;
use std::io::Write as _;

use qrcode::{Color, EcLevel, QrCode};

/// Light modules of quiet zone on each side, as the QR specification asks.
const QUIET_ZONE: usize = 4;

/// The largest accepted module size in pixels; larger requests are clamped
/// so that the image size cannot overflow (a version 40 code is then
/// 185 × 64 = 11 840 px wide).
pub const MAX_MODULE_PX: u32 = 64;

/// Why a QR code could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QrError {
    /// The text does not fit into the largest QR code (version 40) at error
    /// correction level M; `bytes` is the UTF-8 length of the text.
    DataTooLong {
        /// UTF-8 length of the rejected text.
        bytes: usize,
    },
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::DataTooLong { bytes } => write!(
                f,
                "text of {bytes} bytes is too long for a QR code at error correction level M"
            ),
        }
    }
}

impl std::error::Error for QrError {}

/// The dark/light matrix of a code, quiet zone included.
struct Matrix {
    /// Modules per side, quiet zone included.
    size: usize,
    /// Row-major, `true` = dark.
    dark: Vec<bool>,
}

impl Matrix {
    fn encode(text: &str) -> Result<Self, QrError> {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
            .map_err(|_| QrError::DataTooLong { bytes: text.len() })?;
        let inner = code.width();
        let size = inner + 2 * QUIET_ZONE;
        let mut dark = vec![false; size * size];
        for y in 0..inner {
            for x in 0..inner {
                if code[(x, y)] == Color::Dark {
                    dark[(y + QUIET_ZONE) * size + x + QUIET_ZONE] = true;
                }
            }
        }
        Ok(Matrix { size, dark })
    }

    fn is_dark(&self, x: usize, y: usize) -> bool {
        self.dark[y * self.size + x]
    }
}

fn clamp_px(module_px: u32) -> u32 {
    module_px.clamp(1, MAX_MODULE_PX)
}

/// Renders `text` (as UTF-8 bytes) as a QR code in SVG.
///
/// The result is one `<svg>` element with a white background `<rect>` and a
/// single black `<path>` holding every dark module, horizontal runs merged
/// into one rectangle each. The `viewBox` is in modules (quiet zone
/// included) and `width`/`height` are modules × `module_px` pixels;
/// `module_px` is clamped to `1..=`[`MAX_MODULE_PX`].
///
/// # Errors
///
/// [`QrError::DataTooLong`] if the text does not fit into a QR code.
pub fn qr_svg(text: &str, module_px: u32) -> Result<String, QrError> {
    let m = Matrix::encode(text)?;
    let n = m.size;
    let px = n as u64 * u64::from(clamp_px(module_px));
    let mut d = String::with_capacity(n * n);
    for y in 0..n {
        let mut x = 0;
        while x < n {
            if !m.is_dark(x, y) {
                x += 1;
                continue;
            }
            let start = x;
            while x < n && m.is_dark(x, y) {
                x += 1;
            }
            let len = x - start;
            d.push_str(&format!("M{start} {y}h{len}v1h-{len}z"));
        }
    }
    Ok(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {n} {n}\" \
         width=\"{px}\" height=\"{px}\" shape-rendering=\"crispEdges\">\
         <rect width=\"{n}\" height=\"{n}\" fill=\"#fff\"/>\
         <path fill=\"#000\" d=\"{d}\"/></svg>"
    ))
}

/// Renders `text` (as UTF-8 bytes) as a QR code in PNG: 1-bit grayscale,
/// not interlaced, `module_px` pixels per module (clamped to
/// `1..=`[`MAX_MODULE_PX`]), quiet zone included.
///
/// # Errors
///
/// [`QrError::DataTooLong`] if the text does not fit into a QR code.
pub fn qr_png(text: &str, module_px: u32) -> Result<Vec<u8>, QrError> {
    let m = Matrix::encode(text)?;
    let scale = clamp_px(module_px) as usize;
    let side = m.size * scale;
    let side_u32 = u32::try_from(side).expect("side is at most 185 × 64 pixels");

    // Raw scanlines: filter type 0 (None), then 1 bit per pixel, most
    // significant bit first, 0 = black and 1 = white.
    let row_bytes = side.div_ceil(8);
    let mut raw = Vec::with_capacity((row_bytes + 1) * side);
    let mut row = vec![0u8; row_bytes];
    for y in 0..m.size {
        row.fill(0);
        for px in 0..side {
            if !m.is_dark(px / scale, y) {
                row[px / 8] |= 0x80 >> (px % 8);
            }
        }
        for _ in 0..scale {
            raw.push(0);
            raw.extend_from_slice(&row);
        }
    }
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&raw).expect("writing to a Vec cannot fail");
    let idat = enc.finish().expect("writing to a Vec cannot fail");

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&side_u32.to_be_bytes());
    ihdr.extend_from_slice(&side_u32.to_be_bytes());
    // Bit depth 1, colour type 0 (grayscale), deflate, adaptive filtering
    // method 0, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);

    let mut png = Vec::with_capacity(idat.len() + 64);
    png.extend_from_slice(&PNG_SIGNATURE);
    push_chunk(&mut png, b"IHDR", &ihdr);
    push_chunk(&mut png, b"IDAT", &idat);
    push_chunk(&mut png, b"IEND", &[]);
    Ok(png)
}

/// The eight bytes every PNG file starts with.
const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Appends one chunk: length, type, data, CRC-32 over type and data.
fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    let len = u32::try_from(data.len()).expect("PNG chunks stay far below 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Lookup table for the reflected CRC-32 (polynomial 0xEDB88320) used by
/// PNG, zlib's `crc32`, gzip and Ethernet.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// CRC-32 as PNG defines it (ISO 3309 / ITU-T V.42).
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    const URL: &str = "https://speedtest.example.vn/r/7f3a9c2e-1b4d-4e8a-9c0f-2d6b8e1a5c3f";

    /// The reference matrix, straight from the `qrcode` crate, quiet zone
    /// added here independently of [`Matrix`].
    fn reference(text: &str) -> (usize, Vec<bool>) {
        let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M).unwrap();
        let w = code.width();
        let n = w + 8;
        let colors = code.to_colors();
        let mut dark = vec![false; n * n];
        for y in 0..w {
            for x in 0..w {
                dark[(y + 4) * n + x + 4] = colors[y * w + x] == Color::Dark;
            }
        }
        (n, dark)
    }

    fn attr<'a>(svg: &'a str, name: &str) -> &'a str {
        let key = format!(" {name}=\"");
        let start = svg.find(&key).unwrap_or_else(|| panic!("no {name}")) + key.len();
        let len = svg[start..].find('"').unwrap();
        &svg[start..start + len]
    }

    /// Parses the path back into a module grid, checking that it only uses
    /// the `M x y h n v1 h-n z` run shape and that runs never overlap.
    fn rasterise_path(d: &str, n: usize) -> Vec<bool> {
        let mut grid = vec![false; n * n];
        for run in d.split('M').skip(1) {
            let run = run.strip_suffix('z').expect("run ends with z");
            let (xy, rest) = run.split_once('h').unwrap();
            let (x, y) = xy.split_once(' ').unwrap();
            let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
            let (len, back) = rest.split_once("v1h-").unwrap();
            assert_eq!(len, back, "run closes where it started");
            let len: usize = len.parse().unwrap();
            assert!(len > 0 && x + len <= n && y < n);
            for cx in x..x + len {
                assert!(!grid[y * n + cx], "overlapping runs");
                grid[y * n + cx] = true;
            }
        }
        assert!(d.starts_with('M') || d.is_empty());
        grid
    }

    #[test]
    fn crc32_known_vectors() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
        let mut reference = flate2::Crc::new();
        reference.update(URL.as_bytes());
        assert_eq!(crc32(URL.as_bytes()), reference.sum());
    }

    #[test]
    fn svg_path_covers_exactly_the_dark_modules() {
        for text in ["1", "Đo tốc độ Internet", URL, &"x".repeat(1000)] {
            let svg = qr_svg(text, 5).unwrap();
            let (n, dark) = reference(text);
            assert_eq!(attr(&svg, "viewBox"), format!("0 0 {n} {n}"));
            assert_eq!(attr(&svg, "width"), (n * 5).to_string());
            assert_eq!(attr(&svg, "height"), (n * 5).to_string());
            assert_eq!(attr(&svg, "shape-rendering"), "crispEdges");
            assert_eq!(svg.matches("<path").count(), 1);
            let grid = rasterise_path(attr(&svg, "d"), n);
            assert_eq!(grid, dark, "{text}");
            // Runs are maximal: one per horizontal stretch of dark modules.
            let runs: usize = (0..n)
                .map(|y| {
                    (0..n)
                        .filter(|&x| dark[y * n + x] && (x == 0 || !dark[y * n + x - 1]))
                        .count()
                })
                .sum();
            assert_eq!(attr(&svg, "d").matches('M').count(), runs);
            // The quiet zone is light.
            for i in 0..n {
                for j in 0..4 {
                    assert!(!grid[j * n + i] && !grid[i * n + j]);
                    assert!(!grid[(n - 1 - j) * n + i] && !grid[i * n + n - 1 - j]);
                }
            }
        }
    }

    #[test]
    fn module_px_is_clamped() {
        let (n, _) = reference("a");
        assert_eq!(attr(&qr_svg("a", 0).unwrap(), "width"), n.to_string());
        assert_eq!(
            attr(&qr_svg("a", u32::MAX).unwrap(), "width"),
            (n * MAX_MODULE_PX as usize).to_string()
        );
    }

    struct Chunk {
        kind: [u8; 4],
        data: Vec<u8>,
    }

    /// Splits a PNG into chunks, checking the signature and every CRC.
    fn chunks(png: &[u8]) -> Vec<Chunk> {
        assert_eq!(&png[..8], &PNG_SIGNATURE);
        let mut out = Vec::new();
        let mut at = 8;
        while at < png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let body = &png[at + 4..at + 8 + len];
            let crc = u32::from_be_bytes(png[at + 8 + len..at + 12 + len].try_into().unwrap());
            let mut check = flate2::Crc::new();
            check.update(body);
            assert_eq!(crc, check.sum(), "chunk CRC");
            assert_eq!(crc, crc32(body));
            out.push(Chunk {
                kind: body[..4].try_into().unwrap(),
                data: body[4..].to_vec(),
            });
            at += 12 + len;
        }
        assert_eq!(at, png.len());
        out
    }

    #[test]
    fn png_decodes_to_the_matrix() {
        for (text, scale) in [("1", 1usize), ("Đo tốc độ Internet", 3), (URL, 4), (URL, 7)] {
            let png = qr_png(text, scale as u32).unwrap();
            let cs = chunks(&png);
            let kinds: Vec<&[u8; 4]> = cs.iter().map(|c| &c.kind).collect();
            assert_eq!(kinds, [b"IHDR", b"IDAT", b"IEND"]);
            let (n, dark) = reference(text);
            let side = n * scale;
            let ihdr = &cs[0].data;
            assert_eq!(ihdr.len(), 13);
            assert_eq!(
                u32::from_be_bytes(ihdr[0..4].try_into().unwrap()) as usize,
                side
            );
            assert_eq!(
                u32::from_be_bytes(ihdr[4..8].try_into().unwrap()) as usize,
                side
            );
            assert_eq!(
                &ihdr[8..],
                &[1, 0, 0, 0, 0],
                "depth 1, gray, deflate, no interlace"
            );
            assert!(cs[2].data.is_empty());

            let mut raw = Vec::new();
            flate2::read::ZlibDecoder::new(&cs[1].data[..])
                .read_to_end(&mut raw)
                .unwrap();
            let row_bytes = side.div_ceil(8);
            assert_eq!(raw.len(), side * (row_bytes + 1));
            for (py, line) in raw.chunks(row_bytes + 1).enumerate() {
                assert_eq!(line[0], 0, "filter type None");
                for px in 0..row_bytes * 8 {
                    let white = line[1 + px / 8] & (0x80 >> (px % 8)) != 0;
                    if px < side {
                        let want_dark = dark[(py / scale) * n + px / scale];
                        assert_eq!(!white, want_dark, "{text} pixel {px},{py}");
                    } else {
                        assert!(!white, "padding bits are zero");
                    }
                }
            }
        }
    }

    #[test]
    fn too_long_is_an_error() {
        let long = "x".repeat(3000);
        let err = qr_svg(&long, 4).unwrap_err();
        assert_eq!(err, QrError::DataTooLong { bytes: 3000 });
        assert_eq!(qr_png(&long, 4).unwrap_err(), err);
        assert!(err.to_string().contains("3000 bytes"));
        let _: &dyn std::error::Error = &err;
    }
}
