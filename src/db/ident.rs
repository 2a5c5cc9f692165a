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

/// A schema-qualified table name, as given to `--history-table schema.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    /// `schema.name`, both parts as stored in the catalog (case-sensitive, no quotes).
    pub fn parse(text: &str) -> std::result::Result<TableName, String> {
        let Some((schema, name)) = text.split_once('.') else {
            return Err(format!(
                "`{text}` is not schema-qualified; write it as schema.name, e.g. public.refinery_schema_history"
            ));
        };
        // A temporary schema would hold history for one session only (and dhctl's session reset
        // drops temporary tables after every migration).
        if schema.eq_ignore_ascii_case("pg_temp") || schema.starts_with("pg_temp_") {
            return Err(format!(
                "`{text}`: a temporary schema cannot keep history; name a permanent schema"
            ));
        }
        for (what, part) in [("schema", schema), ("table", name)] {
            if part.is_empty()
                || part.len() > MAX_IDENT_LEN
                || part.contains('.')
                || part.chars().any(char::is_control)
                || part.trim() != part
            {
                return Err(format!(
                    "`{text}`: the {what} name must be 1 to 63 bytes without dots, control characters or leading or trailing spaces; write it as schema.name"
                ));
            }
        }
        Ok(TableName {
            schema: schema.into(),
            name: name.into(),
        })
    }

    /// The name quoted for SQL text.
    pub fn sql(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
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
