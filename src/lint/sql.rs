//! A section's SQL as parsed statements, and the few name and keyword helpers the rules share.
//! Everything here reads squawk's syntax tree: a keyword is a token of its kind (never a word
//! inside a string or a comment), a name is an identifier path, folded as PostgreSQL folds it.

use squawk_syntax::ast::{self, AstNode};
use squawk_syntax::{SourceFile, SyntaxKind, SyntaxNode};

use super::line_of;
use crate::migrations::catalog::Section;

/// One statement of a section.
pub(crate) struct Statement {
    pub stmt: ast::Stmt,
    /// The file's line of the statement's first token.
    pub line: usize,
    /// The statement's text, whitespace collapsed and shortened for reports.
    pub text: String,
}

/// A `-- …` comment and the file's line it is on.
pub(crate) struct Comment {
    pub line: usize,
    pub text: String,
}

pub(crate) struct Parsed {
    /// The first syntax error: the file's line and the parser's message.
    pub syntax_error: Option<(usize, String)>,
    pub statements: Vec<Statement>,
    pub comments: Vec<Comment>,
    /// The line of each statement's first token and of its last, to tell which lines only hold
    /// comments.
    pub statement_lines: Vec<(usize, usize)>,
}

/// Longest statement text a report carries (the file has the rest).
const STATEMENT_CHARS: usize = 200;

/// Parses a section. The parser always yields a tree; its first syntax error is kept for the
/// caller to decide (`dhctl lint` fails, migrate warns and lets the server judge).
pub(crate) fn parse_section(section: &Section) -> Parsed {
    let unread = |offset: usize, message: String| Parsed {
        syntax_error: Some((line_of(section, offset), message)),
        statements: Vec::new(),
        comments: Vec::new(),
        statement_lines: Vec::new(),
    };
    if let Some(offset) = too_deep(&section.sql) {
        return unread(offset, format!("nested more than {MAX_NESTING} levels deep (parentheses, brackets, CASE or prefix operators); dhctl's parser does not read it"));
    }
    let Some(parse) = parse_on_large_stack(&section.sql) else {
        return unread(0, "dhctl's parser failed on this section".into());
    };
    let syntax_error = parse.errors().first().map(|error| {
        let offset = usize::from(error.range().start()).min(section.sql.len());
        (line_of(section, offset), error.message().to_string())
    });
    let file = parse.tree();
    let mut statements = Vec::new();
    let mut statement_lines = Vec::new();
    for stmt in file.stmts() {
        let node = stmt.syntax();
        let Some(start) = first_significant_offset(node) else {
            continue;
        };
        let end = usize::from(node.text_range().end());
        let line = line_of(section, start);
        statement_lines.push((line, line_of(section, end.saturating_sub(1).max(start))));
        statements.push(Statement {
            line,
            text: collapse(&section.sql[start..end]),
            stmt,
        });
    }
    let comments = file
        .syntax()
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| t.kind() == SyntaxKind::COMMENT)
        .map(|t| Comment {
            line: line_of(section, usize::from(t.text_range().start())),
            text: t.text().to_string(),
        })
        .collect();
    Parsed {
        syntax_error,
        statements,
        comments,
        statement_lines,
    }
}

/// The deepest nesting dhctl parses. squawk's parser descends recursively, so a statement
/// nested thousands of levels deep (PostgreSQL takes 5,000 parentheses) overflowed the stack and
/// aborted dhctl, migrate included; past this depth the statement is unparseable instead (lint:
/// exit 2; migrate: a warning, and the server judges it). Hand-written SQL stays far below.
pub(crate) const MAX_NESTING: usize = 1000;

/// The stack the parser runs on: enough for MAX_NESTING levels of any kind in a debug build.
const PARSER_STACK: usize = 256 << 20;

/// The offset of the first token past [`MAX_NESTING`] levels: parentheses, brackets and CASE
/// open a level (closing ones close it), and a run of prefix operators (NOT, -, +, ~) adds one
/// level per operator, as each is a recursion of the parser. Strings, quoted names, comments and
/// dollar-quoted bodies are single tokens of the lexer, so what they hold does not count.
fn too_deep(sql: &str) -> Option<usize> {
    use squawk_lexer::TokenKind as K;
    let mut depth = 0usize;
    let mut prefix_run = 0usize;
    let mut offset = 0usize;
    for token in squawk_lexer::tokenize(sql) {
        let start = offset;
        offset += token.len as usize;
        let word = || sql.get(start..offset).unwrap_or("");
        match token.kind {
            K::Whitespace | K::LineComment | K::BlockComment { .. } => continue,
            K::OpenParen | K::OpenBracket => depth += 1,
            K::CloseParen | K::CloseBracket => depth = depth.saturating_sub(1),
            K::Ident if word().eq_ignore_ascii_case("case") => depth += 1,
            K::Ident if word().eq_ignore_ascii_case("end") => depth = depth.saturating_sub(1),
            _ => {}
        }
        let prefix = matches!(token.kind, K::Minus | K::Plus | K::Tilde)
            || (token.kind == K::Ident && word().eq_ignore_ascii_case("not"));
        prefix_run = if prefix { prefix_run + 1 } else { 0 };
        if depth + prefix_run > MAX_NESTING {
            return Some(start);
        }
    }
    None
}

