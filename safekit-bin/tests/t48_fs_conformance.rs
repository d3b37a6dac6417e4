//! The replicated mount behaves like a local file system and the
//! secondary's copy is the primary's in every attribute (root, FUSE,
//! namespaces, pjdfstest): pjdfstest through the primary's mount with the
//! secondary attached, then ordinary workloads (modes under umask 000,
//! setuid files, fifos, device nodes, links, times, xattrs, ACLs, the
//! create-unlink-use temp file, the exerciser, SQLite in WAL mode), then
//! both nodes' real trees compared: type, mode, owner, mtime in ns, link
//! count, size, content, symlink target, every xattr. Both kernel cache
//! modes (the default, passthrough reads, writeback cache). Without root these tests say so and
//! pass, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::{exe, pair, rt};
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode};
use safekit_bin::demo::Demo;
use safekit_core::engine::{CommandKind, State};

// Small zones, so that a reintegration copying too little shows.
const RFS: &str = r#"  <rfs locktimeout="5s" sendtimeout="5s" ruzone_blocksize="65536">
    <replicated dir="%DIR%" mode="read_only"/>
  </rfs>"#;

/// pjdfstest's configuration: the features Linux has, two unprivileged
/// users Debian always has.
const PJD_CONF: &str = r#"[features]
posix_fallocate = {}
utime_now = {}
utimensat = {}
rename_ctime = {}

[settings]
naptime = 0.01
allow_remount = false

[dummy_auth]
entries = [
   ["nobody", "nogroup"],
   ["daemon", "daemon"],
]
"#;

fn privileged() -> bool {
    common::privileged(
        "conformance test needs root, FUSE, iproute2, nsenter, setfacl, python3",
        &["ip", "nsenter", "setfacl", "python3"],
        true,
    )
}

/// The pjdfstest binary (`cargo install pjdfstest`, which `.ci/run` does).
fn pjdfstest() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_default();
    let found = std::env::var("PJDFSTEST")
        .ok()
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var("PATH").unwrap_or_default().split(':').map(|d| Path::new(d).join("pjdfstest")))
        .chain([PathBuf::from("/opt/pjdfstest/bin/pjdfstest"), Path::new(&home).join(".cargo/bin/pjdfstest")])
        .find(|p| p.is_file());
    found.unwrap_or_else(|| panic!("pjdfstest is missing: install it with `cargo install pjdfstest --root /opt/pjdfstest` (.ci/run does)"))
}

/// Everything `stat`, `readlink` and `getxattr` tell of entry `name` of
/// the open directory `dir`, except atime (follows the primary's atime
/// policy, see docs/DESIGN.md) and ctime (no system call sets it). Through
/// directory handles, so paths longer than PATH_MAX are compared too.
fn describe(dir: &OwnedFd, name: &OsStr) -> String {
    let st = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
    let what = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "dir".to_string(),
        libc::S_IFLNK => format!("symlink -> {:?}", nix::fcntl::readlinkat(dir.as_fd(), name).unwrap()),
        libc::S_IFREG => {
            let fd = openat(dir.as_fd(), name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut data).unwrap();
            format!("file hash {}", blake3::hash(&data).to_hex())
        }
        _ => format!("special rdev {}", st.st_rdev),
    };
    // The xattr calls take a path: /proc/self/fd/DIR/NAME is always short.
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let mut xattrs: Vec<String> =
        xattrs(&path).into_iter().map(|(n, v)| format!("{}={}", String::from_utf8_lossy(&n), hex::encode(v))).collect();
    xattrs.sort();
    format!(
        "{what} mode {:o} owner {}:{} nlink {} size {} mtime {}.{:09} xattrs [{}]",
        st.st_mode,
        st.st_uid,
        st.st_gid,
        st.st_nlink,
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR { 0 } else { st.st_size },
        st.st_mtime,
        st.st_mtime_nsec,
        xattrs.join(", ")
    )
}

