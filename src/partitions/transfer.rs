//! Moving partition files to and from object storage: a multipart upload
//! (aborted on any failure, so no incomplete upload is left behind), a
//! download verified into the local cache ([`super::fetch`]), and the sweep
//! of objects no manifest row names (`index gc`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::fetch::{ObjectCache, Verifier};
use super::store::{Collected, EXTENSION};
use crate::error::{Error, Result};
use crate::storage::manifest::{self, ManifestRow};
use crate::storage::Db;

/// Multipart upload part size.
const PART_BYTES: usize = 8 << 20;

/// Upload `file` to `key` as a multipart upload; `shown` names it in messages.
pub async fn upload(objects: &dyn ObjectStore, key: &str, file: &Path, shown: &str) -> Result<()> {
    use tokio::io::AsyncReadExt;
    let failed = |e: object_store::Error| Error::Invalid(format!("uploading {shown} failed: {e}"));
    let upload = objects
        .put_multipart(&ObjectPath::from(key))
        .await
        .map_err(failed)?;
    let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let written: Result<()> = async {
        let mut f = tokio::fs::File::open(file)
            .await
            .map_err(|e| Error::io(file, e))?;
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            let n = f.read(&mut buf).await.map_err(|e| Error::io(file, e))?;
            if n == 0 {
                return Ok(());
            }
            w.wait_for_capacity(4).await.map_err(failed)?;
            w.write(&buf[..n]);
        }
    }
    .await;
    match written {
        Ok(()) => w.finish().await.map(|_| ()).map_err(failed),
        Err(e) => {
            // The parts uploaded so far would otherwise stay in the bucket,
            // invisible to a listing (and to `index gc`).
            let _ = w.abort().await;
            Err(e)
        }
    }
}

/// Download `row`'s object into `cache`, verified against its length and
/// SHA-256; the cached file.
pub async fn download(
    objects: &dyn ObjectStore,
    cache: &ObjectCache,
    row: &ManifestRow,
    shown: &str,
) -> Result<PathBuf> {
    let started = Instant::now();
    let unreachable = |e: object_store::Error| {
        Error::Invalid(format!("cannot fetch {shown} from the partition store: {e}"))
    };
    let got = objects
        .get(&ObjectPath::from(row.object_key.as_str()))
        .await
        .map_err(unreachable)?;
    let mut v = Verifier::create(cache.part_path(&row.sha256))?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let wrote = match chunk {
            Ok(b) => v.write(&b),
            Err(e) => Err(unreachable(e)),
        };
        if let Err(e) = wrote {
            v.discard();
            return Err(e);
        }
    }
    let whole = v.finish(shown, row.size_bytes as u64, &row.sha256)?;
    cache
        .admit(
            &row.sha256,
            &whole,
            row.size_bytes as u64,
            started.elapsed().as_secs_f64(),
        )
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&whole);
        })
}

/// `index gc` of a remote store: superseded versions whose successor was
/// published more than `grace` ago are forgotten; then objects under `root`
/// (this database's keys) that no version names and that are older than
/// `grace` are deleted. Names committed while the bucket was listed are
/// kept; a node that fetched a version keeps its cached copy. `bucket`
/// (`s3://BUCKET`) names objects in messages.
pub async fn collect(
    objects: &dyn ObjectStore,
    db: &Db,
    root: &str,
    bucket: &str,
    grace: std::time::Duration,
    dry_run: bool,
) -> Result<Collected> {
    let now = chrono::Utc::now();
    let cutoff = chrono::Duration::from_std(grace)
        .ok()
        .and_then(|g| now.checked_sub_signed(g))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let old = |stamp: &str| {
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok_and(|t| t.with_timezone(&chrono::Utc) < cutoff)
    };
    let rows = manifest::all(db).await?;
    let mut out = Collected::default();
    for (i, r) in rows.iter().enumerate() {
        let successor = rows
            .get(i + 1)
            .filter(|n| n.model_id == r.model_id && n.scenario_set_id == r.scenario_set_id);
        if successor.is_some_and(|n| old(&n.published_at)) {
            out.versions.push(format!(
                "{} / {} generation {}",
                r.model_id, r.scenario_set_id, r.generation
            ));
            if !dry_run {
                manifest::remove_generation(db, &r.model_id, &r.scenario_set_id, r.generation).await?;
            }
        }
    }
    let names =
        |rows: Vec<ManifestRow>| -> HashSet<String> { rows.into_iter().map(|r| r.object_key).collect() };
    let named = names(manifest::all(db).await?);
    let mut listed = Vec::new();
    let mut listing = objects.list(Some(&ObjectPath::from(root)));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::Invalid(format!("listing {bucket}/{root} failed: {e}")))?;
        let key = meta.location.to_string();
        if !named.contains(&key) && key.ends_with(&format!(".{EXTENSION}")) {
            listed.push(meta);
        }
    }
    let named = names(manifest::all(db).await?);
    for meta in listed {
        let key = meta.location.to_string();
        if named.contains(&key) {
            continue;
        }
        if meta.last_modified >= cutoff {
            out.kept_young += 1;
            continue;
        }
        if !dry_run {
            objects
                .delete(&meta.location)
                .await
                .map_err(|e| Error::Invalid(format!("deleting {bucket}/{key} failed: {e}")))?;
        }
        out.objects.push((format!("{bucket}/{key}"), meta.size));
    }
    Ok(out)
}
