//! Any bytes under any name: the catalog either accepts a migration whose sections are slices of
//! the input (markers, near-miss markers and literals read as dbmate-style files), or reports a
//! problem naming the file. It never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks a name shape, the rest is the file.
    let (name, body) = match data.split_first() {
        Some((b, rest)) if b % 3 == 0 => ("20240101000001_fuzz.sql".to_string(), rest),
        Some((b, rest)) if b % 3 == 1 => (
            String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned(),
            rest,
        ),
        Some((_, rest)) => ("20241231235959_a.sql".to_string(), rest),
        None => return,
    };
    match dhctl::migrations::catalog::parse_files(vec![(name.clone(), body.to_vec())]) {
        Ok(catalog) => {
            let m = &catalog.migrations[0];
            let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
            assert!(
                text.contains(m.up.sql.trim()),
                "the up section must come from the file"
            );
            assert!(m.up.first_line >= 1);
            if let Some(down) = &m.down {
                assert!(text.contains(down.sql.trim()), "the down section must come from the file");
                assert!(down.first_line > m.up.first_line);
                let _ = down.is_noop();
            }
            // The history name is what refinery reads back whole.
            assert_eq!(m.to_refinery().name(), m.name);
            // Statement splitting of any accepted section is total too.
            for statement in dhctl::migrations::split::split(&m.up.sql) {
                assert!(m.up.sql[statement.offset..].starts_with(statement.sql));
            }
            let _ = m.location(&m.up, m.up.sql.chars().count() + 5);
        }
        Err(dhctl::Error::Catalog { problems, .. }) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].file, name);
        }
        Err(other) => panic!("unexpected error kind: {other}"),
    }
});
