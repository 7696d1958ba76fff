//! What every [`ObjectStore`] must do, as one suite each implementation runs: memory and folders
//! here, S3 against the emulator and LocalStack in `dataflow-aws`. Each check says what
//! differed; the suite needs an empty bucket (or a prefix nothing else writes under).

use std::io::Read;

use crate::{Body, ObjectMeta, ObjectStore, StoreError};

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

fn keys(v: &[ObjectMeta]) -> Vec<&str> {
    v.iter().map(|m| m.key.as_str()).collect()
}

async fn put(store: &dyn ObjectStore, bucket: &str, key: &str, bytes: &[u8]) -> Result<(), String> {
    store
        .put(
            bucket,
            key,
            Body::Bytes(bytes.to_vec()),
            "application/octet-stream",
        )
        .await
        .map_err(|e| format!("put {key}: {e}"))
}

/// Runs every check under `prefix` in `bucket` (`prefix` ends with `/` or is empty).
pub async fn object_store(
    store: &dyn ObjectStore,
    bucket: &str,
    prefix: &str,
) -> Result<(), String> {
    let k = |s: &str| format!("{prefix}{s}");
    let err = |what: &str, e: StoreError| format!("{what}: {e}");

    // Missing objects: None, not errors; deleting one is not an error either.
    check!(
        store
            .head(bucket, &k("none"))
            .await
            .map_err(|e| err("head", e))?
            .is_none(),
        "head of a missing object is not None"
    );
    check!(
        store
            .get(bucket, &k("none"))
            .await
            .map_err(|e| err("get", e))?
            .is_none(),
        "get of a missing object is not None"
    );
    check!(
        store
            .get_range(bucket, &k("none"), 0, 1)
            .await
            .map_err(|e| err("get_range", e))?
            .is_none(),
        "ranged get of a missing object is not None"
    );
    store
        .delete(bucket, &k("none"))
        .await
        .map_err(|e| err("delete missing", e))?;
    check!(
        matches!(
            store.open(bucket, &k("none"), None).await,
            Err(StoreError::NotFound { .. })
        ),
        "opening a missing object is not NotFound"
    );

    // Bytes in, the same bytes out; head gives the size and an ETag that open accepts.
    put(store, bucket, &k("obj"), b"0123456789").await?;
    let got = store
        .get(bucket, &k("obj"))
        .await
        .map_err(|e| err("get", e))?;
    check!(
        got.as_deref() == Some(&b"0123456789"[..]),
        "get returned {got:?}"
    );
    let meta = store
        .head(bucket, &k("obj"))
        .await
        .map_err(|e| err("head", e))?
        .ok_or("head of a written object is None")?;
    check!(
        meta.key == k("obj") && meta.size == 10,
        "head returned {meta:?}"
    );
    let etag = meta.etag.clone().ok_or("head gave no ETag")?;
    let mut reader = store
        .open(bucket, &k("obj"), Some(&etag))
        .await
        .map_err(|e| err("open with its ETag", e))?;
    // The reader is blocking: it is read on a blocking thread, as the ETL does.
    let read = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        reader.read_to_end(&mut v).map(|_| v)
    })
    .await
    .map_err(|e| format!("reading: {e}"))?
    .map_err(|e| format!("reading: {e}"))?;
    check!(read == b"0123456789", "open read {read:?}");

    // Ranges: a slice, one cut at the end, none past it.
    for (offset, len, want) in [
        (0, 3, &b"012"[..]),
        (3, 0, b""),
        (7, 3, b"789"),
        (8, 100, b"89"),
        (10, 5, b""),
        (u64::MAX, u64::MAX, b""),
    ] {
        let r = store
            .get_range(bucket, &k("obj"), offset, len)
            .await
            .map_err(|e| err("get_range", e))?;
        check!(
            r.as_deref() == Some(want),
            "range {offset}+{len} gave {r:?}"
        );
    }

    // An overwrite is a new version: a new ETag, and opening the old one says Changed.
    put(store, bucket, &k("obj"), b"a longer second version").await?;
    let meta2 = store
        .head(bucket, &k("obj"))
        .await
        .map_err(|e| err("head", e))?
        .ok_or("head after overwrite is None")?;
    check!(meta2.size == 23, "size after overwrite {}", meta2.size);
    check!(
        meta2.etag.is_some() && meta2.etag != meta.etag,
        "the ETag did not change"
    );
    check!(
        matches!(
            store.open(bucket, &k("obj"), Some(&etag)).await,
            Err(StoreError::Changed { .. })
        ),
        "opening a replaced version is not Changed"
    );

    // Listings: by prefix (one that ends a folder, cuts a name, names nothing), in key order,
    // with sizes and ETags, and from a position.
    let names = [
        "daily/event_date=2024-01-05/part-1.parquet",
        "daily/event_date=2024-01-31/part-2.parquet",
        "daily/event_date=2024-02-01/part-3.parquet",
        "daily/_changes/0000000000005-x-2024-01",
        "other.txt",
    ];
    for n in names {
        put(store, bucket, &k(n), n.as_bytes()).await?;
    }
    let mut all: Vec<String> = names.iter().map(|n| k(n)).collect();
    all.push(k("obj"));
    all.sort();
    for sub in [
        "",
        "daily/",
        "daily/event_date=2024-01-",
        "daily/_changes/",
        "oth",
        "zzz/",
    ] {
        let listed = store
            .list(bucket, &k(sub))
            .await
            .map_err(|e| err("list", e))?;
        let mut got: Vec<&str> = keys(&listed);
        got.sort();
        let want: Vec<&str> = all
            .iter()
            .filter(|x| x.starts_with(&k(sub)))
            .map(String::as_str)
            .collect();
        check!(got == want, "list {sub:?}: {got:?}, want {want:?}");
        for m in &listed {
            let expected = if m.key == k("obj") {
                23
            } else {
                (m.key.len() - prefix.len()) as u64
            };
            check!(m.size == expected && m.etag.is_some(), "listed {m:?}");
        }
    }
    let after = store
        .list_after(bucket, &k("daily/"), &k(names[0]))
        .await
        .map_err(|e| err("list_after", e))?;
    check!(
        keys(&after)
            == [k(names[1]), k(names[2])]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        "list_after gave {:?}",
        keys(&after)
    );

    // Deleting removes the object from reads and listings.
    store
        .delete(bucket, &k("other.txt"))
        .await
        .map_err(|e| err("delete", e))?;
    check!(
        store
            .get(bucket, &k("other.txt"))
            .await
            .map_err(|e| err("get", e))?
            .is_none(),
        "a deleted object is still read"
    );
    let listed = store
        .list(bucket, &k("oth"))
        .await
        .map_err(|e| err("list", e))?;
    check!(
        listed.is_empty(),
        "a deleted object is still listed: {listed:?}"
    );
    store.ping(bucket).await.map_err(|e| err("ping", e))?;
    Ok(())
}
