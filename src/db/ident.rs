//! Identifier validation and quoting: the only way a name from a policy file or the command line
//! reaches SQL text. Values never do; they are always `$n` parameters.

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENT_LEN: usize = 63;

/// Quotes an identifier for SQL: `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A plain lower-case name (`[a-z_][a-z0-9_]*`, at most 63 bytes): what the gateway's tables and
/// columns are, and what dhctl accepts from policy files and flags.
pub fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_IDENT_LEN
        && (first.is_ascii_lowercase() || first == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Quotes a string literal (for the few places SQL cannot take a parameter, such as partition
/// bounds in DDL): single quotes doubled; standard_conforming_strings is on in every supported
/// server, so backslashes are literal.
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_embedded_quotes() {
        assert_eq!(quote_ident("request_logs"), "\"request_logs\"");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn plain_names() {
        for ok in ["request_logs", "_x", "a1"] {
            assert!(is_plain_name(ok), "{ok}");
        }
        for bad in ["", "1a", "Request", "a-b", "a b", "a;drop", &"x".repeat(64)] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }
}
