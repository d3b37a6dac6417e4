//! FUSE passthrough for read-only opens, between two real daemons in
//! network namespaces (root, FUSE, a kernel with passthrough): reads do not
//! reach the daemon, a writer waits for passthrough readers of its file, a
//! reader of a file open for writing (or written since the mount) goes
//! through safekit, so a reader that stays never blocks that file's writer;
//! a reader that stays on a file never written since the mount makes its
//! writer fail instead of hang (the limit that remains), and the read-only
//! secondary serves its copy the same way. Without root these tests say so
//! and pass, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::{pair, rt, wait_log};
use safekit_bin::demo::Demo;

const RFS: &str = r#"  <rfs locktimeout="5s" sendtimeout="5s">
    <replicated dir="%DIR%" mode="read_only"/>
  </rfs>"#;

fn privileged() -> bool {
    common::privileged("passthrough test needs root, FUSE, iproute2 and nsenter", &["ip", "nsenter"], true)
}

/// The `rfs.reads` counters of node `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reads {
    passthrough: u64,
    normal: u64,
    served: u64,
    waited: u64,
}

fn number_before(s: &str, word: &str) -> u64 {
    let head = &s[..s.find(word).unwrap_or_else(|| panic!("no {word:?} in {s:?}"))];
    head.trim_end()
        .rsplit([' ', '(', ','])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {word:?} in {s:?}"))
}

fn number_after(s: &str, word: &str) -> u64 {
    let tail = &s[s.find(word).unwrap_or_else(|| panic!("no {word:?} in {s:?}")) + word.len()..];
    tail.trim_start().split([';', ' ']).next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no count after {word:?} in {s:?}"))
}

/// The counters once they stopped moving: `state -v` shows the module's
/// report, refreshed when its engine wakes (at least every heartbeat), so a
/// reading is trusted when it did not change over two seconds.
fn reads(demo: &Demo, i: usize) -> (String, Reads) {
    let end = Instant::now() + common::WAIT;
    let mut last = read_once(demo, i);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        let now = read_once(demo, i);
        if now.1 == last.1 {
            return now;
        }
        assert!(Instant::now() < end, "the counters never settled: {}", now.0);
        last = now;
    }
}

fn read_once(demo: &Demo, i: usize) -> (String, Reads) {
    let (code, st) = common::safekit(demo, i, &["state", "-m", "demo", "-v"]);
    assert_eq!(code, 0, "{st}");
    let line = st.lines().find(|l| l.contains("rfs.reads")).unwrap_or_else(|| panic!("no rfs.reads in {st}")).to_string();
    let r = Reads {
        passthrough: number_before(&line, "passthrough, "),
        normal: number_before(&line, "through safekit (now"),
        served: number_after(&line, "read requests served:"),
        waited: number_after(&line, "writers that waited:"),
    };
    (line, r)
}

/// Runs `script` with `sh` in node `i`'s namespaces, F set to `file`.
fn sh(demo: &Demo, i: usize, file: &Path, script: &str) -> std::process::Output {
    demo.in_node(i).unwrap().args(["env", &format!("F={}", file.display()), "sh", "-c", script]).output().unwrap()
}

