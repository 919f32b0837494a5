//! Reading the cookies a request carries: the one parser behind the
//! session, login, device and notice cookies.
//!
//! A `Cookie` header is a list of `name=value` pairs separated by `;`
//! (RFC 6265, section 5.4); a request may carry several such headers. Names
//! match exactly and the first pair with the name wins. A value is returned
//! as sent, surrounding quotes included: CAB never sets a quoted value, so a
//! quoted one is never a credential it issued.

use axum::http::{HeaderMap, header};

/// The value of the cookie `name`, if the request carries it. Headers that
/// are not visible ASCII and pairs without `=` are skipped.
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request carries the cookie `name`, with any value.
pub fn has(headers: &HeaderMap, name: &str) -> bool {
    get(headers, name).is_some()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn finds_each_of_several_cookies() {
        let h = headers(&["a=1; cab_session=tok; cab_notice=n.t"]);
        assert_eq!(get(&h, "a"), Some("1"));
        assert_eq!(get(&h, "cab_session"), Some("tok"));
        assert_eq!(get(&h, "cab_notice"), Some("n.t"));
    }

    #[test]
    fn reads_every_cookie_header() {
        let h = headers(&["a=1", "cab_login=x; b=2"]);
        assert_eq!(get(&h, "cab_login"), Some("x"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "a"), Some("1"));
    }

    #[test]
    fn the_first_of_two_pairs_with_a_name_wins() {
        let h = headers(&["a=1; a=2", "a=3"]);
        assert_eq!(get(&h, "a"), Some("1"));
    }

    #[test]
    fn spaces_around_pairs_are_ignored() {
        let h = headers(&["  a=1 ;b=2;   c=3  ;"]);
        assert_eq!(get(&h, "a"), Some("1"));
        assert_eq!(get(&h, "b"), Some("2"));
        assert_eq!(get(&h, "c"), Some("3"));
    }

    #[test]
    fn spaces_inside_a_pair_are_kept() {
        // The name is "a " here, not "a", and the value starts with a space.
        let h = headers(&["a =1; b= 2"]);
        assert_eq!(get(&h, "a"), None);
        assert_eq!(get(&h, "a "), Some("1"));
        assert_eq!(get(&h, "b"), Some(" 2"));
    }

    #[test]
    fn quoted_values_are_returned_as_sent() {
        let h = headers(&["a=\"quoted value\"; b=\"\""]);
        assert_eq!(get(&h, "a"), Some("\"quoted value\""));
        assert_eq!(get(&h, "b"), Some("\"\""));
    }

    #[test]
    fn a_value_may_contain_equals_signs() {
        let h = headers(&["t=abc==.def="]);
        assert_eq!(get(&h, "t"), Some("abc==.def="));
    }

    #[test]
    fn an_empty_value_is_present() {
        let h = headers(&["a=; b=2"]);
        assert_eq!(get(&h, "a"), Some(""));
        assert!(has(&h, "a"));
    }

    #[test]
    fn a_name_that_is_a_suffix_or_prefix_of_another_does_not_match() {
        let h = headers(&["my_session=1; cab_session_old=2; xcab_session=3"]);
        assert_eq!(get(&h, "session"), None);
        assert_eq!(get(&h, "cab_session"), None);
        assert!(!has(&h, "cab_session"));
        let h = headers(&["xcab_session=3; cab_session=4"]);
        assert_eq!(get(&h, "cab_session"), Some("4"));
    }

    #[test]
    fn names_match_case_sensitively() {
        let h = headers(&["CAB_SESSION=1"]);
        assert_eq!(get(&h, "cab_session"), None);
    }

    #[test]
    fn missing_cookies_are_none() {
        assert_eq!(get(&HeaderMap::new(), "a"), None);
        assert!(!has(&HeaderMap::new(), "a"));
        let h = headers(&["", ";;", "novalue; a"]);
        assert_eq!(get(&h, "a"), None);
        assert_eq!(get(&h, "novalue"), None);
        assert_eq!(get(&h, ""), None);
    }

    #[test]
    fn an_unreadable_header_is_skipped() {
        let mut h = headers(&[]);
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"a=\xff; b=1").unwrap(),
        );
        h.append(header::COOKIE, HeaderValue::from_static("a=2"));
        assert_eq!(get(&h, "b"), None);
        assert_eq!(get(&h, "a"), Some("2"));
    }
}