/// Parses on a thread of its own with a stack of [`PARSER_STACK`] (reserved, touched only as
/// deep as the statement goes), so nesting up to [`MAX_NESTING`] parses whatever the calling
/// thread's stack is. None when the parser panicked.
fn parse_on_large_stack(sql: &str) -> Option<squawk_syntax::Parse<SourceFile>> {
    std::thread::scope(|scope| {
        match std::thread::Builder::new()
            .name("dhctl-parse".into())
            .stack_size(PARSER_STACK)
            .spawn_scoped(scope, || SourceFile::parse(sql))
        {
            Ok(handle) => handle.join().ok(),
            // No thread to be had: parse here, within MAX_NESTING still.
            Err(_) => Some(SourceFile::parse(sql)),
        }
    })
}

/// The offset of a node's first token that is not whitespace or a comment.
fn first_significant_offset(node: &SyntaxNode) -> Option<usize> {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .find(|t| !matches!(t.kind(), SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
        .map(|t| usize::from(t.text_range().start()))
}

/// Whitespace runs become one space; comments are dropped only when the text is cut.
fn collapse(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    if out.chars().count() > STATEMENT_CHARS {
        out = out.chars().take(STATEMENT_CHARS - 1).collect::<String>() + "…";
    }
    out
}

/// True when the node holds a token of `kind` (a keyword such as CONCURRENTLY).
pub(crate) fn has_token(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .any(|t| t.kind() == kind)
}

/// True when the node has a descendant node of `kind` (IF_EXISTS, IF_NOT_EXISTS…).
pub(crate) fn has_node(node: &SyntaxNode, kind: SyntaxKind) -> bool {
    node.descendants().any(|n| n.kind() == kind)
}

/// A relation or index name as PostgreSQL resolves it in the default schema: unquoted parts
/// fold to lower case, quoted parts keep their case, and `public.` is dropped (the gateway's
/// tables live there). Comments and whitespace inside the name are ignored.
pub(crate) fn name(node: &SyntaxNode) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = String::new();
    for token in node
        .descendants_with_tokens()
        .filter_map(|e| e.into_token())
        .filter(|t| !matches!(t.kind(), SyntaxKind::WHITESPACE | SyntaxKind::COMMENT))
    {
        let text = token.text();
        if text == "." {
            parts.push(std::mem::take(&mut current));
        } else if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            current.push_str(&quoted.replace("\"\"", "\""));
        } else {
            current.push_str(&text.to_lowercase());
        }
    }
    parts.push(current);
    if parts.len() == 2 && parts[0] == "public" {
        parts.remove(0);
    }
    parts.join(".")
}

/// A type as written, lower case and with single spaces (`character varying(255)`).
pub(crate) fn type_text(node: &SyntaxNode) -> String {
    collapse(&node.text().to_string().to_lowercase())
        .replace(" (", "(")
        .replace("( ", "(")
        .replace(" )", ")")
        .replace(", ", ",")
}

/// The table a reference names, when it names one.
pub(crate) fn table_ref(node: Option<ast::TableNameRef>) -> Option<String> {
    node.map(|t| name(t.syntax())).filter(|n| !n.is_empty())
}

/// The table an ALTER TABLE or CREATE INDEX names, without its ONLY or `*`.
pub(crate) fn relation(node: Option<ast::TableRelationName>) -> Option<String> {
    table_ref(node.and_then(|r| r.table_name_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(sql: &str) -> Section {
        Section {
            sql: sql.into(),
            transaction: crate::migrations::catalog::Transaction::Wrapped,
            first_line: 3,
        }
    }

    #[test]
    fn statements_start_at_their_first_token_not_at_the_comment_above() {
        let parsed = parse_section(&section(
            "-- a comment\nCREATE TABLE t (id int);\n\n-- another\nCREATE INDEX i ON t (id);\n",
        ));
        let lines: Vec<usize> = parsed.statements.iter().map(|s| s.line).collect();
        assert_eq!(lines, [4, 7]);
        assert_eq!(parsed.statements[1].text, "CREATE INDEX i ON t (id);");
        assert_eq!(parsed.comments.len(), 2);
        assert_eq!(parsed.comments[1].line, 6);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let parsed = parse_section(&section("SELECT 1;\nCREATE TABLE (;\n"));
        assert_eq!(parsed.syntax_error.map(|(line, _)| line), Some(4));
    }

    #[test]
    fn names_fold_like_postgresql() {
        let parsed = parse_section(&section(
            "ALTER TABLE public.\"Mixed\" ADD COLUMN a int; ALTER TABLE Api_Keys ADD COLUMN b int;",
        ));
        let names: Vec<String> = parsed
            .statements
            .iter()
            .map(|s| match &s.stmt {
                ast::Stmt::AlterTable(a) => relation(a.table_relation_name()).unwrap(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(names, ["Mixed", "api_keys"]);
    }
}
