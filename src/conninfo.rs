//! libpq's text formats, parsed once and without echoing secrets: connection strings (a
//! `postgres://` URL or `key=value` pairs) and `~/.pgpass` lines.
//!
//! Both connection-string forms become one list of `(keyword, value)` pairs, in the order given
//! (a later pair wins, as in libpq). Nothing here knows what a keyword means; `config` does.
//! The rules are libpq's (docs: libpq-connect.html, "Connection Strings"; the parser is
//! `conninfo_parse` and `conninfo_uri_parse_options` in fe-connect.c), with one addition: where
//! libpq would guess at an ambiguous URL (an unencoded `@` or `/` in a password), dhctl refuses
//! and says to percent-encode. Error messages name the part that is wrong and never quote a
//! password, whole or in part where that can be avoided.

use percent_encoding::percent_decode_str;

/// A connection string that cannot be parsed: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub message: String,
    pub hint: String,
}

fn err(message: impl Into<String>, hint: impl Into<String>) -> ParseError {
    ParseError {
        message: message.into(),
        hint: hint.into(),
    }
}

const ENCODE_HINT: &str = "percent-encode reserved characters in the user name, password and \
     database name: \"@\" as %40, \"/\" as %2F, \":\" as %3A, \"%\" as %25 (or use key=value \
     pairs: password='…')";

/// The pairs of a connection string, URL or key=value, in order. An empty string is no pairs.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let text = text.trim();
    if let Some(rest) = text
        .strip_prefix("postgresql://")
        .or_else(|| text.strip_prefix("postgres://"))
    {
        parse_url(rest)
    } else if let Some(scheme) = text.split_once("://").map(|(s, _)| s).filter(|s| {
        // RFC 3986: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ); a key=value string has "=" or a
        // space before any "://".
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    }) {
        Err(err(
            format!(
                "unsupported URL scheme {}: a connection URL starts with postgres:// or postgresql://",
                shorten(scheme)
            ),
            "use postgres://user:password@host:5432/dbname",
        ))
    } else {
        parse_key_value(text)
    }
}

/// libpq's key=value syntax: `key = value` pairs separated by whitespace; a value is either
/// single-quoted (with `\'` and `\\` escapes) or runs to the next whitespace (with `\` escaping
/// the next character). As in libpq, whitespace after `=` is skipped, so `password= x` is "x".
pub fn parse_key_value(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            // The word may be a piece of a password that needed quoting: never quote it.
            return Err(err(
                match pairs.last() {
                    Some((previous, _)) => format!(
                        "missing \"=\" in the connection string after the value of {}",
                        key_name(previous)
                    ),
                    None => "missing \"=\" after the first word of the connection string".into(),
                },
                "write key=value pairs separated by spaces, and quote a value that contains \
                 spaces: password='a b'; or use a postgres:// URL",
            ));
        }
        if key.is_empty() {
            return Err(err(
                "a connection string pair has no key before \"=\"",
                "write key=value pairs separated by spaces",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(err(
                            format!(
                                "the quoted value of {} has no closing quote",
                                key_name(&key)
                            ),
                            "end it with ', and write a quote inside a value as \\'",
                        ))
                    }
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(err(
                                format!(
                                    "the quoted value of {} has no closing quote",
                                    key_name(&key)
                                ),
                                "end it with ', and write a backslash inside a value as \\\\",
                            ))
                        }
                    },
                    Some('\'') => break,
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    // libpq drops a trailing lone backslash.
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

