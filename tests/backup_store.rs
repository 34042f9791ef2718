//! The store contract: the local directory and the S3 store (against a real S3 server, s3s-fs
//! on loopback) keep the same promises to the backup service, checked by the same tests.

use std::{io::Read, sync::Arc};

use autonomy::{
    api::FileState,
    backup::{
        manifest::{Storage, MANIFEST_VERSION},
        repository::LocalRepository,
        s3::S3Store,
        store::BackupStore,
        BackupError, BackupStatus, Manifest,
    },
    ident::{BackupId, NodeId},
};
use autonomy_lab::s3::S3Server;
use rstest::rstest;
use sha2::{Digest, Sha256};

/// A store under test, and what must outlive it (the scratch directory, the S3 server).
struct Under {
    store: Arc<dyn BackupStore>,
    server: Option<S3Server>,
    _scratch: tempfile::TempDir,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Local,
    S3,
}

fn open(kind: Kind, label: &str) -> Option<Under> {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let (store, server): (Arc<dyn BackupStore>, _) = match kind {
        Kind::Local => (
            Arc::new(LocalRepository::open(&scratch.path().join("backups")).expect("the directory opens")),
            None,
        ),
        Kind::S3 => {
            let server = S3Server::start_or_skip(&scratch.path().join("s3"), label)?;
            let store = S3Store::open(&server.settings("cluster-a/"), scratch.path()).expect("the S3 store opens");
            (Arc::new(store), Some(server))
        }
    };
    Some(Under {
        store,
        server,
        _scratch: scratch,
    })
}

/// A scratch directory and an S3 server storing into it.
fn s3_server(label: &str) -> Option<(tempfile::TempDir, S3Server)> {
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let server = S3Server::start_or_skip(&scratch.path().join("s3"), label)?;
    Some((scratch, server))
}

fn manifest_of(id: &str, body: &[u8]) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        backup_id: BackupId::parse(id).unwrap(),
        created_at: time::OffsetDateTime::now_utc(),
        completed_at: time::OffsetDateTime::now_utc(),
        database: "app".into(),
        server_version: "15".into(),
        size_bytes: body.len() as u64,
        sha256: hex::encode(Sha256::digest(body)),
        duration_ms: 1,
        status: BackupStatus::Completed,
        node_id: NodeId::parse("n1").unwrap(),
        epoch: 1,
        excluded_schemas: vec![],
        storage: Storage::default(),
        baseline: None,
        manifest_sha256: None,
        manifest_signature: None,
    }
}

