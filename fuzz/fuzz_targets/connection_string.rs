//! Any bytes as a connection string, alone or with a password planted in a URL's user info, a
//! URL query, a quoted or an unquoted key=value pair: parsing never panics, its error (message
//! and hint) never contains the password, and a parsed configuration's described target never
//! shows what was parsed as its password.

#![no_main]

use dhctl::config::{describe, parse_connection};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    // The password is everything before the first 0xFF byte, marked with a character no message
    // of dhctl's contains, so that a match is a leak and not a coincidence.
    let split = rest.iter().position(|b| *b == 0xFF).unwrap_or(rest.len());
    let password = format!("\u{1F511}{}", String::from_utf8_lossy(&rest[..split]));
    let tail = String::from_utf8_lossy(rest.get(split + 1..).unwrap_or_default()).into_owned();
    let text = match mode % 5 {
        0 => String::from_utf8_lossy(rest).into_owned(),
        1 => format!("postgres://user:{password}@{tail}"),
        2 => format!("postgres://user@h/db?password={password}&{tail}"),
        3 => format!("{tail} password='{password}'"),
        _ => format!("password={password} {tail}"),
    };
    // No environment: the parser alone (and no password file is read).
    let outcome = parse_connection(&text, None, &|_| None);
    if mode % 5 == 0 || tail.contains(&password) {
        return;
    }
    match outcome {
        // Only where the password landed in the password field: a tail that makes the whole
        // string a URL turns " password='…'" into part of the database name, which is shown.
        Ok((pg, _)) => {
            if pg.get_password() == Some(password.as_bytes()) && !tail.contains('%') {
                assert!(!describe(&pg).contains(&password));
            }
        }
        Err(e) => {
            let shown = format!("{e} {}", e.hint().unwrap_or_default());
            assert!(!shown.contains(&password), "{text:?} -> {shown}");
        }
    }
});