#[test]
fn read_only_opens_use_passthrough_and_writers_wait_for_them() {
    let _serial = common::serial();
    if !privileged() {
        return;
    }
    let mut demo = Demo::setup().unwrap();
    // Passthrough reads are an opt-in (see the next test for the default).
    demo.set_daemon_env("SAFEKIT_PASSTHROUGH", "1");
    let shared = demo.enable_replication(RFS).unwrap();
    let rt = rt();
    rt.block_on(pair(&mut demo, 0));
    let (line, _) = reads(&demo, 0);
    if !line.contains(": passthrough;") {
        // The kernel (6.9 or later, CONFIG_FUSE_PASSTHROUGH) decides.
        assert!(std::env::var("SAFEKIT_REQUIRE_PRIVILEGED").as_deref() != Ok("1"), "this kernel does not offer FUSE passthrough: {line}");
        eprintln!("SKIPPED: this kernel does not offer FUSE passthrough ({line})");
        return;
    }
    let f = shared.join("data.bin");
    let (real1, real2) = (demo.data_dir(0).join("data.bin"), demo.data_dir(1).join("data.bin"));
    // Files not yet opened for writing through this mount (a file written
    // once since the mount is never passthrough: see below), the same on
    // both nodes.
    let g = shared.join("fresh.bin");
    for (name, len) in [("data.bin", 1 << 20), ("fresh.bin", 4096)] {
        let bytes: Vec<u8> = (0..len).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        std::fs::write(demo.data_dir(0).join(name), &bytes).unwrap();
        std::fs::write(demo.data_dir(1).join(name), &bytes).unwrap();
    }

    // A read-only open is served by the kernel: no read request reaches
    // safekit, and the bytes are the primary's (and the secondary's).
    let (_, before) = reads(&demo, 0);
    let out = demo.in_node(0).unwrap().arg("cat").arg(&f).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&real1).unwrap());
    assert_eq!(out.stdout, std::fs::read(&real2).unwrap());
    let (line, after) = reads(&demo, 0);
    assert_eq!(after.passthrough, before.passthrough + 1, "{line}");
    assert_eq!(after.served, before.served, "a passthrough read reached safekit: {line}");

    // A writer waits until the passthrough reader closes, then its bytes
    // are replicated like any other.
    let log = demo.node_dir(0).join("order.txt");
    let out = sh(
        &demo,
        0,
        &f,
        &format!(
            "exec 3<\"$F\"; (exec 3<&-; printf appended >> \"$F\" && echo written >> {log}) & sleep 1; echo closing >> {log}; exec 3<&-; wait",
            log = log.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "closing\nwritten\n", "the writer did not wait for the reader");
    let (line, now) = reads(&demo, 0);
    assert_eq!(now.waited, after.waited + 1, "{line}");
    assert!(std::fs::read(&real2).unwrap().ends_with(b"appended"), "the waiting writer's bytes are not on the secondary");

    // A reader of a file open for writing goes through safekit and sees
    // what the writer wrote.
    let out = sh(&demo, 0, &f, "exec 4>>\"$F\"; printf more >&4; tail -c 4 \"$F\"; exec 4>&-");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "more");
    let (line, later) = reads(&demo, 0);
    assert_eq!(later.passthrough, now.passthrough, "{line}");
    assert!(later.normal >= now.normal + 2 && later.served > now.served, "{line}");

    // A file written since the mount is never held in passthrough: a reader
    // that stays (`tail -f`) does not make its writer wait or fail.
    let out = sh(&demo, 0, &f, "exec 3<\"$F\"; if printf end >> \"$F\"; then echo opened; else echo refused; fi; exec 3<&-");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "opened", "{out:?}");
    assert!(std::fs::read(&real2).unwrap().ends_with(b"moreend"));
    let (line, sticky) = reads(&demo, 0);
    assert_eq!((sticky.passthrough, sticky.waited), (later.passthrough, later.waited), "{line}");

    // The limit that remains: a reader that opened a file never written
    // since the mount, and stays longer than the writer may wait. The
    // writer gets an error (it never hangs), the log says why, and once the
    // reader is gone writing works again.
    let out = sh(&demo, 0, &g, "exec 3<\"$F\"; if printf x >> \"$F\"; then echo opened; else echo refused; fi; exec 3<&-");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "refused", "{out:?}");
    rt.block_on(wait_log(&demo, 0, "the kernel refuses mixing them (EIO) until they close"));
    let out = sh(&demo, 0, &g, "printf end >> \"$F\"");
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(demo.data_dir(1).join("fresh.bin")).unwrap().ends_with(b"end"));

    // The read-only secondary serves its copy with passthrough too, and a
    // read sees the latest replicated bytes (the real file, no stale cache).
    let (_, sec) = reads(&demo, 1);
    let out = demo.in_node(1).unwrap().arg("cat").arg(&f).output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(&real1).unwrap());
    let (line, sec2) = reads(&demo, 1);
    assert_eq!(sec2.passthrough, sec.passthrough + 1, "{line}");
    assert_eq!(sec2.served, sec.served, "{line}");

    // Nothing is left counted as open (RELEASE follows close shortly).
    let end = Instant::now() + common::WAIT;
    loop {
        let (line, _) = read_once(&demo, 0);
        if line.contains("(now open: 0, 0)") {
            break;
        }
        assert!(Instant::now() < end, "{line}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read(&real1).unwrap(), std::fs::read(&real2).unwrap());
}

/// The default mount (no passthrough): a reader that opened a file first
/// and stays never makes a writer of that file wait or fail. With
/// passthrough reads on by default, this writer waited 5 s and got EIO.
#[test]
fn by_default_a_staying_reader_never_blocks_a_writer() {
    let _serial = common::serial();
    if !privileged() {
        return;
    }
    let mut demo = Demo::setup().unwrap();
    let shared = demo.enable_replication(RFS).unwrap();
    let rt = rt();
    rt.block_on(pair(&mut demo, 0));
    let (line, before) = reads(&demo, 0);
    assert!(line.contains("no passthrough"), "{line}");
    // A file present on both nodes and never opened since the mount.
    let g = shared.join("fresh.bin");
    for i in 0..2 {
        std::fs::write(demo.data_dir(i).join("fresh.bin"), b"start").unwrap();
    }
    let out = sh(&demo, 0, &g, "exec 3<\"$F\"; if printf x >> \"$F\"; then echo opened; else echo refused; fi; exec 3<&-");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "opened", "{out:?}");
    let (line, after) = reads(&demo, 0);
    assert_eq!((after.passthrough, after.waited), (before.passthrough, before.waited), "{line}");
    let end = Instant::now() + common::WAIT;
    while std::fs::read(demo.data_dir(1).join("fresh.bin")).unwrap() != b"startx" {
        assert!(Instant::now() < end, "the append did not reach the secondary");
        std::thread::sleep(Duration::from_millis(100));
    }
}
