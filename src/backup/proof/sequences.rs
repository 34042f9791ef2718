//! Sequence positions as the archive holds them. Sequences are not transactional: the
//! baseline's snapshot does not freeze them, and pg_dump reads them at its own moment, so on a
//! busy database the two reads differ. The baseline therefore takes each sequence's position
//! from the archive's own `SEQUENCE SET` entries, which are exactly what a restore sets.

use std::{collections::BTreeMap, path::Path};

use crate::backup::{
    pgtools::{run_to_end, PgTools},
    BackupError,
};

use super::Baseline;

/// Each sequence's position in `archive`, by quoted qualified name: its value, or `unset` for
/// one never called (restored with is_called false). Blocking.
pub fn archived_positions(tools: &PgTools, archive: &Path) -> Result<BTreeMap<String, String>, BackupError> {
    let listing = run_pg_restore(tools, &["--list".into()], archive)?;
    let entries: String = listing
        .lines()
        .filter(|line| line.contains(" SEQUENCE SET "))
        .map(|line| format!("{line}\n"))
        .collect();
    if entries.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut list_path = archive.as_os_str().to_owned();
    list_path.push(".sequences");
    let list_path = std::path::PathBuf::from(list_path);
    std::io::Write::write_all(
        &mut crate::backup::repository::create_private(&list_path)?,
        entries.as_bytes(),
    )
    .map_err(BackupError::io(&list_path))?;
    let script = run_pg_restore(
        tools,
        &[format!("--use-list={}", list_path.display()), "--file=-".into()],
        archive,
    );
    let _ = std::fs::remove_file(&list_path);
    Ok(parse_setvals(&script?))
}

fn run_pg_restore(tools: &PgTools, args: &[String], archive: &Path) -> Result<String, BackupError> {
    let mut command = tools.command("pg_restore");
    command.args(args).arg(archive);
    let stdout = run_to_end(command, "pg_restore (reading the archive's sequence positions)")?;
    Ok(String::from_utf8_lossy(&stdout).into_owned())
}

/// `SELECT pg_catalog.setval('public."Odd ""seq"""', 1042, true);` lines to positions.
pub fn parse_setvals(script: &str) -> BTreeMap<String, String> {
    let mut positions = BTreeMap::new();
    for line in script.lines() {
        let Some(rest) = line.trim().strip_prefix("SELECT pg_catalog.setval('") else {
            continue;
        };
        // The name is a string literal: '' stands for one quote, and it ends at a lone quote.
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        let mut end = None;
        while let Some((at, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, next)| *next == '\'') {
                    chars.next();
                    name.push('\'');
                    continue;
                }
                end = Some(at + 1);
                break;
            }
            name.push(c);
        }
        let Some(end) = end else { continue };
        let arguments: Vec<&str> = rest[end..]
            .trim_start_matches(',')
            .trim_end_matches(';')
            .trim_end_matches(')')
            .split(',')
            .map(str::trim)
            .collect();
        if let [value, called] = arguments[..] {
            let position = if called == "true" {
                value.to_owned()
            } else {
                "unset".to_owned()
            };
            positions.insert(name, position);
        }
    }
    positions
}

/// Replaces the `last_value=` of each sequence the archive positions; the rest of each
/// description (increment, bounds, cycle) is the catalog's, read in the snapshot.
pub fn apply(baseline: &mut Baseline, positions: &BTreeMap<String, String>) {
    for (name, position) in positions {
        if let Some(description) = baseline.objects.get_mut(&format!("sequence {name}")) {
            *description = description
                .split(' ')
                .map(|word| {
                    if word.starts_with("last_value=") {
                        format!("last_value={position}")
                    } else {
                        word.to_owned()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setval_lines_give_positions_with_quoted_names() {
        let script = "--\n-- Name: s; Type: SEQUENCE SET\n--\n\n\
            SELECT pg_catalog.setval('public.invoice_number_seq', 1042, true);\n\
            SELECT pg_catalog.setval('public.\"Odd ''seq\"', 1, false);\n\
            SELECT pg_catalog.setval('\"Sch\".\"a,b\"', 7, true);\n";
        let positions = parse_setvals(script);
        assert_eq!(
            positions.into_iter().collect::<Vec<_>>(),
            [
                ("\"Sch\".\"a,b\"".to_owned(), "7".to_owned()),
                ("public.\"Odd 'seq\"".to_owned(), "unset".to_owned()),
                ("public.invoice_number_seq".to_owned(), "1042".to_owned()),
            ]
        );
    }

    #[test]
    fn only_last_value_is_replaced() {
        let mut baseline = Baseline {
            tables: BTreeMap::new(),
            objects: BTreeMap::from([(
                "sequence public.s".to_owned(),
                "last_value=5 increment=1 min=1 max=9 cycle=false".to_owned(),
            )]),
            taken_ms: 0,
        };
        apply(
            &mut baseline,
            &BTreeMap::from([("public.s".to_owned(), "9".to_owned())]),
        );
        assert_eq!(
            baseline.objects["sequence public.s"],
            "last_value=9 increment=1 min=1 max=9 cycle=false"
        );
    }
}
