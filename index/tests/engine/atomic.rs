//! Replacing a partition while other threads search it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stabspace_index::{BuildParams, Partition};

use crate::common::{build, iid};

/// Generation g has 2,000 + g rows; every open must see one generation whole.
#[test]
fn readers_see_the_old_or_the_new_file_whole_while_it_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.stabidx");
    let base = iid(9, 2_040, 16);
    let params = BuildParams {
        m: 8,
        ef_construction: 32,
        flat_threshold: 0,
        ..BuildParams::default()
    };
    build(&path, &base[..2_000], &params);
    let first = Partition::open(&path).unwrap();
    let query = base[2_039].clone();
    let before = first.search(&query, 5, 32).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done, query) = (path.clone(), done.clone(), query.clone());
            std::thread::spawn(move || {
                let mut opens = 0;
                while !done.load(Ordering::Relaxed) || opens == 0 {
                    let p = Partition::open(&path).expect("open during replacement");
                    let n = p.len();
                    assert!((2_000..=2_012).contains(&n), "saw {n} rows");
                    assert_eq!(p.id(n - 1).unwrap(), format!("r{}", n - 1), "a whole file");
                    let hits = p.search(&query, 5, 32).expect("search during replacement");
                    assert_eq!(hits.len(), 5);
                    opens += 1;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                opens
            })
        })
        .collect();
    for g in 1..=12 {
        build(&path, &base[..2_000 + g], &params);
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
    // The map opened before all replacements still answers as it did.
    assert_eq!(first.search(&query, 5, 32).unwrap(), before);
    assert_eq!(first.len(), 2_000);
    first.verify().unwrap();
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["live.stabidx"]);
}
