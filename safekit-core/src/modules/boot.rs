//! `safekit boot on|off|status -m AM`: whether the daemon starts a module
//! when it starts (at the machine's boot), SafeKit's per-node switch
//! (`usersetting.boot`) kept in `SAFEVAR/modules/AM/boot`. It decides when
//! userconfig.xml's `<service boot>` is `ignore` (the default); `on`,
//! `off` and `auto` there decide by themselves.

use crate::config::Boot;
use crate::layout::Layout;

fn path(layout: &Layout, module: &str) -> std::path::PathBuf {
    layout.module_var(module).join("boot")
}

/// The node's switch for `module` (off unless set on).
pub fn switch(layout: &Layout, module: &str) -> bool {
    std::fs::read_to_string(path(layout, module)).is_ok_and(|s| s.trim() == "on")
}

/// Sets the node's switch for `module`.
pub fn set(layout: &Layout, module: &str, on: bool) -> Result<(), String> {
    let dir = layout.module_var(module);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    super::files::write_file(&path(layout, module), if on { "on\n" } else { "off\n" }, 0o644)
}

/// Whether the module starts with the daemon: userconfig.xml's `boot`,
/// the node's switch when that is `ignore`, and for `auto` whether it was
/// running when the daemon (or the machine) ended.
pub fn starts(setting: Boot, switch: bool, was_running: bool) -> bool {
    match setting {
        Boot::On => true,
        Boot::Off => false,
        Boot::Auto => was_running,
        Boot::Ignore => switch,
    }
}

/// What `boot status` says of a module.
pub fn describe(setting: Boot, switch: bool) -> String {
    let on = if switch { "on" } else { "off" };
    match setting {
        Boot::Ignore => format!("boot {on}"),
        Boot::On => format!("boot on (userconfig.xml boot=\"on\" decides; the node's switch is {on})"),
        Boot::Off => format!("boot off (userconfig.xml boot=\"off\" decides; the node's switch is {on})"),
        Boot::Auto => format!("boot auto: on if running when the daemon ended (userconfig.xml boot=\"auto\"; the node's switch is {on})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_decides_only_under_boot_ignore() {
        let root = std::env::temp_dir().join(format!("safekit-boot-{}", std::process::id()));
        let l = Layout { safe: root.join("safe"), safevar: root.join("var") };
        assert!(!switch(&l, "m"), "off until set");
        set(&l, "m", true).unwrap();
        assert!(switch(&l, "m"));
        assert!(starts(Boot::Ignore, switch(&l, "m"), false));
        assert!(!starts(Boot::Off, true, true), "userconfig.xml's off wins");
        assert!(starts(Boot::On, false, false));
        assert!(starts(Boot::Auto, false, true) && !starts(Boot::Auto, true, false));
        set(&l, "m", false).unwrap();
        assert!(!starts(Boot::Ignore, switch(&l, "m"), true));
        let _ = std::fs::remove_dir_all(root);
    }
}
