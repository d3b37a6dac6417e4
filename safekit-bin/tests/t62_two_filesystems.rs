//! A replicated directory that spans two file systems (a mount point below
//! it; overlayfs, a container's root, does the same between its layers):
//! inode numbers repeat from one file system to the other, and a file of
//! the second with the number of a directory of the first must still be
//! served, written and replicated as itself (the kernel answered EIO when
//! both got one FUSE node id; t60's MariaDB on an overlay root met it).
//! Two fresh tmpfs make the repeat certain. Without root or FUSE this test
//! says so and passes, unless SAFEKIT_REQUIRE_PRIVILEGED=1 (CI).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

use common::{rt, run_ok, WAIT};
use safekit_bin::demo::Demo;
use safekit_core::engine::{CommandKind, State};

/// Mount points, unmounted (lazily, deepest first) on drop.
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn tmpfs(&mut self, at: &Path) {
        std::fs::create_dir_all(at).unwrap();
        run_ok(Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(at)).unwrap();
        self.0.push(at.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

#[test]
fn a_file_sharing_its_inode_number_with_a_directory_of_another_file_system_is_served_as_itself() {
    let _serial = common::serial();
    if !common::privileged("two-file-system test needs root, FUSE, iproute2 and nsenter", &["ip", "nsenter", "mount", "umount"], true) {
        return;
    }
    let mut demo = Demo::setup().unwrap();
    let shared = demo.enable_replication(r#"  <rfs><replicated dir="%DIR%" mode="read_only"/></rfs>"#).unwrap();
    let data = demo.data_dir(0);
    let mut mounts = Mounts(Vec::new());
    // node1's data: tmpfs A with a directory `sub`, where tmpfs B is mounted.
    mounts.tmpfs(&data);
    std::fs::create_dir(data.join("sub")).unwrap();
    let dir_ino = std::fs::metadata(data.join("sub")).unwrap().ino();
    mounts.tmpfs(&data.join("sub"));
    // B numbers its files from its own start: one of its first files has `sub`'s number on A.
    let twin = (0..32)
        .find_map(|i| {
            let f = data.join(format!("sub/f{i}"));
            std::fs::write(&f, format!("file {i} on B\n")).unwrap();
            (std::fs::metadata(&f).unwrap().ino() == dir_ino).then(|| format!("f{i}"))
        })
        .unwrap_or_else(|| panic!("no file of B got inode {dir_ino}, the number of A's directory sub"));
    std::fs::write(data.join("top"), "on A\n").unwrap();

    let rt = rt();
    demo.start_daemon(0, &common::exe()).unwrap();
    rt.block_on(demo.wait_daemon(0, WAIT)).unwrap();
    rt.block_on(demo.command(0, CommandKind::Prim { fullsync: false })).unwrap();
    rt.block_on(demo.wait_state(0, State::Alone, WAIT)).unwrap();

    // Through the replicated mount, as the application sees it.
    let sh = |script: &str| run_ok(demo.in_node(0).unwrap().args(["sh", "-ec", script, "sh"]).arg(&shared).arg(&twin));
    let read = sh(r#"ls "$1/sub" >/dev/null; cat "$1/sub/$2"; cat "$1/top""#);
    assert_eq!(read, Ok(format!("file {} on B\non A", &twin[1..])), "reading through the mount");
    let wrote = sh(r#"echo again >>"$1/sub/$2"; tail -n 1 "$1/sub/$2"; stat -c %F "$1/sub""#);
    assert_eq!(wrote, Ok("again\ndirectory".to_string()), "writing through the mount");

    rt.block_on(demo.command(0, CommandKind::Stop)).unwrap();
    rt.block_on(common::wait_status(&demo, 0, State::Stop));
    demo.stop_daemon(0);
    drop(mounts);
}
