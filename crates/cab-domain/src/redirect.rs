//! Where a person may be sent after signing in.
//!
//! The login page carries the page someone was on (`/login?next=...`) so it
//! can take them back. Anyone can write that address and send it round, so
//! the target is accepted only when it is, beyond doubt, a path on this site;
//! anything else sends them to the home page.
//!
//! Browsers are lenient with a `Location` header: they drop tabs and line
//! breaks, read `\` as `/`, and take `//host` or `/\host` as another site.
//! So the rule is a strict grammar (a subset of RFC 3986's `path-absolute`
//! with an optional query), not a list of known tricks:
//!
//! ```text
//! target  = "/" [ segment-nz *( "/" segment ) ] [ "?" query ]
//! segment = *pchar      segment-nz = 1*pchar
//! query   = *( pchar / "/" / "?" )
//! pchar   = unreserved / pct-encoded / sub-delims / ":" / "@"
//! ```
//!
//! and once every percent-escape is decoded (repeatedly, as a chain of
//! servers might), the target must still hold no control character and no
//! backslash, and must not start with `//`.

/// Where people go when the target is refused or missing.
pub const HOME: &str = "/";

/// The longest target kept; longer ones are refused.
pub const MAX_LEN: usize = 1024;

/// How many rounds of percent-decoding are tried before a target that keeps
/// changing is refused.
const DECODE_ROUNDS: usize = 4;

/// `candidate` if it is a same-origin path by the grammar above, else [`HOME`].
pub fn safe_next(candidate: Option<&str>) -> &str {
    match candidate {
        Some(target) if is_local_path(target) => target,
        _ => HOME,
    }
}

fn is_local_path(target: &str) -> bool {
    let bytes = target.as_bytes();
    if bytes.len() > MAX_LEN || bytes.first() != Some(&b'/') {
        return false;
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    // `/` must be followed by a segment character or nothing: never `//`.
    if path.as_bytes().get(1) == Some(&b'/') {
        return false;
    }
    if !well_formed(path.as_bytes(), |b| b == b'/') {
        return false;
    }
    if let Some(query) = query
        && !well_formed(query.as_bytes(), |b| b == b'/' || b == b'?')
    {
        return false;
    }
    decodes_safely(bytes)
}

/// Every byte is a `pchar`, one of `also`, or the start of a `%XX` escape.
fn well_formed(part: &[u8], also: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < part.len() {
        let b = part[i];
        if b == b'%' {
            let escape = part.get(i + 1..i + 3);
            if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
            continue;
        }
        if !(is_pchar(b) || also(b)) {
            return false;
        }
        i += 1;
    }
    true
}

fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            // unreserved
            b'-' | b'.' | b'_' | b'~'
            // sub-delims
            | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b':' | b'@'
        )
}

/// Decoded as far as it goes, the target holds no control character or
/// backslash and does not start with `//`.
fn decodes_safely(target: &[u8]) -> bool {
    let mut current = target.to_vec();
    for _ in 0..DECODE_ROUNDS {
        if current.iter().any(|&b| b.is_ascii_control() || b == b'\\') || current.starts_with(b"//")
        {
            return false;
        }
        let decoded = percent_decode(&current);
        if decoded == current {
            return true;
        }
        current = decoded;
    }
    false
}

fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|&b| hex_value(b)),
                input.get(i + 2).and_then(|&b| hex_value(b)),
            )
        {
            out.push(hi * 16 + lo);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escape_is_skipped_exactly() {
        assert_eq!(safe_next(Some("/ab%41<cdefgh")), "/");
        assert_eq!(safe_next(Some("/ab%41cdefgh")), "/ab%41cdefgh");
    }

    #[test]
    fn paths_on_this_site_are_kept() {
        for good in [
            "/",
            "/changes",
            "/changes/",
            "/changes/42",
            "/admin/users?x=1",
            "/changes?state=open&q=disk%20full",
            "/changes?q=a/b?c",
            "/?tab=mine",
            "/templates/db-patch",
            "/a:b@c/~d_e.f!$&'()*+,;=",
            "/changes/%E2%9C%93",
            "/changes/../audit",
            "/changes//42",
        ] {
            assert_eq!(safe_next(Some(good)), good, "{good:?}");
        }
    }

    #[test]
    fn anything_else_goes_home() {
        let long = format!("/{}", "a".repeat(MAX_LEN));
        for bad in [
            "",
            "evil.example",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "\\/evil.example",
            "https://evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>",
            // Control characters and whitespace, raw: browsers drop them and
            // read what is left.
            "/\t/evil.example",
            "/\r\n/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "/changes\r\nSet-Cookie: x=1",
            "/changes x",
            "\t//evil.example",
            // The same, percent-encoded, once or twice.
            "/%09/evil.example",
            "/%0d%0a/evil.example",
            "/%0A/evil.example",
            "/%00",
            "/changes%0d%0aSet-Cookie:%20x=1",
            "/%2F%2Fevil.example",
            "/%2f/evil.example",
            "/%5Cevil.example",
            "/%5cevil.example",
            "/%252F%252Fevil.example",
            "/%2509/evil.example",
            "/%25252F%25252Fevil.example",
            "/%2525252F",
            // Not well formed.
            "/%",
            "/%2",
            "/%zz",
            "/changes#top",
            "/changes|x",
            "/chänges",
            "/changes?q=\\",
            "/changes?q=<script>",
            "/changes?q=\"",
            long.as_str(),
        ] {
            assert_eq!(safe_next(Some(bad)), HOME, "{bad:?}");
        }
        assert_eq!(safe_next(None), HOME);
    }

    #[test]
    fn a_target_of_the_longest_length_is_kept() {
        let longest = format!("/{}", "a".repeat(MAX_LEN - 1));
        assert_eq!(safe_next(Some(&longest)), longest);
    }
}