/// `[user[:password]@][host][:port][,host[:port]…][/dbname][?key=value[&…]]` after the scheme.
/// Every part is percent-decoded once, after the string has been split, so an encoded `@`, `/`,
/// `?`, `&` or `=` is data.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut pairs = Vec::new();
    // libpq looks for the user info up to the first "/" (so "?" and "#" may stand in a password).
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (userinfo, after_userinfo) = match rest[..authority_end].find('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.find(':') {
            Some(colon) => (&userinfo[..colon], Some(&userinfo[colon + 1..])),
            None => (userinfo, None),
        };
        let user = decode(user, "the user name")?;
        if !user.is_empty() {
            pairs.push(("user".into(), user));
        }
        if let Some(password) = password {
            pairs.push(("password".into(), decode(password, "the password")?));
        }
    }
    let netloc_end = after_userinfo
        .find(['/', '?'])
        .unwrap_or(after_userinfo.len());
    let (netloc, tail) = after_userinfo.split_at(netloc_end);
    if netloc.contains('@')
        || (userinfo.is_none() && tail.split('?').next().unwrap_or("").contains('@'))
    {
        // `user:p@ss@host` or `user:pa/ss@host`: the password holds a reserved character.
        return Err(err(
            "the connection URL has an unencoded \"@\" or \"/\" in its user name or password, so \
             its host cannot be told apart",
            ENCODE_HINT,
        ));
    }
    let (hosts, ports) = parse_netloc(netloc)?;
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".into(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".into(), ports.join(",")));
    }
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (tail, None),
    };
    if let Some(dbname) = path.strip_prefix('/') {
        let dbname = decode(dbname, "the database name")?;
        if !dbname.is_empty() {
            pairs.push(("dbname".into(), dbname));
        }
    }
    for param in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = param.split_once('=') else {
            return Err(err(
                "a query parameter of the connection URL has no \"=\"",
                "write ?key=value&key=value, and percent-encode \"&\" and \"=\" inside values",
            ));
        };
        let key = decode(key, "a query parameter name")?;
        if value.contains('=') {
            return Err(err(
                format!(
                    "the value of URL query parameter {} has an unencoded \"=\"",
                    key_name(&key)
                ),
                "percent-encode \"=\" inside values as %3D",
            ));
        }
        let part = if key == "password" {
            "the password".to_string()
        } else {
            format!("the value of query parameter {}", key_name(&key))
        };
        let value = decode(value, &part)?;
        // libpq's JDBC compatibility: ssl=true means sslmode=require.
        if key == "ssl" {
            if value != "true" {
                return Err(err(
                    format!("invalid ssl value: {}", shorten(&value)),
                    "ssl=true is the only value (it means sslmode=require)",
                ));
            }
            pairs.push(("sslmode".into(), "require".into()));
            continue;
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// `host[:port]` items separated by commas; IPv6 addresses in brackets.
fn parse_netloc(netloc: &str) -> Result<(Vec<String>, Vec<String>), ParseError> {
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    if netloc.is_empty() {
        return Ok((hosts, ports));
    }
    for item in netloc.split(',') {
        let (host, port) = if let Some(bracketed) = item.strip_prefix('[') {
            let Some((host, after)) = bracketed.split_once(']') else {
                return Err(err(
                    "an IPv6 host in the connection URL has no closing \"]\"",
                    "write IPv6 addresses as [::1]:5432",
                ));
            };
            match after {
                "" => (host.to_string(), String::new()),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host.to_string(), port.to_string()),
                    None => {
                        return Err(err(
                            "unexpected text after an IPv6 host's \"]\" in the connection URL",
                            "write IPv6 addresses as [::1]:5432",
                        ))
                    }
                },
            }
        } else {
            match item.rsplit_once(':') {
                Some((host, port)) => (decode(host, "a host name")?, port.to_string()),
                None => (decode(item, "a host name")?, String::new()),
            }
        };
        if !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                format!("invalid port number: {}", shorten(&port)),
                "a port is a number, e.g. host:5432",
            ));
        }
        hosts.push(host);
        ports.push(port);
    }
    Ok((hosts, ports))
}

/// Percent-decodes one part of a URL. Like libpq, a `%` must start a two-digit hex escape and
/// `%00` is refused (percent-encoding passes a stray `%` through and decodes `%00` to a NUL, so
/// both are checked first); the result must be UTF-8. `part` names it in the error, never its
/// text.
fn decode(text: &str, part: &str) -> Result<String, ParseError> {
    // Each piece after a `%` must open with the escape's two hex digits.
    for escaped in text.split('%').skip(1) {
        match escaped.as_bytes() {
            [b'0', b'0', ..] => {
                return Err(err(
                    format!("{part} in the connection URL contains %00, which libpq refuses"),
                    "remove the NUL character",
                ))
            }
            [high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {}
            _ => {
                return Err(err(
                    format!(
                        "{part} in the connection URL has a \"%\" that does not start a %XX escape"
                    ),
                    ENCODE_HINT,
                ))
            }
        }
    }
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            err(
                format!("{part} in the connection URL is not UTF-8 after percent-decoding"),
                "percent-encode the UTF-8 bytes of each character",
            )
        })
}

/// A value as an error message may quote it: only a short plain token (letters, digits and
/// `._-:`), as every valid sslmode, port or address is. Anything else may be a piece of a
/// password that a missing quote or `&` pulled into another key (`sslmode= password=…` is
/// sslmode "password=…" to libpq), so it is described, not shown.
pub fn shorten(text: &str) -> String {
    let plain = !text.is_empty()
        && text.len() <= 40
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c));
    if plain {
        format!("{text:?}")
    } else if text.is_empty() {
        "\"\"".into()
    } else {
        "(not shown: it is not a plain word)".into()
    }
}

/// A keyword as an error message may quote it: `"sslmode"` when it is a plain word, else a
/// description (it may be a piece of a password that needed quoting or percent-encoding).
pub fn key_name(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        format!("\"{key}\"")
    } else {
        "(a key not shown: it is not a plain word)".into()
    }
}

/// One `~/.pgpass` line: `host:port:database:user:password`, `*` matching anything in the first
/// four fields, `\` escaping `:` and `\`. `None` for comments, blank or malformed lines (libpq
/// skips those too).
pub fn pgpass_line(line: &str) -> Option<[String; 5]> {
    if line.starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.trim_end_matches(['\r', '\n']).chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    fields.try_into().ok()
}