/// An archive of `len` bytes that is not all one value (so a misplaced part shows).
fn archive(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

fn write(store: &dyn BackupStore, id: &str, body: &[u8]) {
    let mut writer = store.create_archive(id).expect("an archive starts");
    for chunk in body.chunks(1 << 20) {
        writer.write_chunk(chunk).expect("a chunk is written");
    }
    writer.finish().expect("the archive finishes");
}

fn read_all(mut stream: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("the stream reads");
    out
}

#[rstest]
fn an_archive_is_invisible_until_published_then_reads_back_whole(#[values(Kind::Local, Kind::S3)] kind: Kind) {
    let under = autonomy_lab::or_skip!(open(kind, "backup-store-publish"));
    let store = &*under.store;
    // Several multipart parts on S3, and a last short one.
    let body = archive(21 << 20);
    write(store, "bk-1", &body);
    assert!(!store.has_manifest("bk-1").unwrap(), "a backup before its manifest");
    assert_eq!(store.latest_backup_id().unwrap(), None);
    assert!(store.manifests().unwrap().is_empty());
    assert_eq!(
        store
            .leftovers()
            .unwrap()
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["bk-1"]
    );
    let mut staged = store.stage_unpublished("bk-1").expect("the unpublished archive stages");
    assert_eq!(read_all(&mut staged.file), body, "the staged unpublished archive");

    let manifest = manifest_of("bk-1", &body);
    store.publish(&manifest).expect("the backup publishes");
    assert!(store.has_manifest("bk-1").unwrap());
    assert_eq!(
        store.latest_backup_id().unwrap().as_ref().map(BackupId::as_str),
        Some("bk-1")
    );
    let read = store.manifest("bk-1").expect("the manifest opens");
    assert_eq!(
        (read.sha256.as_str(), read.size_bytes),
        (manifest.sha256.as_str(), manifest.size_bytes)
    );
    assert_eq!(store.manifests().unwrap().len(), 1);
    assert_eq!(store.file_state("bk-1").unwrap(), FileState::Present);
    assert!(
        store.leftovers().unwrap().is_empty(),
        "a published archive is no leftover"
    );
    assert_eq!(
        read_all(store.read_archive("bk-1").unwrap()),
        body,
        "the streamed archive"
    );
    assert_eq!(store.archive_sha256("bk-1").unwrap(), manifest.sha256);
    let mut staged = store.stage_archive("bk-1").expect("the archive stages");
    assert_eq!(staged.sha256().unwrap(), manifest.sha256, "the staged archive");
}

#[rstest]
fn a_published_manifest_is_never_overwritten(#[values(Kind::Local, Kind::S3)] kind: Kind) {
    let under = autonomy_lab::or_skip!(open(kind, "backup-store-once"));
    let store = &*under.store;
    let body = archive(4096);
    write(store, "bk-1", &body);
    store
        .publish(&manifest_of("bk-1", &body))
        .expect("the first publication");
    let mut other = manifest_of("bk-1", &body);
    other.epoch = 99;
    assert!(
        store.publish(&other).is_err(),
        "a second manifest for the same backup was accepted"
    );
    assert_eq!(
        store.manifest("bk-1").unwrap().epoch,
        1,
        "the first manifest was replaced"
    );
}

#[rstest]
fn an_unpublished_backup_is_no_backup_and_its_archive_a_removable_leftover(
    #[values(Kind::Local, Kind::S3)] kind: Kind,
) {
    let under = autonomy_lab::or_skip!(open(kind, "backup-store-unpublish"));
    let store = &*under.store;
    let body = archive(4096);
    write(store, "bk-1", &body);
    store.publish(&manifest_of("bk-1", &body)).expect("published");
    store.unpublish("bk-1").expect("unpublished");
    assert!(!store.has_manifest("bk-1").unwrap(), "the manifest is still there");
    assert!(store.manifest_ids().unwrap().is_empty(), "still listed");
    // On S3 an archive without its manifest is a leftover reconciliation removes; in the
    // directory it is an orphan listed nowhere (as after a crash between publication's renames).
    let listed: Vec<String> = store.leftovers().unwrap().into_iter().map(|(_, name)| name).collect();
    let leftovers = vec!["bk-1.dump".to_owned()];
    match kind {
        Kind::S3 => assert_eq!(listed, leftovers, "the archive is not a leftover"),
        Kind::Local => assert!(listed.is_empty(), "{listed:?}"),
    }
    assert_eq!(store.remove_leftovers(&leftovers).unwrap(), leftovers);
    assert!(
        matches!(store.read_archive("bk-1"), Err(BackupError::ArchiveMissing(_))),
        "the archive is still there"
    );
    store.unpublish("bk-1").expect("a manifest already gone is no error");
}

#[rstest]
fn an_unfinished_or_discarded_archive_leaves_nothing(#[values(Kind::Local, Kind::S3)] kind: Kind) {
    let under = autonomy_lab::or_skip!(open(kind, "backup-store-abort"));
    let store = &*under.store;
    let mut writer = store.create_archive("bk-1").unwrap();
    writer.write_chunk(&archive(9 << 20)).unwrap();
    drop(writer);
    assert!(store.leftovers().unwrap().is_empty(), "a dropped writer left something");
    if let Some(server) = &under.server {
        assert_eq!(
            server.uploads_in_progress(),
            Vec::<String>::new(),
            "a dropped writer's upload was not aborted"
        );
    }
    assert!(matches!(
        store.read_archive("bk-1"),
        Err(BackupError::ArchiveMissing(_))
    ));

    write(store, "bk-2", &archive(4096));
    store.discard("bk-2");
    assert!(store.leftovers().unwrap().is_empty(), "a discarded archive stayed");
    assert_eq!(store.file_state("bk-2").unwrap(), FileState::BothMissing);

    write(store, "bk-3", &archive(4096));
    let names: Vec<String> = store.leftovers().unwrap().into_iter().map(|(_, name)| name).collect();
    assert_eq!(store.remove_leftovers(&names).unwrap(), names);
    assert!(store.leftovers().unwrap().is_empty());
}

#[rstest]
fn what_is_missing_or_damaged_is_named(#[values(Kind::Local, Kind::S3)] kind: Kind) {
    let under = autonomy_lab::or_skip!(open(kind, "backup-store-missing"));
    let store = &*under.store;
    assert!(matches!(store.manifest("bk-9"), Err(BackupError::NotFound(_))));
    assert!(matches!(
        store.read_archive("bk-9"),
        Err(BackupError::ArchiveMissing(_))
    ));
    assert!(matches!(
        store.stage_archive("bk-9"),
        Err(BackupError::ArchiveMissing(_))
    ));
    assert!(store.manifest("../x").is_err(), "an id that is no id was looked up");
}

/// The S3 store signs its requests: a wrong secret is refused by the server, and says so.
#[test]
fn the_s3_store_is_refused_with_a_wrong_secret() {
    let (scratch, server) = autonomy_lab::or_skip!(s3_server("backup-store-secret"));
    let mut settings = server.settings("");
    settings.secret_access_key = "not-the-secret".into();
    let store = S3Store::open(&settings, scratch.path()).expect("opening does not call the server");
    let error = store.latest_backup_id().expect_err("a wrong secret was accepted");
    assert!(
        error.to_string().contains("403") && error.to_string().contains("SignatureDoesNotMatch"),
        "{error}"
    );
}

/// On S3 a damaged manifest object is refused as untrusted, as a damaged file is.
#[test]
fn a_damaged_manifest_object_is_untrusted() {
    let under = autonomy_lab::or_skip!(open(Kind::S3, "backup-store-damaged"));
    let server = under.server.as_ref().unwrap();
    let body = archive(4096);
    write(&*under.store, "bk-1", &body);
    under.store.publish(&manifest_of("bk-1", &body)).unwrap();
    let path = server.object_path("cluster-a/bk-1.json");
    let mut stored = std::fs::read(&path).expect("the manifest object is a file of the server");
    let at = stored.iter().position(|b| *b == b'"').unwrap() + 1;
    stored[at] ^= 0x01;
    std::fs::write(&path, stored).unwrap();
    assert!(
        matches!(under.store.manifest("bk-1"), Err(BackupError::ManifestUntrusted { .. })),
        "a damaged manifest was trusted"
    );
}

/// A staged copy a killed node left in its staging directory is removed when the store opens
/// again; nothing else there is touched.
#[test]
fn stale_staged_copies_are_removed_when_the_s3_store_opens() {
    let (scratch, server) = autonomy_lab::or_skip!(s3_server("backup-store-staged"));
    let staging = scratch.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join(".staged-abc123.dump"), b"left by a killed node").unwrap();
    std::fs::write(staging.join("operator-notes.txt"), b"not ours").unwrap();
    S3Store::open(&server.settings(""), &staging).expect("the store opens");
    assert!(
        !staging.join(".staged-abc123.dump").exists(),
        "the stale staged copy stayed"
    );
    assert!(
        staging.join("operator-notes.txt").exists(),
        "a file that is not a staged copy was removed"
    );
}
