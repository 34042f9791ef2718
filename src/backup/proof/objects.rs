//! The object inventory of a baseline: every schema object a restore must bring back, named
//! without OIDs (which a restore changes) and described by its definition, or a hash of it.

use std::collections::BTreeMap;

use tokio_postgres::Client;

use crate::{backup::BackupError, db::DbError};

/// Schemas that are never the application's.
const SYSTEM: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' \
     AND n.nspname <> ALL($1)";

/// One query per kind of object, each returning (name, description). `{SYSTEM}` filters the
/// namespace aliased `n`.
const QUERIES: [(&str, &str); 12] = [
    (
        "schemas",
        "SELECT format('schema %I', n.nspname), pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE {SYSTEM}",
    ),
    (
        "columns",
        "SELECT format('column %I.%I.%I', n.nspname, c.relname, a.attname),
                concat_ws(' ', format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'not null' END,
                          'default=' || pg_get_expr(d.adbin, d.adrelid), CASE WHEN a.attgenerated <> '' THEN 'generated' END,
                          'position=' || a.attnum)
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
          WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND {SYSTEM}",
    ),
    (
        "tables",
        "SELECT format('%s %I.%I', CASE c.relkind WHEN 'p' THEN 'partitioned table' ELSE 'table' END, n.nspname, c.relname),
                concat_ws(' ', 'rls=' || c.relrowsecurity, 'force_rls=' || c.relforcerowsecurity,
                          'partition_of=' || (SELECT format('%I.%I', pn.nspname, pc.relname) FROM pg_inherits i
                              JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
                              WHERE i.inhrelid = c.oid),
                          'bound=' || pg_get_expr(c.relpartbound, c.oid))
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND {SYSTEM}",
    ),
    (
        "indexes",
        "SELECT format('index %I.%I', n.nspname, ic.relname), pg_get_indexdef(i.indexrelid)
           FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
          WHERE {SYSTEM}",
    ),
    (
        "constraints",
        "SELECT format('constraint %I.%I.%I', n.nspname, coalesce(c.relname, t.typname), con.conname),
                pg_get_constraintdef(con.oid)
           FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
           LEFT JOIN pg_class c ON c.oid = con.conrelid LEFT JOIN pg_type t ON t.oid = con.contypid
          WHERE {SYSTEM}",
    ),
    (
        "triggers",
        "SELECT format('trigger %I.%I.%I', n.nspname, c.relname, t.tgname),
                pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE NOT t.tgisinternal AND {SYSTEM}",
    ),
    (
        "functions",
        "SELECT format('%s %I.%I(%s)', CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
                       n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)),
                'md5=' || md5(pg_get_functiondef(p.oid))
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
          WHERE p.prokind IN ('f', 'p') AND {SYSTEM}",
    ),
    (
        "views",
        "SELECT format('%s %I.%I', CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized view' END, n.nspname, c.relname),
                'md5=' || md5(pg_get_viewdef(c.oid)) || CASE WHEN c.relkind = 'm' THEN ' populated=' || c.relispopulated ELSE '' END
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('v', 'm') AND {SYSTEM}",
    ),
    (
        "sequences",
        "SELECT format('sequence %I.%I', n.nspname, c.relname),
                concat_ws(' ', 'last_value=' || coalesce(s.last_value::text, 'unset'), 'increment=' || s.increment_by,
                          'min=' || s.min_value, 'max=' || s.max_value, 'cycle=' || s.cycle)
           FROM pg_sequences s JOIN pg_namespace n ON n.nspname = s.schemaname
           JOIN pg_class c ON c.relname = s.sequencename AND c.relnamespace = n.oid
          WHERE {SYSTEM}",
    ),
    (
        "types",
        "SELECT format('%s %I.%I', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' ELSE 'type' END, n.nspname, t.typname),
                CASE t.typtype
                  WHEN 'e' THEN (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                                   FROM pg_enum e WHERE e.enumtypid = t.oid)
                  WHEN 'd' THEN concat_ws(' ', format_type(t.typbasetype, t.typtypmod),
                                          CASE WHEN t.typnotnull THEN 'not null' END, 'default=' || t.typdefault)
                  ELSE (SELECT string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum)
                          FROM pg_attribute a WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)
                END
           FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE (t.typtype IN ('e', 'd') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
            AND {SYSTEM}",
    ),
    (
        "extensions",
        "SELECT format('extension %I', e.extname), e.extversion || ' in ' || n.nspname
           FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
          WHERE e.extname <> 'plpgsql' AND n.nspname <> ALL($1)",
    ),
    (
        "policies",
        "SELECT format('policy %I.%I.%I', n.nspname, c.relname, p.polname),
                concat_ws(' ', 'cmd=' || p.polcmd::text, 'permissive=' || p.polpermissive,
                          'using=' || pg_get_expr(p.polqual, p.polrelid), 'check=' || pg_get_expr(p.polwithcheck, p.polrelid))
           FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE {SYSTEM}",
    ),
];