/// Every extended attribute of `p` (not following a final symlink).
fn xattrs(p: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut names = vec![0u8; 65536];
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    names.truncate(usize::try_from(n).unwrap_or(0));
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cn = std::ffi::CString::new(name).unwrap();
        let mut v = vec![0u8; 65536];
        let k = unsafe { libc::lgetxattr(c.as_ptr(), cn.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        v.truncate(usize::try_from(k).unwrap_or(0));
        out.push((name.to_vec(), v));
    }
    out
}

fn walk(dir: &OwnedFd, rel: &str, out: &mut BTreeMap<String, String>) {
    let fd = openat(dir.as_fd(), ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    let mut names: Vec<std::ffi::OsString> = nix::dir::Dir::from_fd(fd)
        .unwrap()
        .iter()
        .map(|e| OsStr::from_bytes(e.unwrap().file_name().to_bytes()).to_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    for name in names {
        let key = format!("{rel}/{}", name.to_string_lossy());
        out.insert(key.clone(), describe(dir, &name));
        let st = fstatat(dir.as_fd(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).unwrap();
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let sub = openat(
                dir.as_fd(),
                name.as_os_str(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .unwrap();
            walk(&sub, &key, out);
        }
    }
}

fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let parent = nix::fcntl::open(root.parent().unwrap(), OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    out.insert(".".to_string(), describe(&parent, root.file_name().unwrap()));
    let fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    walk(&fd, "", &mut out);
    out
}

fn differences(demo: &Demo) -> Vec<String> {
    let (a, b) = (snapshot(&demo.data_dir(0)), snapshot(&demo.data_dir(1)));
    a.keys()
        .chain(b.keys().filter(|k| !a.contains_key(*k)))
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            // Deep paths: their end is enough to tell which.
            let short = if k.len() > 100 { format!("…{} ({} bytes)", &k[k.len() - 60..], k.len()) } else { k.clone() };
            format!("{short}:\n  node1 {:?}\n  node2 {:?}", a.get(k), b.get(k))
        })
        .collect()
}

/// The secondary applies the stream behind the primary: waits (bounded)
/// until the copies are equal; what still differs then.
fn settle(demo: &Demo) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let d = differences(demo);
        if d.is_empty() || Instant::now() > end {
            return d;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `args` in node 1 (the primary's namespaces); stdout + stderr, or
/// the failure as a problem.
fn run(demo: &Demo, problems: &mut Vec<String>, what: &str, args: &[&str]) -> String {
    let out = demo.in_node(0).unwrap().args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        problems.push(format!("{what} failed:\n{text}"));
    }
    text
}

/// What a user's applications do to files, in the replicated directory.
const ORDINARY: &str = r#"
cd "$D"
umask 000
mkdir -m 0777 open-dir
mkdir -p tree/a/b/c
touch tree/a/empty
echo data > tree/a/b/file
ln -s b/file tree/a/link
ln tree/a/b/file tree/a/hardlink
mkfifo -m 0666 tree/fifo
mknod tree/null c 1 3
python3 -c 'import os; os.close(os.open("umask-file", os.O_CREAT | os.O_WRONLY, 0o666))'
umask 022
printf x > suid; chmod 4755 suid
printf x > sgid; chmod 2755 sgid
mkdir sgid-dir; chmod 2775 sgid-dir; chown daemon:daemon sgid-dir
touch sgid-dir/inherits
setpriv --reuid=daemon --regid=daemon --clear-groups sh -c 'printf y > sgid-dir/by-daemon; chmod 6755 sgid-dir/by-daemon'
touch -d '2001-02-03 04:05:06.123456789' old
touch -h -d '2002-02-03 04:05:06' tree/a/link
setfattr -n user.k -v value tree/a/b/file
touch acl; setfacl -m u:daemon:rw acl
mkdir acl-dir; setfacl -d -m u:daemon:rwx acl-dir; touch acl-dir/child
# What the ACL grants is allowed, what it does not is refused, as on ext4.
setpriv --reuid=daemon --regid=daemon --clear-groups sh -c 'printf granted >> acl'
if setpriv --reuid=nobody --regid=nogroup --clear-groups sh -c 'printf refused >> acl' 2>/dev/null; then echo "ACL: nobody could write"; exit 1; fi
setpriv --reuid=daemon --regid=daemon --clear-groups sh -c 'printf inherited > acl-dir/child'
mv tree/a/b tree/a/moved
rm tree/a/empty
head -c 3000000 /dev/urandom > shrink
head -c 3000000 /dev/urandom > renamed-over
rmdir tree/a/b 2>/dev/null || true
"#;

/// What changes while the secondary is away (run twice).
const WHILE_ALONE: &str = r#"
cd "$D"
n=$(ls -d late* 2>/dev/null | wc -l)
mkdir -p late$n/a/b
echo x > late$n/a/b/f
touch late$n/empty
mkfifo late$n/fifo
ln -s a late$n/link
setfacl -d -m u:daemon:rx late$n/a
touch -d '2003-01-02 03:04:05' late$n/a/b
rm -rf tree/a/moved
echo more >> tree/a/hardlink
chmod 700 open-dir
# Content changes the dirty maps must carry (no whole copy by mtime any more).
truncate -s 1000 shrink; truncate -s 3000000 shrink
head -c 3000000 /dev/urandom > newsrc; mv newsrc renamed-over
"#;

/// A database's temp file: created, unlinked, then used through its handle.
const TEMP_FILE: &str = r#"
import os, sys
d = sys.argv[1]
fd = os.open(os.path.join(d, "tmp-unlinked"), os.O_CREAT | os.O_RDWR, 0o600)
os.unlink(os.path.join(d, "tmp-unlinked"))
os.write(fd, b"scratch" * 1000)
os.fsync(fd); os.fdatasync(fd)
os.ftruncate(fd, 10)
os.fchmod(fd, 0o640)
os.utime(fd, (1, 2))
os.setxattr(fd, "user.t", b"v")
st = os.fstat(fd)
assert st.st_size == 10 and st.st_mode & 0o777 == 0o640 and st.st_mtime == 2, st
os.close(fd)
import errno
try:
    os.close(os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600))
    print("O_TMPFILE: ok")
except OSError as e:
    print("O_TMPFILE: " + errno.errorcode[e.errno])
"#;

/// Entries whose path from the replicated root is longer than PATH_MAX,
/// each reached by the application with a short relative path.
const DEEP: &str = r#"
import os, sys
os.chdir(sys.argv[1])
for i in range(24):
    os.mkdir("d" * 200)
    os.chdir("d" * 200)
with open("leaf", "w") as f:
    f.write("deep")
    os.fsync(f.fileno())
os.symlink("leaf", "link")
os.mkfifo("fifo")
os.chmod("leaf", 0o600)
os.setxattr("leaf", "user.deep", b"1")
os.rename("leaf", "leaf2")
os.link("leaf2", "leaf3")
os.unlink("leaf3")
"#;

/// A directory removed while a process still holds it, then a new one: the
/// real file system gives the new one the old inode number at once.
const REUSE: &str = r#"
import os, sys
os.chdir(sys.argv[1])
for i in range(200):
    os.mkdir("r")
    held = os.open("r", os.O_PATH)
    os.rmdir("r")
    os.mkdir("s")
    open("s/f", "w").close()
    os.unlink("s/f")
    os.rmdir("s")
    os.close(held)
"#;

/// SQLite in WAL mode, many small transactions.
const SQLITE: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1] + "/db.sqlite")
c.execute("pragma journal_mode=wal")
c.execute("create table if not exists t (k integer primary key, v text)")
for i in range(300):
    c.execute("insert into t (v) values (?)", ("row %d" % i,))
    c.commit()
c.execute("pragma wal_checkpoint(truncate)")
c.close()
"#;

/// `env`: the daemons' switch for the kernel cache mode (none: the default).
fn conformance(mode: &str, env: Option<&str>) {
    let _serial = common::serial();
    if !privileged() {
        return;
    }
    let pjd = pjdfstest();
    let mut demo = Demo::setup().unwrap();
    if let Some(var) = env {
        demo.set_daemon_env(var, "1");
    }
    let shared = demo.enable_replication(RFS).unwrap();
    let rt = rt();
    rt.block_on(pair(&mut demo, 0));
    let conf = demo.node_dir(0).join("pjdfstest.toml");
    std::fs::write(&conf, PJD_CONF).unwrap();
    let d = shared.display().to_string();
    let work = format!("{d}/work");
    let mut problems = Vec::new();
    let secondary_kept = |demo: &Demo, problems: &mut Vec<String>, after: &str| {
        if rt.block_on(common::state(demo, 1)) != Some(State::Second) {
            problems.push(format!("the secondary was dropped during {after}"));
        }
    };

    // 1. pjdfstest through the primary's mount.
    // SAFEKIT_PJD_ROUNDS=N runs it N times (a campaign for rare failures).
    let rounds: usize = std::env::var("SAFEKIT_PJD_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    for round in 0..rounds {
        let dir = format!("{d}/pjd{round}");
        run(&demo, &mut problems, "mkdir", &["mkdir", "-m", "0755", &dir]);
        let args = [pjd.display().to_string(), "-c".into(), conf.display().to_string(), "-p".into(), dir];
        let text = run(&demo, &mut problems, "pjdfstest", &args.iter().map(String::as_str).collect::<Vec<_>>());
        let summary = text.lines().find(|l| l.starts_with("Summary:")).unwrap_or("no summary").to_string();
        println!("{mode}: pjdfstest {summary}");
        let skipped: Vec<&str> =
            text.lines().filter(|l| l.trim_end().ends_with("skipped")).filter_map(|l| l.split_whitespace().next()).collect();
        println!("{mode}: skipped: {}", skipped.join(" "));
        for l in text.lines().filter(|l| l.trim_end().ends_with("FAILED")) {
            problems.push(format!("pjdfstest round {round}: {}", l.split_whitespace().next().unwrap_or(l)));
        }
    }
    secondary_kept(&demo, &mut problems, "pjdfstest");
    problems.extend(settle(&demo).into_iter().map(|x| format!("after pjdfstest: {x}")));

    // 2. Ordinary workloads.
    run(&demo, &mut problems, "mkdir", &["mkdir", &work]);
    run(&demo, &mut problems, "ordinary operations", &["env", &format!("D={work}"), "sh", "-euc", ORDINARY]);
    let tmp = run(&demo, &mut problems, "the create-unlink-use temp file", &["python3", "-c", TEMP_FILE, &work]);
    // O_TMPFILE: refused as docs/DESIGN.md says (the FUSE library has no request for it).
    if !tmp.contains("O_TMPFILE: EOPNOTSUPP") && !tmp.contains("O_TMPFILE: ENOTSUP") {
        problems.push(format!("O_TMPFILE: expected the documented EOPNOTSUPP, got {tmp:?}"));
    }
    run(&demo, &mut problems, "operations deeper than PATH_MAX from the replicated root", &["python3", "-c", DEEP, &work]);
    run(&demo, &mut problems, "a new directory with a removed one's inode number", &["python3", "-c", REUSE, &work]);
    run(&demo, &mut problems, "SQLite", &["python3", "-c", SQLITE, &work]);
    // The exerciser compares with node 2's copy by path: a tree of its own.
    let fsx = format!("{work}/fsx");
    run(&demo, &mut problems, "mkdir", &["mkdir", &fsx]);
    let data1 = demo.data_dir(1).join("work/fsx").display().to_string();
    run(
        &demo,
        &mut problems,
        "the exerciser",
        &[&exe().display().to_string(), "demo-fsx", "--dir", &fsx, "--seed", "7", "--ops", "300", "--mirror", &data1],
    );
    // What the mount shows is what a local file system would.
    let modes = run(
        &demo,
        &mut problems,
        "stat",
        &[
            "sh",
            "-c",
            &format!("cd {work} && stat -c '%n %a' open-dir tree/fifo tree/null umask-file suid sgid sgid-dir/inherits sgid-dir/by-daemon acl-dir/child"),
        ],
    );
    for want in [
        "open-dir 777",
        "tree/fifo 666",
        "tree/null 666",
        "umask-file 666",
        "suid 4755",
        "sgid 2755",
        "sgid-dir/inherits 644",
        "sgid-dir/by-daemon 6755",
        "acl-dir/child 664",
    ] {
        if !modes.lines().any(|l| l == want) {
            problems.push(format!("expected {want:?} on the mount, got:\n{modes}"));
        }
    }
    secondary_kept(&demo, &mut problems, "the workloads");
    problems.extend(settle(&demo).into_iter().map(|x| format!("after the workloads: {x}")));

    // 3. The secondary away while the primary changes things, back with
    // zones only, then away again and back with a full synchronisation.
    for (how, command) in [("a zone reintegration", CommandKind::Start), ("a full reintegration", CommandKind::Second { fullsync: true })] {
        rt.block_on(async {
            demo.command(1, CommandKind::Stop).await.unwrap();
            demo.wait_state(0, State::Alone, common::WAIT).await.unwrap();
        });
        run(&demo, &mut problems, "changes while alone", &["env", &format!("D={work}"), "sh", "-euc", WHILE_ALONE]);
        rt.block_on(async {
            demo.command(1, command).await.unwrap();
            demo.wait_state(1, State::Second, common::WAIT).await.unwrap();
            demo.wait_state(0, State::Prim, common::WAIT).await.unwrap();
        });
        problems.extend(settle(&demo).into_iter().map(|x| format!("after {how}: {x}")));
    }
    if !problems.is_empty() {
        for i in 0..2 {
            println!("node{} log:\n{}", i + 1, rt.block_on(demo.log(i, 40)).join("\n"));
            let dl = std::fs::read_to_string(demo.node_dir(i).join("daemon.log")).unwrap_or_default();
            println!("node{} DEBUG:\n{}", i + 1, dl.lines().filter(|l| l.contains("DEBUG")).take(1_000_000).collect::<Vec<_>>().join("\n"));
        }
    }
    assert!(problems.is_empty(), "{mode}: {} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn default_mount_conforms_and_copies_are_identical() {
    conformance("default", None);
}

#[test]
fn passthrough_mount_conforms_and_copies_are_identical() {
    conformance("passthrough", Some("SAFEKIT_PASSTHROUGH"));
}

#[test]
fn writeback_mount_conforms_and_copies_are_identical() {
    conformance("writeback", Some("SAFEKIT_WRITEBACK"));
}
