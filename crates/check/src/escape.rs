//! Printable renderings of wire bytes for reports (`\r\n` shown as such,
//! long runs shortened).

/// Longest rendering before the middle is elided.
const MAX_SHOWN: usize = 160;

/// Renders bytes with C-style escapes, shortening long runs of one byte
/// (`x` × 5242880) and eliding the middle of long renderings.
pub fn show(bytes: &[u8]) -> String {
    if bytes.len() > 4 * MAX_SHOWN {
        let (head, tail) = (&bytes[..MAX_SHOWN], &bytes[bytes.len() - MAX_SHOWN..]);
        return format!("{}…[{} bytes]…{}", render(head), bytes.len(), render(tail));
    }
    let out = render(bytes);
    if out.chars().count() > MAX_SHOWN {
        let head: String = out.chars().take(MAX_SHOWN / 2).collect();
        let tail: String = out
            .chars()
            .skip(out.chars().count() - MAX_SHOWN / 2)
            .collect();
        return format!("{head}…{tail}");
    }
    out
}

/// `text` safe to print on a terminal: control characters (escape
/// sequences of a server's output, NUL) shown as `\xNN`, tabs kept.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => c.to_string(),
            c if c.is_control() => format!("\\x{:02x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

fn render(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let run = bytes[i..].iter().take_while(|&&c| c == b).count();
        if run >= 16 {
            out.push_str(&format!("[{} × {run}]", one(b)));
            i += run;
            continue;
        }
        out.push_str(&one(b));
        i += 1;
    }
    if out.chars().count() > MAX_SHOWN {
        let head: String = out.chars().take(MAX_SHOWN / 2).collect();
        let tail: String = out
            .chars()
            .skip(out.chars().count() - MAX_SHOWN / 2)
            .collect();
        out = format!("{head}…{tail}");
    }
    out
}

fn one(b: u8) -> String {
    match b {
        b'\r' => "\\r".into(),
        b'\n' => "\\n".into(),
        b'\t' => "\\t".into(),
        b'\0' => "\\0".into(),
        b'\\' => "\\\\".into(),
        0x20..=0x7e => (b as char).to_string(),
        _ => format!("\\x{b:02x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::show;

    #[test]
    fn escapes_and_shortens() {
        assert_eq!(show(b"0 OK\r\n"), "0 OK\\r\\n");
        assert_eq!(show(b"a\0\xff"), "a\\0\\xff");
        let long = [b"get_metadata ".as_slice(), &[b'x'; 100], b"\r\n"].concat();
        assert_eq!(show(&long), "get_metadata [x × 100]\\r\\n");
        assert_eq!(super::printable("a\0\u{1b}[31m\tb"), "a\\x00\\x1b[31m\tb");
    }
}