/// Large objects keep their OIDs through pg_dump and pg_restore, so the OID names them.
/// `lo_get` needs only the owner's read right, unlike pg_largeobject itself.
const LARGE_OBJECTS: &str =
    "SELECT format('large object %s', m.oid), 'md5=' || md5(lo_get(m.oid)) FROM pg_largeobject_metadata m";

/// Each foreign key (not the copies PostgreSQL makes on partitions) with its tables and
/// columns quoted, in key order, for the orphan count.
const FOREIGN_KEYS: &str = "SELECT format('orphans %I.%I.%I', n.nspname, c.relname, con.conname),
        format('%I.%I', n.nspname, c.relname), format('%I.%I', pn.nspname, p.relname),
        ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
        ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
              JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
   FROM pg_constraint con
   JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
   JOIN pg_class p ON p.oid = con.confrelid JOIN pg_namespace pn ON pn.oid = p.relnamespace
  WHERE con.contype = 'f' AND con.conparentid = 0 AND {SYSTEM}";

/// Rows of `child` whose key (all columns set: MATCH SIMPLE exempts a key with a NULL) names no
/// row of `parent`. Zero while the key is enforced; a key added NOT VALID, or rows loaded with
/// triggers off, can leave some, and a restore must bring back the same number.
fn orphan_query(child: &str, parent: &str, child_columns: &[String], parent_columns: &[String]) -> String {
    let set: Vec<String> = child_columns.iter().map(|c| format!("c.{c} IS NOT NULL")).collect();
    let matches: Vec<String> = child_columns
        .iter()
        .zip(parent_columns)
        .map(|(c, p)| format!("p.{p} = c.{c}"))
        .collect();
    format!(
        "SELECT count(*) FROM {child} c WHERE {} AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {})",
        set.join(" AND "),
        matches.join(" AND ")
    )
}

/// Every object outside the system schemas and `excluded_schemas`, by name, with its
/// description, and each foreign key's orphan count; read on `client` in whatever snapshot it
/// holds.
pub async fn inventory(client: &Client, excluded_schemas: &[String]) -> Result<BTreeMap<String, String>, BackupError> {
    let mut objects = BTreeMap::new();
    for (kind, query) in QUERIES {
        let sql = query.replace("{SYSTEM}", SYSTEM);
        let rows = client.query(&sql, &[&excluded_schemas]).await.map_err(|e| {
            let reason = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |db| db.message().to_owned());
            BackupError::Proof(format!("reading the {kind} of the inventory: {reason}"))
        })?;
        for row in rows {
            let description: Option<String> = row.get(1);
            objects.insert(row.get(0), description.unwrap_or_default());
        }
    }
    let keys = client
        .query(&FOREIGN_KEYS.replace("{SYSTEM}", SYSTEM), &[&excluded_schemas])
        .await
        .map_err(DbError::query("listing the foreign keys of the inventory"))?;
    for key in keys {
        let query = orphan_query(
            key.get(1),
            key.get(2),
            &key.get::<_, Vec<String>>(3),
            &key.get::<_, Vec<String>>(4),
        );
        let orphans: i64 = client
            .query_one(&query, &[])
            .await
            .map_err(DbError::query("counting a foreign key's orphans"))?
            .get(0);
        objects.insert(key.get(0), format!("count={orphans}"));
    }
    let rows = client
        .query(LARGE_OBJECTS, &[])
        .await
        .map_err(DbError::query("reading the large objects of the inventory"))?;
    for row in rows {
        objects.insert(row.get(0), row.get(1));
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_orphan_query_skips_keys_with_a_null_and_matches_every_column() {
        let query = orphan_query(
            "public.lines",
            "public.orders",
            &["order_id".into(), "\"Shop\"".into()],
            &["id".into(), "shop".into()],
        );
        assert_eq!(
            query,
            "SELECT count(*) FROM public.lines c WHERE c.order_id IS NOT NULL AND c.\"Shop\" IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM public.orders p WHERE p.id = c.order_id AND p.shop = c.\"Shop\")"
        );
    }
}