/// Whether a pgpass field matches a connection value (`*` matches anything).
pub fn pgpass_matches(field: &str, value: &str) -> bool {
    field == "*" || field == value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn get(text: &str, key: &str) -> Option<String> {
        pairs(text)
            .into_iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[test]
    fn a_percent_before_a_non_ascii_character_is_an_error_not_a_panic() {
        for url in [
            "postgres://u@h/db?password=Sup3rS%eécret",
            "postgres://u:Sup3rS%eécret@h/db",
            "postgres://u:%é@h/db",
            "postgres://u@h/db?sslrootcert=%",
            "postgres://u@h/d%Ã©b",
        ] {
            let e = parse(url).unwrap_err();
            assert!(!e.message.contains("cret"), "{e:?}");
        }
    }

    #[test]
    fn quoted_values_are_parsed_once_with_libpq_escapes() {
        assert_eq!(get("password='a  b' dbname=x", "password").unwrap(), "a  b");
        assert_eq!(
            get("sslrootcert='certs/a b.pem'", "sslrootcert").unwrap(),
            "certs/a b.pem"
        );
        let p = pairs("password='x sslmode=verify-ca y' host=h");
        assert_eq!(p[0], ("password".into(), "x sslmode=verify-ca y".into()));
        assert_eq!(p.len(), 2);
        assert_eq!(
            get(r"password='it\'s \\ here'", "password").unwrap(),
            r"it's \ here"
        );
        assert_eq!(get(r"password=a\ b", "password").unwrap(), "a b");
        assert_eq!(
            get("password = spaced  user=u", "password").unwrap(),
            "spaced"
        );
        assert_eq!(get("password='' user=u", "password").unwrap(), "");
    }

    #[test]
    fn key_value_errors_never_quote_the_words() {
        let e = parse("password=hunter two dbname=x").unwrap_err();
        assert!(
            e.message.contains("after the value of \"password\""),
            "{e:?}"
        );
        assert!(!e.message.contains("two"), "{e:?}");
        let e = parse("password='hunter2").unwrap_err();
        assert!(e.message.contains("no closing quote"), "{e:?}");
        assert!(!e.message.contains("hunter2"));
        assert!(parse("=x").is_err());
    }

    #[test]
    fn urls_decode_each_part_once() {
        let p = pairs("postgresql://al%40ice:p%40ss%2Fw%3Ard@db.example:6543/my%20db?sslmode=require&application_name=a%26b");
        assert_eq!(
            p,
            vec![
                ("user".into(), "al@ice".into()),
                ("password".into(), "p@ss/w:rd".into()),
                ("host".into(), "db.example".into()),
                ("port".into(), "6543".into()),
                ("dbname".into(), "my db".into()),
                ("sslmode".into(), "require".into()),
                ("application_name".into(), "a&b".into()),
            ]
        );
        assert_eq!(get("postgres://u:p?x#y@h/db", "password").unwrap(), "p?x#y");
        assert_eq!(
            get("postgres://h1:1,[::1]:2,h3/db", "host").unwrap(),
            "h1,::1,h3"
        );
        assert_eq!(
            get("postgres://h1:1,[::1]:2,h3/db", "port").unwrap(),
            "1,2,"
        );
        assert_eq!(
            get("postgres://%2Fvar%2Frun%2Fpostgresql/db", "host").unwrap(),
            "/var/run/postgresql"
        );
        assert_eq!(
            get("postgres://u@h/db?ssl=true", "sslmode").unwrap(),
            "require"
        );
        assert!(pairs("postgres://").is_empty());
        assert!(pairs("").is_empty());
        assert_eq!(
            pairs("postgres:///db"),
            vec![("dbname".into(), "db".into())]
        );
    }

    #[test]
    fn an_unencoded_at_or_slash_in_a_password_is_refused_with_a_hint() {
        for url in ["postgres://u:p@zz@h/db", "postgres://u:pa/zz@h/db"] {
            let e = parse(url).unwrap_err();
            assert!(e.message.contains("unencoded \"@\""), "{e:?}");
            assert!(e.hint.contains("%40"), "{e:?}");
            assert!(!e.message.contains("zz"), "{e:?}");
        }
    }

    #[test]
    fn bad_urls_name_the_part() {
        let e = parse("postgres://u@h:notaport/db").unwrap_err();
        assert_eq!(e.message, "invalid port number: \"notaport\"");
        assert!(parse("mysql://u@h/db")
            .unwrap_err()
            .message
            .contains("mysql"));
        assert!(parse("postgres://u@h/db?sslmode").is_err());
        assert!(parse("postgres://u@[::1/db").is_err());
        assert!(parse("postgres://u:a%00b@h/db")
            .unwrap_err()
            .message
            .contains("password"));
    }

    #[test]
    fn pgpass_lines_follow_libpq() {
        assert_eq!(
            pgpass_line(r"db\:1:5432:*:alice:pa\:ss\\w:ord").unwrap(),
            [
                "db:1".to_string(),
                "5432".into(),
                "*".into(),
                "alice".into(),
                r"pa:ss\w:ord".into()
            ]
        );
        assert!(pgpass_line("# comment").is_none());
        assert!(pgpass_line("a:b:c").is_none());
        assert!(pgpass_matches("*", "x") && pgpass_matches("x", "x") && !pgpass_matches("x", "y"));
    }
}
